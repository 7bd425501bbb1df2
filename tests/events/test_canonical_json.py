"""Canonical JSON (appendices#canonical-json) and PDU format checks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from homeserver.events.canonical_json import (
    MAX_PDU_SIZE,
    EventFormatError,
    check_event_format,
    encode_canonical_json,
)
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

V = KNOWN_ROOM_VERSIONS

# (input JSON text, expected canonical output) — https://spec.matrix.org/v1.19/appendices/#examples
SPEC_EXAMPLES = [
    ("{}", "{}"),
    ('{"one": 1, "two": "Two"}', '{"one":1,"two":"Two"}'),
    ('{"b": "2", "a": "1"}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        """{"auth": {"success": true, "mxid": "@john.doe:example.com",
            "profile": {"display_name": "John Doe", "three_pids": [
                {"medium": "email", "address": "john.doe@example.org"},
                {"medium": "msisdn", "address": "123456789"}]}}}""",
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
        '"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
        '{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    ),
    ('{"a": "日本語"}', '{"a":"日本語"}'),
    ('{"本": 2, "日": 1}', '{"日":1,"本":2}'),
    ('{"a": "\\u65E5"}', '{"a":"日"}'),
    ('{"a": null}', '{"a":null}'),
]


@pytest.mark.parametrize(("text", "expected"), SPEC_EXAMPLES)
def test_spec_canonical_json_examples(text: str, expected: str) -> None:
    assert encode_canonical_json(json.loads(text)) == expected.encode("utf-8")


def _integral_float(text: str) -> Any:
    # The spec's number grammar has no fractions or exponents: a conforming parser
    # reads `1e10` as the integer it denotes.
    value = float(text)
    return int(value) if value.is_integer() else value


def test_spec_example_negative_zero_and_exponent() -> None:
    obj = json.loads('{"a": -0, "b": 1e10}', parse_float=_integral_float)
    assert encode_canonical_json(obj) == b'{"a":0,"b":10000000000}'


def test_control_characters_are_escaped_per_grammar() -> None:
    assert encode_canonical_json({"a": "\x01\n\x1f"}) == b'{"a":"\\u0001\\n\\u001f"}'


def test_nan_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_canonical_json({"a": float("nan")})


# -- check_event_format ---------------------------------------------------------------


def make_pdu(version: str, **overrides: Any) -> dict[str, Any]:
    legacy = V[version].legacy_event_format
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "sender": "@alice:example.org",
        "room_id": "!room:example.org",
        "content": {"body": "hi"},
        "depth": 5,
        "origin_server_ts": 1_700_000_000_000,
        "hashes": {"sha256": "abc"},
        "signatures": {},
        "prev_events": [["$p:example.org", {"sha256": "x"}]] if legacy else ["$p"],
        "auth_events": [["$a:example.org", {}]] if legacy else ["$a"],
    }
    if legacy:
        pdu["event_id"] = "$e:example.org"
    pdu.update(overrides)
    return pdu


@pytest.mark.parametrize("version", sorted(V, key=int))
def test_well_formed_event_passes(version: str) -> None:
    check_event_format(make_pdu(version), V[version])


def test_oversize_pdu_rejected() -> None:
    pdu = make_pdu("12", content={"body": "x" * MAX_PDU_SIZE})
    with pytest.raises(EventFormatError) as e:
        check_event_format(pdu, V["12"])
    assert e.value.errcode == "M_TOO_LARGE"


def test_pdu_exactly_at_limit_passes() -> None:
    pdu = make_pdu("12", content={"body": ""})
    room = MAX_PDU_SIZE - len(encode_canonical_json(pdu))
    pdu["content"]["body"] = "x" * room
    assert len(encode_canonical_json(pdu)) == MAX_PDU_SIZE
    check_event_format(pdu, V["12"])
    pdu["content"]["body"] += "x"
    with pytest.raises(EventFormatError):
        check_event_format(pdu, V["12"])


@pytest.mark.parametrize("key", ["sender", "room_id", "state_key", "type", "event_id"])
def test_long_identifier_rejected(key: str) -> None:
    pdu = make_pdu("1", **{key: "@" + "a" * 255})
    with pytest.raises(EventFormatError) as e:
        check_event_format(pdu, V["1"])
    assert e.value.errcode == "M_TOO_LARGE"


def test_identifier_length_counts_utf8_bytes() -> None:
    check_event_format(make_pdu("12", state_key="é" * 127), V["12"])  # 254 bytes
    with pytest.raises(EventFormatError):
        check_event_format(make_pdu("12", state_key="é" * 128), V["12"])  # 256 bytes


@pytest.mark.parametrize(
    "content",
    [
        {"n": 1.5},
        {"n": 1.0},
        {"nested": [{"n": 0.1}]},
        {"n": 2**53},
        {"n": -(2**53)},
        {"n": float("inf")},
        {"n": float("nan")},
    ],
)
def test_strict_versions_reject_floats_and_big_ints(content: dict[str, Any]) -> None:
    for version in ("6", "10", "12"):
        with pytest.raises(EventFormatError) as e:
            check_event_format(make_pdu(version, content=content), V[version])
        assert e.value.errcode == "M_BAD_JSON"


@pytest.mark.parametrize("content", [{"n": 1.5}, {"n": 2**53}, {"n": -(2**63)}])
def test_legacy_versions_allow_floats_and_big_ints(content: dict[str, Any]) -> None:
    for version in ("1", "3", "5"):
        check_event_format(make_pdu(version, content=content), V[version])


def test_nan_rejected_in_every_version() -> None:
    with pytest.raises(EventFormatError):
        check_event_format(make_pdu("5", content={"n": float("nan")}), V["5"])


def test_strict_boundaries_and_bools_allowed() -> None:
    content = {"max": 2**53 - 1, "min": -(2**53) + 1, "t": True, "f": False}
    check_event_format(make_pdu("12", content=content), V["12"])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("type", 1),
        ("sender", None),
        ("room_id", ["!r"]),
        ("content", "text"),
        ("depth", "5"),
        ("depth", True),
        ("depth", -1),
        ("origin_server_ts", 1.5),
        ("hashes", []),
        ("hashes", {"sha256": 1}),
        ("prev_events", "$p"),
        ("auth_events", {}),
        ("state_key", 7),
        ("signatures", []),
    ],
)
def test_wrong_types_rejected(key: str, value: Any) -> None:
    with pytest.raises(EventFormatError) as e:
        check_event_format(make_pdu("5", **{key: value}), V["5"])
    assert e.value.errcode == "M_BAD_JSON"


@pytest.mark.parametrize(
    "key",
    [
        "type",
        "sender",
        "room_id",
        "content",
        "depth",
        "origin_server_ts",
        "hashes",
        "prev_events",
        "auth_events",
    ],
)
def test_missing_required_key_rejected(key: str) -> None:
    pdu = make_pdu("11")
    del pdu[key]
    with pytest.raises(EventFormatError):
        check_event_format(pdu, V["11"])


def test_legacy_versions_need_event_id() -> None:
    pdu = make_pdu("2")
    del pdu["event_id"]
    with pytest.raises(EventFormatError):
        check_event_format(pdu, V["2"])


def test_reference_format_per_version() -> None:
    # v1–2 want [id, hashes] pairs; v3+ want bare IDs.
    with pytest.raises(EventFormatError):
        check_event_format(make_pdu("2", prev_events=["$p:example.org"]), V["2"])
    with pytest.raises(EventFormatError):
        check_event_format(make_pdu("3", prev_events=[["$p", {}]]), V["3"])
    with pytest.raises(EventFormatError):
        check_event_format(make_pdu("1", auth_events=[["$a:x"]]), V["1"])


def test_too_many_prev_or_auth_events_rejected() -> None:
    with pytest.raises(EventFormatError):
        check_event_format(make_pdu("12", prev_events=[f"$p{i}" for i in range(21)]), V["12"])
    with pytest.raises(EventFormatError):
        check_event_format(make_pdu("12", auth_events=[f"$a{i}" for i in range(11)]), V["12"])


def test_v12_create_event_has_no_room_id() -> None:
    pdu = make_pdu("12", type="m.room.create", state_key="", prev_events=[], auth_events=[])
    del pdu["room_id"]
    check_event_format(pdu, V["12"])
    # Before v12 a create event still needs a room ID, and in v12 only create may omit it.
    pdu11 = make_pdu("11", type="m.room.create", state_key="")
    del pdu11["room_id"]
    with pytest.raises(EventFormatError):
        check_event_format(pdu11, V["11"])
    msg = make_pdu("12")
    del msg["room_id"]
    with pytest.raises(EventFormatError):
        check_event_format(msg, V["12"])


def test_lone_surrogate_rejected_as_bad_json() -> None:
    with pytest.raises(EventFormatError) as e:
        check_event_format(make_pdu("12", content={"body": "\ud800"}), V["12"])
    assert e.value.errcode == "M_BAD_JSON"
