"""sign_json and verify_json against `signedjson.sign`, which they replaced: same
signatures, same accepted objects, same SignatureError messages."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import signedjson.sign
from signedjson.types import SigningKey

from homeserver.events.signing import SignatureError, get_verify_key, sign_json, verify_json
from tests.events.conftest import SPEC_SERVER


def signedjson_verify(obj: Any, server_name: str, verify_key: Any) -> str | None:
    """What verify_json answered when it wrapped signedjson: None or the error."""
    try:
        signedjson.sign.verify_signed_json(obj, server_name, verify_key)
    except signedjson.sign.SignatureVerifyException as e:
        return str(e)
    except (TypeError, AttributeError, ValueError) as e:
        return f"unverifiable object: {e}"
    return None


def our_verify(obj: Any, server_name: str, verify_key: Any) -> str | None:
    try:
        verify_json(obj, server_name, verify_key)
    except SignatureError as e:
        return str(e)
    return None


OBJECTS = [
    {},
    {"one": 1, "two": "Two"},
    {"a": [1, {"b": "é😀\n"}], "unsigned": {"age": 5}},
    {"a": 1, "unsigned": None},
    {"a": 1.5, "big": 2**70},
    {"a": 1, "signatures": {"other": {"ed25519:x": "sig"}, SPEC_SERVER: {"ed25519:0": "old"}}},
]


@pytest.mark.parametrize("obj", OBJECTS)
def test_sign_json_matches_signedjson(obj: dict[str, Any], spec_key: SigningKey) -> None:
    expected = signedjson.sign.sign_json(copy.deepcopy(obj), SPEC_SERVER, spec_key)
    signed = sign_json(obj, SPEC_SERVER, spec_key)
    assert signed == expected
    assert list(signed) == list(expected)
    assert our_verify(signed, SPEC_SERVER, get_verify_key(spec_key)) is None


def _signed(spec_key: SigningKey) -> dict[str, Any]:
    return sign_json({"one": 1, "unsigned": {"x": 1}}, SPEC_SERVER, spec_key)


CASES = {
    "valid": lambda s: s,
    "tampered": lambda s: {**s, "one": 2},
    "no signatures": lambda s: {"one": 1},
    "other server only": lambda s: {**s, "signatures": {"x": s["signatures"][SPEC_SERVER]}},
    "other key only": lambda s: {**s, "signatures": {SPEC_SERVER: {"ed25519:2": "AAAA"}}},
    "not base64": lambda s: {**s, "signatures": {SPEC_SERVER: {"ed25519:1": "!!!"}}},
    "short signature": lambda s: {**s, "signatures": {SPEC_SERVER: {"ed25519:1": "AAAA"}}},
    "signature not a string": lambda s: {**s, "signatures": {SPEC_SERVER: {"ed25519:1": 5}}},
    "server entry a list": lambda s: {**s, "signatures": {SPEC_SERVER: []}},
    "signatures a list": lambda s: {**s, "signatures": []},
    "signatures null": lambda s: {**s, "signatures": None},
    "NaN in the object": lambda s: {**s, "x": float("nan")},
}


@pytest.mark.parametrize("case", list(CASES))
def test_verify_json_answers_as_signedjson(case: str, spec_key: SigningKey) -> None:
    obj = CASES[case](_signed(spec_key))
    vk = get_verify_key(spec_key)
    expected = signedjson_verify(obj, SPEC_SERVER, vk)
    assert our_verify(obj, SPEC_SERVER, vk) == expected
    assert (expected is None) == (case == "valid")
