"""Building local events: the result is well-formed, hashed, signed and self-consistent."""

from __future__ import annotations

from typing import Any

import pytest
from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

from homeserver.events.builder import build_event
from homeserver.events.canonical_json import check_event_format
from homeserver.events.hashing import (
    check_content_hash,
    compute_event_id,
    compute_reference_hash,
    compute_room_id_from_create,
)
from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import get_verify_key, verify_event_signature

V = KNOWN_ROOM_VERSIONS
ALL = [str(n) for n in range(1, 13)]
HS = "hs.example"
TS = 1_700_000_000_000


def build(rv: RoomVersion, key: SigningKey, fields: dict[str, Any], prev: list[Pdu],
          auth: list[str], **kw: Any) -> Pdu:  # fmt: skip
    return build_event(
        room_version=rv, event_fields=fields, prev_events=prev, auth_event_ids=auth,
        server_name=HS, signing_key=key, origin_server_ts=TS, **kw,
    )  # fmt: skip


def create_event(rv: RoomVersion, key: SigningKey) -> Pdu:
    fields: dict[str, Any] = {
        "type": "m.room.create", "sender": f"@alice:{HS}", "state_key": "",
        "content": {"room_version": rv.identifier},
    }  # fmt: skip
    if not rv.room_id_from_create_event:
        fields["room_id"] = f"!room:{HS}"
    return build(rv, key, fields, [], [])


def assert_valid(pdu: Pdu, key: SigningKey) -> None:
    rv = pdu.room_version
    pdu_json = pdu.get_json()
    check_event_format(pdu_json, rv)
    assert check_content_hash(pdu_json)
    verify_event_signature(pdu_json, rv, HS, get_verify_key(key))
    assert pdu.event_id == compute_event_id(pdu_json, rv)


@pytest.mark.parametrize("version", ALL)
def test_create_then_message(version: str, spec_key: SigningKey) -> None:
    rv = V[version]
    create = create_event(rv, spec_key)
    assert_valid(create, spec_key)
    assert create.depth == 1 and create.prev_event_ids == [] and create.auth_event_ids == []
    room_id = create.room_id
    msg = build(
        rv, spec_key,
        {"type": "m.room.message", "sender": f"@alice:{HS}", "room_id": room_id,
         "content": {"body": "hi"}},
        [create], [] if rv.room_id_from_create_event else [create.event_id],
        auth_events_by_id={create.event_id: create},
    )  # fmt: skip
    assert_valid(msg, spec_key)
    assert msg.depth == 2
    assert msg.prev_event_ids == [create.event_id]
    assert msg.room_id == room_id
    assert msg.get_json()["origin"] == HS
    assert msg.origin_server_ts == TS
    assert not msg.is_state()


@pytest.mark.parametrize("version", ["1", "2"])
def test_legacy_format(version: str, spec_key: SigningKey) -> None:
    rv = V[version]
    create = create_event(rv, spec_key)
    event_id = create.get_json()["event_id"]
    assert event_id.startswith("$") and event_id.endswith(f":{HS}")
    other = build(
        rv, spec_key,
        {"type": "m.room.name", "sender": f"@alice:{HS}", "room_id": f"!room:{HS}",
         "state_key": "", "content": {"name": "N"}},
        [create], [create.event_id, "$unknown:elsewhere"],
        auth_events_by_id={create.event_id: create},
    )  # fmt: skip
    ref = encode_base64(compute_reference_hash(create.get_json(), rv))
    assert other.get_json()["prev_events"] == [[create.event_id, {"sha256": ref}]]
    assert other.get_json()["auth_events"] == [
        [create.event_id, {"sha256": ref}],
        ["$unknown:elsewhere", {}],
    ]
    assert other.event_id != create.event_id
    assert_valid(other, spec_key)


def test_v12_create_has_no_room_id(spec_key: SigningKey) -> None:
    create = create_event(V["12"], spec_key)
    assert "room_id" not in create.get_json()
    assert create.room_id == compute_room_id_from_create(create.event_id)
    with pytest.raises(ValueError):
        build(
            V["12"],
            spec_key,
            {
                "type": "m.room.create",
                "sender": f"@a:{HS}",
                "state_key": "",
                "content": {},
                "room_id": "!x",
            },
            [],
            [],
        )


def test_room_id_required_otherwise(spec_key: SigningKey) -> None:
    with pytest.raises(ValueError):
        build(
            V["11"],
            spec_key,
            {"type": "m.room.create", "sender": f"@a:{HS}", "state_key": "", "content": {}},
            [],
            [],
        )


def test_unknown_fields_rejected(spec_key: SigningKey) -> None:
    with pytest.raises(ValueError):
        build(
            V["12"],
            spec_key,
            {"type": "X", "sender": f"@a:{HS}", "room_id": "!r", "content": {}, "depth": 9},
            [],
            [],
        )


def test_depth_is_max_prev_plus_one_and_capped(spec_key: SigningKey) -> None:
    rv = V["12"]
    low = Pdu({"type": "X", "depth": 3}, rv, event_id="$low")
    high = Pdu({"type": "X", "depth": 7}, rv, event_id="$high")
    fields = {"type": "X", "sender": f"@a:{HS}", "room_id": "!r", "content": {}}
    pdu = build(rv, spec_key, fields, [low, high], [])
    assert pdu.depth == 8
    assert pdu.prev_event_ids == ["$low", "$high"]
    top = Pdu({"type": "X", "depth": 2**53 - 1}, rv, event_id="$top")
    assert build(rv, spec_key, fields, [top], []).depth == 2**53 - 1
    legacy = V["5"]
    top5 = Pdu({"type": "X", "depth": 2**63 - 1}, legacy, event_id="$top")
    assert build(legacy, spec_key, fields, [top5], []).depth == 2**63 - 1


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_redaction_event_format(version: str, spec_key: SigningKey) -> None:
    rv = V[version]
    fields = {"type": "m.room.redaction", "sender": f"@a:{HS}", "room_id": "!r",
              "content": {"reason": "spam"}, "redacts": "$target"}  # fmt: skip
    pdu = build(rv, spec_key, fields, [], [])
    assert pdu.get_json()["redacts"] == "$target"
    assert pdu.redacts == "$target"
    if int(version) >= 11:
        assert pdu.content == {"reason": "spam", "redacts": "$target"}
    else:
        assert pdu.content == {"reason": "spam"}
    assert_valid(pdu, spec_key)


def test_v11_redacts_given_in_content(spec_key: SigningKey) -> None:
    fields = {"type": "m.room.redaction", "sender": f"@a:{HS}", "room_id": "!r",
              "content": {"redacts": "$t"}}  # fmt: skip
    pdu = build(V["11"], spec_key, fields, [], [])
    assert pdu.get_json()["redacts"] == "$t" and pdu.content["redacts"] == "$t"


def test_builder_does_not_mutate_caller_content(spec_key: SigningKey) -> None:
    content: dict[str, Any] = {}
    fields = {"type": "m.room.redaction", "sender": f"@a:{HS}", "room_id": "!r",
              "content": content, "redacts": "$t"}  # fmt: skip
    build(V["12"], spec_key, fields, [], [])
    assert content == {}


def test_empty_state_key_is_kept(spec_key: SigningKey) -> None:
    fields = {"type": "m.room.topic", "sender": f"@a:{HS}", "room_id": "!r",
              "state_key": "", "content": {"topic": "t"}}  # fmt: skip
    pdu = build(V["12"], spec_key, fields, [], [])
    assert pdu.is_state() and pdu.state_key == ""


@pytest.mark.parametrize("version", ALL)
def test_one_pass_signing_matches_sign_event(version: str, spec_key: SigningKey) -> None:
    """The builder encodes the redacted event once for both signature and event ID; the
    result is byte for byte what the general `sign_event` path produces."""
    from homeserver.events.signing import sign_event

    rv = V[version]
    create = create_event(rv, spec_key)
    msg = build(rv, spec_key,
                {"type": "m.room.member", "sender": f"@alice:{HS}", "room_id": create.room_id,
                 "state_key": f"@alice:{HS}",
                 "content": {"membership": "join", "displayname": "Alice ☃", "extra": [1, {"b": 2}]}},
                [create], [create.event_id], auth_events_by_id={create.event_id: create})
    unsigned = {k: v for k, v in msg.get_json().items() if k not in ("signatures", "hashes")}
    reference = sign_event(unsigned, rv, HS, spec_key)
    assert msg.get_json() == reference
    assert msg.event_id == Pdu(reference, rv).event_id
