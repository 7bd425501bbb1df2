"""Redaction (and the event IDs derived from it) agree with Synapse in every room version.

Spec: https://spec.matrix.org/v1.19/client-server-api/#redactions and each room
version's "Redactions" section.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from homeserver.events.hashing import compute_event_id
from homeserver.events.redaction import redact
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.differential.deviations import (
    strip_synapse_unsigned,
    synapse_redaction_expected,
)
from tests.differential.oracle import SynapseOracle
from tests.differential.strategies import (
    ROOM_VERSIONS,
    differential_settings,
    redactable_events,
)

SETTINGS = differential_settings(400)


@SETTINGS
@given(room_version=st.sampled_from(ROOM_VERSIONS), event=redactable_events())
def test_redaction_matches_synapse(
    synapse_oracle: SynapseOracle, room_version: str, event: dict[str, Any]
) -> None:
    original = copy.deepcopy(event)
    ours = redact(event, KNOWN_ROOM_VERSIONS[room_version])
    assert event == original, "redact() mutated its input"
    theirs = synapse_oracle.call("redact", room_version=room_version, event=event)
    theirs = strip_synapse_unsigned(event, theirs)
    assert synapse_redaction_expected(room_version, event, ours) == theirs


@SETTINGS
@given(room_version=st.sampled_from(ROOM_VERSIONS[2:]), event=redactable_events())
def test_event_id_matches_synapse(
    synapse_oracle: SynapseOracle, room_version: str, event: dict[str, Any]
) -> None:
    """v3+ event IDs are the reference hash of the redacted event."""
    event.pop("unsigned", None)  # Synapse's event model re-derives unsigned
    if room_version == "12" and event["type"] == "m.room.create":
        # A v12 create event is the state event with no room_id (D1 covers the rest).
        event["state_key"] = ""
        del event["room_id"]
    ours = compute_event_id(event, KNOWN_ROOM_VERSIONS[room_version])
    theirs = synapse_oracle.call("event_id", room_version=room_version, event=event)
    assert ours == theirs


def test_v11_member_third_party_invite_without_signed(synapse_oracle: SynapseOracle) -> None:
    """BUG-R1 (fixed): the object is kept, emptied, so the event IDs agree."""
    event = {
        "type": "m.room.member",
        "room_id": "!room:a.example",
        "sender": "@alice:a.example",
        "state_key": "@alice:a.example",
        "content": {"membership": "join", "third_party_invite": {"display_name": "x"}},
        "depth": 3,
        "origin_server_ts": 1,
        "prev_events": [],
        "auth_events": [],
        "hashes": {"sha256": "AAAA"},
        "signatures": {},
    }
    theirs = synapse_oracle.call("redact", room_version="11", event=event)
    assert theirs["content"] == {"membership": "join", "third_party_invite": {}}
    assert redact(event, KNOWN_ROOM_VERSIONS["11"]) == theirs
    assert compute_event_id(event, KNOWN_ROOM_VERSIONS["11"]) == synapse_oracle.call(
        "event_id", room_version="11", event=event
    )
