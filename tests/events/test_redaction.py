"""The redaction algorithm per room version (rooms/v1#redactions ... rooms/v11#redactions)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from homeserver.events.redaction import redact
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

V = KNOWN_ROOM_VERSIONS
ALL = [str(n) for n in range(1, 13)]

# Content that has every key any version protects for the type, plus one it never does.
FULL_CONTENT: dict[str, dict[str, Any]] = {
    "m.room.member": {
        "membership": "join",
        "join_authorised_via_users_server": "@admin:example.org",
        "third_party_invite": {"signed": {"mxid": "@b:x", "token": "t"}, "display_name": "B"},
        "displayname": "Alice",
    },
    "m.room.create": {
        "creator": "@a:example.org",
        "room_version": "9",
        "m.federate": False,
        "predecessor": {"room_id": "!old:x"},
    },
    "m.room.join_rules": {
        "join_rule": "restricted",
        "allow": [{"type": "m.room_membership"}],
        "other": 1,
    },
    "m.room.power_levels": {
        "ban": 50,
        "events": {"m.room.name": 50},
        "events_default": 0,
        "invite": 0,
        "kick": 50,
        "redact": 50,
        "state_default": 50,
        "users": {"@a:x": 100},
        "users_default": 0,
        "notifications": {"room": 50},
    },
    "m.room.aliases": {"aliases": ["#a:x"], "other": 1},
    "m.room.history_visibility": {"history_visibility": "shared", "other": 1},
    "m.room.redaction": {"redacts": "$target", "reason": "spam"},
    "m.room.message": {"body": "hello", "msgtype": "m.text"},
    "m.room.name": {"name": "Room"},
}

PL_BASE = ["ban", "events", "events_default", "kick", "redact", "state_default", "users",
           "users_default"]  # fmt: skip


def expected_content_keys(event_type: str, n: int) -> set[str]:
    """The spec's lists, written out per version (independent of the implementation)."""
    if event_type == "m.room.member":
        keys = {"membership"}
        if n >= 9:
            keys.add("join_authorised_via_users_server")
        if n >= 11:
            keys.add("third_party_invite")
        return keys
    if event_type == "m.room.create":
        return set(FULL_CONTENT[event_type]) if n >= 11 else {"creator"}
    if event_type == "m.room.join_rules":
        return {"join_rule", "allow"} if n >= 8 else {"join_rule"}
    if event_type == "m.room.power_levels":
        return set(PL_BASE) | ({"invite"} if n >= 11 else set())
    if event_type == "m.room.aliases":
        return {"aliases"} if n <= 5 else set()
    if event_type == "m.room.history_visibility":
        return {"history_visibility"}
    if event_type == "m.room.redaction":
        return {"redacts"} if n >= 11 else set()
    return set()


def make_event(event_type: str) -> dict[str, Any]:
    return {
        "event_id": "$e:example.org",
        "type": event_type,
        "room_id": "!r:example.org",
        "sender": "@a:example.org",
        "state_key": "",
        "content": copy.deepcopy(FULL_CONTENT[event_type]),
        "hashes": {"sha256": "h"},
        "signatures": {"example.org": {"ed25519:1": "s"}},
        "depth": 4,
        "prev_events": ["$p"],
        "prev_state": [],
        "auth_events": ["$a"],
        "origin": "example.org",
        "origin_server_ts": 1234,
        "membership": "join",
        "redacts": "$target",
        "unsigned": {"age": 10},
        "custom_top_level": "x",
    }


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("event_type", sorted(FULL_CONTENT))
def test_content_kept_per_type_and_version(version: str, event_type: str) -> None:
    event = make_event(event_type)
    redacted = redact(event, V[version])
    expected = expected_content_keys(event_type, int(version))
    assert set(redacted["content"]) == expected
    for key in expected - {"third_party_invite"}:
        assert redacted["content"][key] == FULL_CONTENT[event_type][key]


@pytest.mark.parametrize("version", ALL)
def test_top_level_keys_per_version(version: str) -> None:
    redacted = redact(make_event("m.room.message"), V[version])
    always = {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
              "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"}  # fmt: skip
    legacy = {"origin", "membership", "prev_state"}
    expected = always | legacy if int(version) <= 10 else always
    assert set(redacted) == expected
    # Never kept: unsigned, unknown keys, and the top-level `redacts`.
    assert not {"unsigned", "custom_top_level", "redacts"} & set(redacted)


def test_v11_member_keeps_only_signed_of_third_party_invite() -> None:
    redacted = redact(make_event("m.room.member"), V["11"])
    assert redacted["content"]["third_party_invite"] == {"signed": {"mxid": "@b:x", "token": "t"}}


@pytest.mark.parametrize("version", ["11", "12"])
@pytest.mark.parametrize("tpi", [{"display_name": "B"}, {}])
def test_v11_member_third_party_invite_without_signed_is_kept_empty(version: str, tpi: Any) -> None:
    """The object survives, stripped to its allowed `signed` key (so emptied): the
    reference hash of e.g. a join carrying `third_party_invite: {}` depends on it
    (BUG-R1 in docs/differential.md)."""
    event = make_event("m.room.member")
    event["content"]["third_party_invite"] = tpi
    assert redact(event, V[version])["content"] == {
        "membership": "join",
        "join_authorised_via_users_server": "@admin:example.org",
        "third_party_invite": {},
    }


@pytest.mark.parametrize("tpi", ["not an object", None, ["signed"]])
def test_v11_member_third_party_invite_not_an_object_is_dropped(tpi: Any) -> None:
    event = make_event("m.room.member")
    event["content"]["third_party_invite"] = tpi
    assert "third_party_invite" not in redact(event, V["11"])["content"]


@pytest.mark.parametrize("version", ["9", "10"])
def test_pre_v11_member_third_party_invite_is_dropped(version: str) -> None:
    event = make_event("m.room.member")
    event["content"]["third_party_invite"] = {}
    assert "third_party_invite" not in redact(event, V[version])["content"]


def test_v12_create_keeps_additional_creators() -> None:
    event = make_event("m.room.create")
    del event["room_id"]
    event["content"] = {"room_version": "12", "additional_creators": ["@b:x"], "x": 1}
    redacted = redact(event, V["12"])
    assert redacted["content"] == event["content"]
    assert "room_id" not in redacted


def test_redact_does_not_mutate_or_alias_input() -> None:
    event = make_event("m.room.power_levels")
    before = copy.deepcopy(event)
    redacted = redact(event, V["10"])
    assert event == before
    redacted["content"]["users"]["@new:x"] = 1
    redacted["signatures"]["example.org"]["ed25519:2"] = "t"
    assert event == before


def test_missing_or_malformed_content_becomes_empty() -> None:
    event = make_event("m.room.member")
    event["content"] = "oops"
    assert redact(event, V["12"])["content"] == {}
    del event["content"]
    assert redact(event, V["12"])["content"] == {}


def test_redacting_twice_is_stable() -> None:
    for version in ALL:
        once = redact(make_event("m.room.power_levels"), V[version])
        assert redact(once, V[version]) == once
