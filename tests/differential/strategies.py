"""Hypothesis strategies shared by the differential tests."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ROOM_VERSIONS = [str(n) for n in range(1, 13)]


def differential_settings(max_examples: int) -> settings:
    """Bounded example counts (the whole suite runs in about a minute on 2 cores).

    In CI the examples are derandomized, so a run is reproducible and a new finding
    cannot make CI flaky; locally they are random. DEVNET_DIFFERENTIAL_SCALE multiplies
    the counts for a deeper local hunt (e.g. 10).
    """
    scale = float(os.environ.get("DEVNET_DIFFERENTIAL_SCALE", "1"))
    return settings(
        max_examples=max(1, int(max_examples * scale)),
        deadline=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# Canonical JSON integers (rooms v6+ reject anything wider).
json_ints = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
short_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
json_scalars = st.none() | st.booleans() | json_ints | short_text
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_text, inner, max_size=3),
    max_leaves=8,
)

# Event types whose content the redaction algorithm treats specially, plus others.
EVENT_TYPES = [
    "m.room.create",
    "m.room.member",
    "m.room.join_rules",
    "m.room.power_levels",
    "m.room.aliases",
    "m.room.history_visibility",
    "m.room.redaction",
    "m.room.message",
    "m.room.topic",
    "m.room.name",
    "m.room.encrypted",
    "org.example.custom",
]
# Content keys that some room version keeps for some event type.
CONTENT_KEYS = [
    "creator",
    "room_version",
    "m.federate",
    "predecessor",
    "additional_creators",
    "membership",
    "join_authorised_via_users_server",
    "third_party_invite",
    "displayname",
    "join_rule",
    "allow",
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
    "invite",
    "notifications",
    "aliases",
    "history_visibility",
    "redacts",
    "body",
    "topic",
]
# Top-level keys: the kept ones, the legacy ones v11 stopped keeping, and junk.
TOP_LEVEL_KEYS = [
    "origin",
    "membership",
    "prev_state",
    "redacts",
    "unsigned",
    "age_ts",
    "outlier",
    "org.example.extra",
]


@st.composite
def third_party_invite(draw: st.DrawFn) -> Any:
    signed = draw(
        st.fixed_dictionaries(
            {"token": short_text, "mxid": short_text},
            optional={"signatures": json_values, "extra": json_values},
        )
    )
    return draw(
        st.fixed_dictionaries({"signed": st.just(signed)}, optional={"display_name": short_text})
    )


@st.composite
def redactable_events(draw: st.DrawFn) -> dict[str, Any]:
    """A structurally plausible PDU with random content and extra keys."""
    event_type = draw(st.sampled_from(EVENT_TYPES) | short_text)
    content_keys = draw(st.lists(st.sampled_from(CONTENT_KEYS), max_size=6, unique=True))
    content: dict[str, Any] = {k: draw(json_values) for k in content_keys}
    if "third_party_invite" in content and draw(st.booleans()):
        content["third_party_invite"] = draw(third_party_invite())
    content.update(draw(st.dictionaries(short_text, json_values, max_size=2)))
    event: dict[str, Any] = {
        "type": event_type,
        "room_id": "!room:a.example",
        "sender": "@alice:a.example",
        "content": content,
        "depth": draw(st.integers(min_value=1, max_value=2**31)),
        "origin_server_ts": draw(st.integers(min_value=0, max_value=2**42)),
        "prev_events": [],
        "auth_events": [],
        "hashes": {"sha256": "AAAA"},
        "signatures": {"a.example": {"ed25519:a": "sig"}},
    }
    if draw(st.booleans()):
        event["state_key"] = draw(st.sampled_from(["", "@alice:a.example"]) | short_text)
    for key in draw(st.lists(st.sampled_from(TOP_LEVEL_KEYS), max_size=3, unique=True)):
        event[key] = draw(json_values)
    return event
