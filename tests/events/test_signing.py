"""JSON and event signing, against https://spec.matrix.org/v1.19/appendices/#cryptographic-test-vectors ."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from signedjson.types import SigningKey

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import (
    SignatureError,
    decode_signing_key_base64,
    encode_signing_key_base64,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    key_id,
    sign_event,
    sign_json,
    verify_event_signature,
    verify_json,
)
from tests.events.conftest import SPEC_SERVER

V = KNOWN_ROOM_VERSIONS


def test_spec_json_signing_empty_object(spec_key: SigningKey) -> None:
    assert sign_json({}, SPEC_SERVER, spec_key) == {
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
            }
        }
    }


def test_spec_json_signing_with_data(spec_key: SigningKey) -> None:
    assert sign_json({"one": 1, "two": "Two"}, SPEC_SERVER, spec_key) == {
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two",
    }


SPEC_MINIMAL_EVENT: dict[str, Any] = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}

SPEC_MINIMAL_SIGNED: dict[str, Any] = {
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {"age_ts": 1000000},
}

SPEC_MESSAGE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}

SPEC_MESSAGE_SIGNED: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        }
    },
    "unsigned": {"age_ts": 1000000},
}


# The vectors predate v11 and include `origin`, which v11 stops protecting; they hold
# for every version that keeps it.
@pytest.mark.parametrize("version", [str(n) for n in range(1, 11)])
@pytest.mark.parametrize(
    ("event", "expected"),
    [(SPEC_MINIMAL_EVENT, SPEC_MINIMAL_SIGNED), (SPEC_MESSAGE_EVENT, SPEC_MESSAGE_SIGNED)],
)
def test_spec_event_signing(
    spec_key: SigningKey, version: str, event: dict[str, Any], expected: dict[str, Any]
) -> None:
    original = copy.deepcopy(event)
    assert sign_event(event, V[version], SPEC_SERVER, spec_key) == expected
    assert event == original  # the input is not mutated
    verify_event_signature(expected, V[version], SPEC_SERVER, get_verify_key(spec_key))


def test_spec_key_public_half(spec_key: SigningKey) -> None:
    assert key_id(spec_key) == "ed25519:1"
    assert key_id(get_verify_key(spec_key)) == "ed25519:1"
    # The public key published for this seed in the spec-derived test suites.
    assert encode_verify_key_base64(get_verify_key(spec_key)) == (
        "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
    )


def test_verify_json_accepts_spec_vector_and_rejects_tampering(spec_key: SigningKey) -> None:
    vk = get_verify_key(spec_key)
    signed = sign_json({"one": 1, "two": "Two", "unsigned": {"x": 1}}, SPEC_SERVER, spec_key)
    verify_json(signed, SPEC_SERVER, vk)
    verify_json({**signed, "unsigned": {"changed": True}}, SPEC_SERVER, vk)  # not covered
    with pytest.raises(SignatureError):
        verify_json({**signed, "one": 2}, SPEC_SERVER, vk)
    with pytest.raises(SignatureError):
        verify_json(signed, "other.server", vk)
    with pytest.raises(SignatureError):
        verify_json({"one": 1}, SPEC_SERVER, vk)


@pytest.mark.parametrize(
    "signatures",
    [{"domain": {"ed25519:1": "!!!not base64"}}, {"domain": []}, [], {"domain": {"ed25519:1": 5}}],
)
def test_verify_json_malformed_signatures(spec_key: SigningKey, signatures: Any) -> None:
    with pytest.raises(SignatureError):
        verify_json({"signatures": signatures}, SPEC_SERVER, get_verify_key(spec_key))


def test_sign_json_keeps_other_signatures_and_does_not_mutate(spec_key: SigningKey) -> None:
    obj = {"a": 1, "signatures": {"other": {"ed25519:x": "sig"}, "domain": {"ed25519:0": "old"}}}
    before = copy.deepcopy(obj)
    signed = sign_json(obj, SPEC_SERVER, spec_key)
    assert obj == before
    assert signed["signatures"]["other"] == {"ed25519:x": "sig"}
    assert set(signed["signatures"]["domain"]) == {"ed25519:0", "ed25519:1"}


def test_event_signature_survives_redaction(spec_key: SigningKey) -> None:
    vk = get_verify_key(spec_key)
    signed = sign_event(SPEC_MESSAGE_EVENT, V["12"], SPEC_SERVER, spec_key)
    verify_event_signature(signed, V["12"], SPEC_SERVER, vk)
    stripped = {**signed, "content": {}}  # what a redacted copy looks like
    verify_event_signature(stripped, V["12"], SPEC_SERVER, vk)
    with pytest.raises(SignatureError):
        verify_event_signature({**signed, "sender": "@x:domain"}, V["12"], SPEC_SERVER, vk)


def test_sign_event_keeps_existing_hash(spec_key: SigningKey) -> None:
    # A co-signing server must not replace the sender's content hash.
    event = {**SPEC_MESSAGE_EVENT, "hashes": {"sha256": "senders-hash"}}
    assert sign_event(event, V["5"], "b.example", spec_key)["hashes"] == {"sha256": "senders-hash"}


def test_generated_key_round_trip() -> None:
    key = generate_signing_key("abc")
    assert key_id(key) == "ed25519:abc"
    again = decode_signing_key_base64("ed25519", "abc", encode_signing_key_base64(key))
    signed = sign_json({"x": 1}, "hs", key)
    verify_json(signed, "hs", get_verify_key(again))
    with pytest.raises(ValueError):
        decode_signing_key_base64("rsa", "abc", encode_signing_key_base64(key))
