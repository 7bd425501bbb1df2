"""The send path's shortcuts give what the general functions give: the shared redaction,
the builder's single type walk and its memoised canonical JSON, the format check's
fast paths."""

from __future__ import annotations

import copy
from typing import Any

import canonicaljson
import pytest
from signedjson.types import SigningKey

from homeserver.events.builder import build_event
from homeserver.events.canonical_json import (
    EventFormatError,
    check_event_format,
    encode_and_check_plain,
    encode_canonical_json,
    encode_known_plain,
)
from homeserver.events.hashing import check_content_hash, compute_event_id
from homeserver.events.pdu import Pdu
from homeserver.events.redaction import redact, redact_shared
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import get_verify_key, sign_event, verify_event_signature
from tests.events.test_canonical_json import make_pdu

V = KNOWN_ROOM_VERSIONS
ALL = [str(n) for n in range(1, 13)]
LEGACY_NUMBERS = [v for v in ALL if not V[v].strict_canonicaljson]
HS = "hs.example"


class Text(str):
    """A str subclass: orjson encodes it, so only the library's encoding is trusted."""


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": [value]}
    return value


CONTENTS: dict[str, dict[str, Any]] = {
    "plain": {"msgtype": "m.text", "body": "héllo ☃ \u2028 \x01", "n": [1, -2, True, None]},
    "subclass": {"msgtype": "m.text", "body": Text("sub")},
    "subclass_key": {Text("body"): "k"},
    "nested": {"deep": _nested(100)},
    "tuple": {"pair": ("a", 1)},
}
# Only rooms v1–5 accept these (check_event_format rejects them later on).
LEGACY_CONTENTS: dict[str, dict[str, Any]] = {
    "float": {"n": 1.5, "m": [0.1, 1e-7]},
    "big_int": {"n": 2**70},
    # Kept by redaction: the signed bytes hold the floats too.
    "power_levels": {"ban": 50.5, "users": {"@a:x": 1e-7}},
}


def _event(event_type: str, content: Any) -> dict[str, Any]:
    return {
        "type": event_type, "room_id": "!r:x", "sender": "@a:x", "state_key": "",
        "content": content, "hashes": {"sha256": "h"}, "depth": 3, "origin": "x",
        "membership": "join", "prev_state": [], "unsigned": {"age": 1},
        "signatures": {"x": {"ed25519:1": "s"}}, "prev_events": ["$p"], "auth_events": ["$a"],
        "origin_server_ts": 1, "event_id": "$e", "other": {"o": 1},
    }  # fmt: skip


TYPED_CONTENT: list[tuple[str, dict[str, Any]]] = [
    ("m.room.member", {"membership": "join", "join_authorised_via_users_server": "@b:x",
                       "third_party_invite": {"signed": {"token": "t"}, "x": 1}, "d": "A"}),
    ("m.room.member", {"membership": "invite", "third_party_invite": {"x": 1}}),
    ("m.room.create", {"creator": "@a:x", "room_version": "9", "predecessor": {"r": "!o:x"}}),
    ("m.room.join_rules", {"join_rule": "restricted", "allow": [{"type": "m"}], "o": 1}),
    ("m.room.power_levels", {"ban": 50, "users": {"@a:x": 100}, "invite": 0, "o": 1}),
    ("m.room.aliases", {"aliases": ["#a:x"]}),
    ("m.room.history_visibility", {"history_visibility": "shared", "o": 1}),
    ("m.room.redaction", {"redacts": "$t", "reason": "r"}),
    ("m.room.message", {"body": "hi"}),
]


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("event_type, content", TYPED_CONTENT)
def test_redact_shared_equals_redact(version: str, event_type: str, content: dict[str, Any]) -> None:
    event = _event(event_type, content)
    shared = redact_shared(event, V[version])
    assert shared == redact(event, V[version])
    assert encode_canonical_json(shared) == encode_canonical_json(redact(event, V[version]))


def test_redact_shared_top_level_and_content_are_its_own() -> None:
    event = _event("m.room.power_levels", {"ban": 50, "users": {"@a:x": 100}, "o": 1})
    before = copy.deepcopy(event)
    shared = redact_shared(event, V["12"])
    shared.pop("signatures")
    shared["content"]["ban"] = 0
    shared["x"] = 1
    assert event == before


def test_redact_still_copies_nested_values() -> None:
    event = _event("m.room.power_levels", {"users": {"@a:x": 100}})
    redacted = redact(event, V["12"])
    redacted["content"]["users"]["@b:x"] = 1
    redacted["signatures"]["x"]["ed25519:2"] = "t"
    assert event["content"]["users"] == {"@a:x": 100}
    assert event["signatures"] == {"x": {"ed25519:1": "s"}}


def _build(version: str, key: SigningKey, content: dict[str, Any],
           event_type: str = "m.room.message") -> Pdu:
    rv = V[version]
    fields: dict[str, Any] = {"type": event_type, "sender": f"@alice:{HS}",
                              "content": content, "room_id": f"!room:{HS}"}
    if event_type != "m.room.message":
        fields["state_key"] = ""
    return build_event(room_version=rv, event_fields=fields, prev_events=[],
                       auth_event_ids=["$a"] if not rv.legacy_event_format else [],
                       server_name=HS, signing_key=key, origin_server_ts=1_700_000_000_000)


def _cases() -> list[tuple[str, str]]:
    cases = [(v, name) for v in ALL for name in CONTENTS]
    return cases + [(v, name) for v in LEGACY_NUMBERS for name in LEGACY_CONTENTS]


@pytest.mark.parametrize("version, name", _cases())
def test_built_event_matches_general_functions(version: str, name: str, spec_key: SigningKey) -> None:
    """Whatever the content's types, the builder's hash, signature, event ID and stored
    JSON are those of the general path, and the stored JSON is the library's encoding."""
    rv = V[version]
    content = {**CONTENTS, **LEGACY_CONTENTS}[name]
    event_type = "m.room.power_levels" if name == "power_levels" else "m.room.message"
    pdu = _build(version, spec_key, content, event_type)
    pdu_json = pdu.get_json()
    assert pdu.canonical_json() == canonicaljson.encode_canonical_json(pdu_json)
    assert pdu.canonical_json() is pdu.canonical_json()
    assert check_content_hash(pdu_json)
    verify_event_signature(pdu_json, rv, HS, get_verify_key(spec_key))
    assert pdu.event_id == compute_event_id(pdu_json, rv)
    bare = {k: v for k, v in pdu_json.items() if k not in ("signatures", "hashes")}
    assert sign_event(bare, rv, HS, spec_key) == pdu_json


def test_canonical_json_of_a_loaded_pdu_is_the_encoders() -> None:
    pdu_json = make_pdu("10", content={"n": Text("x"), "f": [1, 2]})
    pdu = Pdu(pdu_json, V["10"], event_id="$e")
    assert pdu.canonical_json() == canonicaljson.encode_canonical_json(pdu_json)


@pytest.mark.parametrize("value", [
    {"a": [1, "b", None, True, {"c": ()}]},
    {"a": 1.5},
    {"a": Text("x")},
    {Text("k"): 1},
    {"a": 2**64},
    {"a": "\ud800"},
    {"a": _nested(300)},
])  # fmt: skip
def test_encode_and_check_plain_is_the_library_encoding(value: Any) -> None:
    try:
        expected: bytes | None = canonicaljson.encode_canonical_json(value)
    except (ValueError, TypeError):
        expected = None
    if expected is None:
        with pytest.raises((ValueError, TypeError)):
            encode_and_check_plain(value)
        return
    out, plain = encode_and_check_plain(value)
    assert out == expected
    if plain:
        assert encode_known_plain(value) == expected


# -- check_event_format: the exact-type fast paths decide as the key-by-key checks ----


def test_subclassed_values_still_pass() -> None:
    class Deps(list):  # type: ignore[type-arg]
        pass

    pdu = make_pdu("10", type=Text("m.room.message"), sender=Text("@a:x"),
                   prev_events=Deps([Text("$p")]), auth_events=[Text("$a")])
    check_event_format(pdu, V["10"])


@pytest.mark.parametrize("key, value, message", [
    ("type", None, "'type' must be a string"),
    ("depth", True, "'depth' must be an integer"),
    ("depth", "5", "'depth' must be an integer"),
    ("origin_server_ts", 1.0, "'origin_server_ts' must be an integer"),
    ("hashes", [], "'hashes' must be an object"),
    ("prev_events", ("$p",), "'prev_events' must be an array"),
    ("auth_events", {}, "'auth_events' must be an array"),
    ("prev_events", ["$p", 1], "malformed entry in prev_events: 1"),
    ("auth_events", [["$a", {}]], "malformed entry in auth_events: ['$a', {}]"),
])  # fmt: skip
def test_first_failing_key_is_named(key: str, value: Any, message: str) -> None:
    # Room version 3: hash-based references, but floats allowed (no number check first).
    pdu = make_pdu("3", **{key: value})
    with pytest.raises(EventFormatError) as e:
        check_event_format(pdu, V["3"])
    assert str(e.value) == message


def test_two_bad_keys_report_the_first_checked() -> None:
    pdu = make_pdu("10", sender=1, depth="x")
    with pytest.raises(EventFormatError, match="'sender' must be a string"):
        check_event_format(pdu, V["10"])
    del pdu["sender"]
    with pytest.raises(EventFormatError, match="missing required key 'sender'"):
        check_event_format(pdu, V["10"])


@pytest.mark.parametrize("state_key, too_large", [
    ("a" * 255, False),
    ("a" * 256, True),
    ("😀" * 63, False),          # 252 bytes
    ("abc" + "😀" * 63, False),  # 255 bytes
    ("😀" * 64, True),           # 256 bytes
    ("é" * 128, True),           # 256 bytes
])  # fmt: skip
def test_identifier_limit_in_bytes(state_key: str, too_large: bool) -> None:
    pdu = make_pdu("12", state_key=state_key)
    if not too_large:
        check_event_format(pdu, V["12"])
        return
    with pytest.raises(EventFormatError) as e:
        check_event_format(pdu, V["12"])
    assert e.value.errcode == "M_TOO_LARGE"
