"""The fast canonical JSON encoder and decoder against the `canonicaljson` library and `json`.

encode_canonical_json takes orjson's output only for exact dict/list/tuple/str/int/bool/None
values; these tests check that orjson agrees with the library byte for byte there (string
escapes, code point key order, integers), that every other input (floats, subclasses, odd
keys, huge integers, lone surrogates, deep nesting) gives the library's bytes or the
library's exception, and that decode_canonical_json returns exactly what `json.loads` does.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import os
import uuid
from typing import Any

import canonicaljson
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.events import canonical_json as cj
from homeserver.events.canonical_json import (
    MAX_PDU_SIZE,
    EventFormatError,
    check_event_format,
    decode_canonical_json,
    encode_canonical_json,
)
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    # Reproducible in CI (a new finding cannot make it flaky); random locally.
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow],
)

# Code points where escaping or ordering could go wrong: every ASCII character (control
# characters, quote, backslash, slash, DEL), the first non-ASCII ones, the JavaScript
# line separators, the last BMP characters around the surrogate range and the private
# use area (UTF-16 order differs from code point order there), and astral characters.
SPECIAL = [chr(c) for c in range(0x80)] + [
    "\x80", "\xa0", "\xff", "\u0100", "\u07ff", "\u0800", "\u2028", "\u2029", "\ud7ff",
    "\ue000", "\uf8ff", "\ufeff", "\ufffd", "\uffff", "\U00010000", "\U0001f600",
    "\U0010ffff",
]  # fmt: skip
chars = st.sampled_from(SPECIAL) | st.characters(codec="utf-8")
texts = st.text(alphabet=chars, max_size=12)
# Short keys from a small alphabet, so that prefixes and near-equal keys meet in a dict.
keys = st.text(alphabet=st.sampled_from(["a", "b", "\x00", "\x7f", "\uffff", "\ue000",
                                         "\U00010000", "\U0001f600", "é"]), max_size=3)
keys = keys | texts
ints = st.integers() | st.sampled_from([2**53 - 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
                                        -(2**63), -(2**63) - 1, 0])
floats = st.floats() | st.sampled_from([1e16, 1e-7, 1e22, 1e21, -0.0, 5e-324, 0.1, 1.0])


def values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: (st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
                       | st.dictionaries(keys, inner, max_size=4)),
        max_leaves=20,
    )


plain_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | texts
plain_values = values(plain_scalars)
any_values = values(st.none() | st.booleans() | ints | texts | floats)


def outcome(encode: Any, obj: Any) -> Any:
    """The bytes, or the exception type: what a caller can observe."""
    try:
        return encode(obj)
    except Exception as e:
        return type(e)


def assert_same_as_library(obj: Any) -> None:
    assert outcome(encode_canonical_json, obj) == outcome(canonicaljson.encode_canonical_json, obj)


# -- the property the fast path rests on ------------------------------------------------


@SETTINGS
@given(plain_values)
def test_orjson_matches_library_on_plain_values(obj: Any) -> None:
    assert orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) == canonicaljson.encode_canonical_json(obj)


def test_every_ascii_character_as_value_and_key() -> None:
    for c in range(0x80):
        for obj in ({"k": chr(c)}, {chr(c): 1}, [f"a{chr(c)}b"]):
            expected = canonicaljson.encode_canonical_json(obj)
            assert orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) == expected
            assert encode_canonical_json(obj) == expected


def test_every_non_surrogate_code_point_in_one_string() -> None:
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert encode_canonical_json([text]) == canonicaljson.encode_canonical_json([text])


def test_keys_sort_by_code_point_not_utf16() -> None:
    # In UTF-16, U+10000 (a surrogate pair D800 DC00) sorts before U+E000 and U+FFFF.
    obj = {"\U00010000": 1, "\uffff": 2, "\ue000": 3, "\ud7ff": 4, "z": 5, "": 6, "a\x00": 7, "a": 8}
    expected = canonicaljson.encode_canonical_json(obj)
    assert expected.decode() == (
        '{"":6,"a":8,"a\\u0000":7,"z":5,"\ud7ff":4,"\ue000":3,"\uffff":2,"\U00010000":1}'
    )
    assert encode_canonical_json(obj) == expected


def test_plain_event_does_not_touch_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(obj: Any) -> bytes:
        raise AssertionError("the library was called")

    monkeypatch.setattr(canonicaljson, "encode_canonical_json", refuse)
    event = {"type": "m.room.message", "content": {"body": "hé\n\u2028😀", "msgtype": "m.text"},
             "depth": 12, "origin_server_ts": 1_700_000_000_000, "prev_events": ["$a"],
             "redacts": None, "flags": (True, False)}  # fmt: skip
    assert encode_canonical_json(event).startswith(b'{"content":{"body":"h\xc3\xa9\\n')


# -- everything else goes to the library --------------------------------------------------


@SETTINGS
@given(any_values)
def test_any_json_value_encodes_as_the_library_does(obj: Any) -> None:
    assert_same_as_library(obj)


@SETTINGS
@given(values(st.text(alphabet=st.characters(), max_size=4) | floats | ints))
def test_lone_surrogates_floats_and_huge_ints_as_the_library(obj: Any) -> None:
    assert_same_as_library(obj)


@pytest.mark.parametrize("value", [1e-7, 1e16, 1e-5, 123e-20, 0.1, -0.0, 1.0])
def test_floats_keep_the_library_formatting(value: float) -> None:
    # Hashes of v1-5 events carrying floats were computed with Python's float repr.
    assert encode_canonical_json({"f": value}) == f'{{"f":{value!r}}}'.encode()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_floats_raise_value_error(value: float) -> None:
    # orjson would write null.
    with pytest.raises(ValueError):
        encode_canonical_json({"a": [value]})


class Plain(enum.Enum):
    A = "a"


class Number(enum.IntEnum):
    ONE = 1


class Word(enum.StrEnum):
    A = "a"


class Dict(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        return [("replaced", True)]


class Str(str):
    def __lt__(self, other: object) -> bool:
        return isinstance(other, str) and not str.__lt__(self, other)


class Int(int):
    pass


class List(list):  # type: ignore[type-arg]
    pass


@dataclasses.dataclass
class Data:
    x: int


def _cycle() -> dict[str, Any]:
    d: dict[str, Any] = {}
    d["self"] = d
    return d


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


ODD_INPUTS = {
    "plain enum": [Plain.A],
    "int enum": {"n": Number.ONE},
    "str enum": {"w": Word.A},
    "dict subclass with its own items()": {"d": Dict(a=1)},
    "str subclass keys with their own order": {Str("a"): 1, Str("b"): 2},
    "str subclass value": [Str("x")],
    "int subclass": [Int(5)],
    "list subclass": List([1, 2]),
    "uuid": [uuid.UUID(int=1)],
    "dataclass": [Data(1)],
    "datetime": [datetime.datetime(2020, 1, 1)],
    "orjson fragment": [orjson.Fragment(b"1")],
    "bytes": [b"x"],
    "set": [{1}],
    "int keys": {2: "b", 10: "a"},
    "bool and None keys": {True: 1, None: 2},
    "float key": {1.5: 1},
    "mixed keys": {1: 1, "a": 2},
    "u64 max": [2**64 - 1],
    "beyond u64": [2**64],
    "beyond i64 min": [-(2**63) - 1],
    "huge int": {"n": 10**100},
    "lone surrogate value": ["\ud800"],
    "lone surrogate key": {"\udfff": 1},
    "surrogate pair as two code points": ["\ud83d\ude00"],
    "cycle": _cycle(),
    "nesting 253": _nested(253),
    "nesting 254": _nested(254),
    "nesting 900": _nested(900),
    "top-level string": "a\u2028b",
    "top-level float": 1e-7,
    "top-level None": None,
    "tuple": (1, "a", (None,)),
}


@pytest.mark.parametrize("name", list(ODD_INPUTS))
def test_odd_inputs_encode_or_fail_as_the_library(name: str) -> None:
    assert_same_as_library(ODD_INPUTS[name])


@pytest.mark.parametrize(("version", "extra"), [
    ("12", "plain"),
    ("12", Str("subclass")),  # not plain: the size comes from the library's encoding
    ("12", (1, "tuple")),
    ("5", 1e-7),  # legacy versions allow floats, sized as the library writes them
    ("5", "plain"),
])  # fmt: skip
def test_size_limit_counts_the_library_bytes(version: str, extra: Any) -> None:
    pdu: dict[str, Any] = {
        "type": "m.room.message", "sender": "@a:x", "room_id": "!r:x", "depth": 1,
        "content": {"body": "", "extra": extra}, "origin_server_ts": 1, "hashes": {},
        "prev_events": ["$p"], "auth_events": ["$a"],
    }  # fmt: skip
    pdu["content"]["body"] = "x" * (MAX_PDU_SIZE - len(canonicaljson.encode_canonical_json(pdu)))
    check_event_format(pdu, KNOWN_ROOM_VERSIONS[version])
    pdu["content"]["body"] += "x"
    with pytest.raises(EventFormatError) as e:
        check_event_format(pdu, KNOWN_ROOM_VERSIONS[version])
    assert e.value.errcode == "M_TOO_LARGE"


# -- decoding -------------------------------------------------------------------------------


def assert_decodes_as_json(text: str) -> None:
    try:
        expected: Any = json.loads(text)
    except Exception as e:
        with pytest.raises(type(e)):
            decode_canonical_json(text)
        return
    # repr tells 1 from 1.0 and True, and shows key order.
    assert repr(decode_canonical_json(text)) == repr(expected)


@SETTINGS
@given(any_values)
def test_decoding_canonical_text_matches_json(obj: Any) -> None:
    try:
        text = canonicaljson.encode_canonical_json(obj).decode()
    except ValueError:  # NaN/Infinity
        return
    assert_decodes_as_json(text)


@SETTINGS
@given(any_values, st.booleans(), st.booleans())
def test_decoding_other_json_text_matches_json(obj: Any, ascii_only: bool, indent: bool) -> None:
    # Not canonical (spaces, key order, \\u escapes, NaN, surrogate escapes): falls back.
    try:
        text = json.dumps(obj, ensure_ascii=ascii_only, indent=1 if indent else None)
    except (TypeError, ValueError):  # unsortable or non-str keys
        return
    assert_decodes_as_json(text)


@pytest.mark.parametrize("text", [
    "[18446744073709551615]", "[18446744073709551616]", "[-9223372036854775809]",
    "[100000000000000000000000000000]", '{"a":1e400}', "[NaN]", "[-Infinity]",
    '["\\ud800"]', '{"\\udc00":1}', '["\\ud83d\\ude00"]', "[1e-07]", "[1e-7]", "[-0]",
    "[-0.0]", "[1E+2]", '{"a":1,"a":2}', '{"b":1,"a":2}', "[1,]", "", "\ufeff[1]",
    '["a\x01"]', "[1] x", '"\u2028"', "[" * 2000 + "]" * 2000,
])  # fmt: skip
def test_decoding_edge_cases_matches_json(text: str) -> None:
    assert_decodes_as_json(text)


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list('[]{}",:0123456789.e-+ntrufalsNI\\u\x01')), max_size=20))
def test_decoding_junk_matches_json(text: str) -> None:
    assert_decodes_as_json(text)


def test_canonical_event_decodes_without_json(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str) -> Any:
        raise AssertionError("json.loads was called")

    event = {"content": {"body": "hé\n😀", "n": 2**63 - 1}, "depth": 3, "type": "m.room.message"}
    text = encode_canonical_json(event).decode()
    monkeypatch.setattr(cj.json, "loads", refuse)
    assert decode_canonical_json(text) == event
