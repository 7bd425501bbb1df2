"""Content hashes, reference hashes and event IDs per room version."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from homeserver.events.canonical_json import EventFormatError, encode_canonical_json
from homeserver.events.hashing import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    compute_room_id_from_create,
)
from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

V = KNOWN_ROOM_VERSIONS

# A real room-v5 create event as served over federation by jki.re; its event ID in
# v3 and v4+ format is known (it is also used by other implementations' test suites).
REAL_V5_CREATE = json.loads(
    """{"auth_events": [], "prev_events": [], "type": "m.room.create",
    "room_id": "!uXDCzlYgCTHtiWCkEx:jki.re", "sender": "@erikj:jki.re",
    "content": {"room_version": "5", "predecessor": {"room_id": "!gdRMqOrTFdOCYHNwOo:half-shot.uk",
    "event_id": "$LP7ROBc4b+cMc1UE9haIz8q5AK2AIW4eJ90FfKLvyZI"}, "creator": "@erikj:jki.re"},
    "depth": 1, "prev_state": [], "state_key": "", "origin": "jki.re",
    "origin_server_ts": 1560284621137, "hashes": {"sha256": "IX6zuNiJpJPNf70BLleL3HSCpjKeq9Uhu7uUpyDjBmc"},
    "signatures": {"jki.re": {"ed25519:auto": "O4IyFfF2PPtGp5uaDm8t57dZbdh8vc8Q64LgCwvzYRVItAMI0uisfiAFaxkVT7MRpzh6N2QNN5NMRXZKmgPYDA"}},
    "unsigned": {"age": 1321650}}"""
)


def test_spec_content_hash_vector() -> None:
    # appendices#event-signing: the minimal event's hash.
    event = {
        "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
        "origin_server_ts": 1000000, "signatures": {}, "hashes": {}, "type": "X",
        "content": {}, "prev_events": [], "auth_events": [], "depth": 3,
        "unsigned": {"age_ts": 1000000},
    }  # fmt: skip
    hashed = add_content_hash(event)
    assert hashed["hashes"] == {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"}
    assert event["hashes"] == {}  # not mutated
    assert check_content_hash(hashed)


def test_real_event_content_hash_checks() -> None:
    assert check_content_hash(REAL_V5_CREATE)


def test_content_hash_ignores_unsigned_signatures_and_hashes() -> None:
    base = {"type": "m.room.message", "content": {"body": "x"}}
    extra = {**base, "unsigned": {"age": 5}, "signatures": {"a": {}}, "hashes": {"sha256": "z"}}
    assert compute_content_hash(base) == compute_content_hash(extra)


def test_content_hash_covers_content() -> None:
    hashed = add_content_hash({"type": "m.room.message", "content": {"body": "x"}})
    assert not check_content_hash({**hashed, "content": {"body": "y"}})
    assert not check_content_hash({**hashed, "content": {}})  # a redacted copy


@pytest.mark.parametrize("hashes", [None, {}, {"sha256": 5}, {"sha256": "!!"}, "abc"])
def test_missing_or_malformed_hash_fails_check(hashes: Any) -> None:
    event: dict[str, Any] = {"type": "X", "content": {}}
    if hashes is not None:
        event["hashes"] = hashes
    assert not check_content_hash(event)


def test_add_content_hash_keeps_other_algorithms() -> None:
    hashed = add_content_hash({"type": "X", "hashes": {"sha512": "keep"}})
    assert hashed["hashes"]["sha512"] == "keep"
    assert "sha256" in hashed["hashes"]


def test_real_event_id_v3_and_v4_formats() -> None:
    assert (
        compute_event_id(REAL_V5_CREATE, V["3"]) == "$RrGxF28UrHLmoASHndYb9Jb/1SFww2ptmtur9INS438"
    )
    for version in ("4", "5", "6", "10"):
        assert (
            compute_event_id(REAL_V5_CREATE, V[version])
            == "$RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438"
        )
    assert Pdu(REAL_V5_CREATE, V["5"]).event_id == "$RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438"


def test_reference_hash_is_of_redacted_event_without_signatures() -> None:
    by_hand = {k: v for k, v in REAL_V5_CREATE.items() if k not in ("unsigned", "signatures")}
    by_hand["content"] = {"creator": "@erikj:jki.re"}  # pre-v11 create keeps only creator
    expected = hashlib.sha256(encode_canonical_json(by_hand)).digest()
    assert compute_reference_hash(REAL_V5_CREATE, V["5"]) == expected
    # Unredacted parts, signatures and unsigned do not move the reference hash.
    changed = {**REAL_V5_CREATE, "signatures": {}, "unsigned": {}, "prev_state": []}
    changed["content"] = {**REAL_V5_CREATE["content"], "room_version": "9"}
    assert compute_reference_hash(changed, V["5"]) == expected


def test_reference_hash_depends_on_version_rules() -> None:
    # v11 keeps the whole create content and drops `origin`/`prev_state`.
    assert compute_reference_hash(REAL_V5_CREATE, V["5"]) != compute_reference_hash(
        REAL_V5_CREATE, V["11"]
    )


def test_legacy_event_id_is_read_from_json() -> None:
    event = {"event_id": "$abc:example.org", "type": "X", "content": {}}
    assert compute_event_id(event, V["1"]) == "$abc:example.org"
    assert compute_event_id(event, V["2"]) == "$abc:example.org"
    with pytest.raises(EventFormatError):
        compute_event_id({"type": "X"}, V["1"])


@pytest.mark.parametrize("version", [str(n) for n in range(3, 13)])
def test_hash_event_id_shape(version: str) -> None:
    event_id = compute_event_id(REAL_V5_CREATE, V[version])
    digest = compute_reference_hash(REAL_V5_CREATE, V[version])
    assert len(event_id) == 44 and event_id.startswith("$")
    alphabet = base64.b64encode if version == "3" else base64.urlsafe_b64encode
    assert event_id[1:] == alphabet(digest).decode().rstrip("=")


def test_v12_room_id_from_create() -> None:
    create = {k: v for k, v in REAL_V5_CREATE.items() if k != "room_id"}
    event_id = compute_event_id(create, V["12"])
    room_id = compute_room_id_from_create(event_id)
    assert room_id == "!" + event_id[1:]
    assert Pdu(create, V["12"]).room_id == room_id
    with pytest.raises(ValueError):
        compute_room_id_from_create("!notanevent")
