"""Content hashes, reference hashes, event IDs and v12 room IDs.

Spec: https://spec.matrix.org/v1.19/server-server-api/#calculating-the-content-hash-for-an-event ,
https://spec.matrix.org/v1.19/server-server-api/#calculating-the-reference-hash-for-an-event ,
https://spec.matrix.org/v1.19/rooms/v4/#event-ids and https://spec.matrix.org/v1.19/rooms/v12/ .
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from unpaddedbase64 import decode_base64, encode_base64

from homeserver.events.canonical_json import EventFormatError, encode_canonical_json
from homeserver.events.redaction import redact_shared
from homeserver.events.room_versions import EventIdFormat, RoomVersion

JsonDict = dict[str, Any]


def compute_content_hash(pdu_json: JsonDict) -> bytes:
    """SHA-256 over the whole event minus `unsigned`, `signatures` and `hashes`."""
    stripped = {k: v for k, v in pdu_json.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(encode_canonical_json(stripped)).digest()


def add_content_hash(pdu_json: JsonDict) -> JsonDict:
    """A copy of the event with `hashes.sha256` set (other hash algorithms kept)."""
    hashes = dict(pdu_json.get("hashes") or {})
    hashes["sha256"] = encode_base64(compute_content_hash(pdu_json))
    return {**pdu_json, "hashes": hashes}


def check_content_hash(pdu_json: JsonDict) -> bool:
    """Whether `hashes.sha256` matches the event; False when absent or malformed.

    A mismatch means the sender (or a relay) served a redacted copy: the receiver must
    then use its own redacted copy (server-server-api#validating-hashes-and-signatures...).
    """
    hashes = pdu_json.get("hashes")
    claimed = hashes.get("sha256") if isinstance(hashes, dict) else None
    if not isinstance(claimed, str):
        return False
    try:
        expected = decode_base64(claimed)
        actual = compute_content_hash(pdu_json)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)


def compute_reference_hash(pdu_json: JsonDict, room_version: RoomVersion) -> bytes:
    """SHA-256 of the redacted event without `signatures` and `unsigned`."""
    redacted = redact_shared(pdu_json, room_version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(encode_canonical_json(redacted)).digest()


def compute_event_id(pdu_json: JsonDict, room_version: RoomVersion) -> str:
    """The event's ID: carried in the JSON (v1–2) or `$` + its reference hash (v3+).

    v3 uses standard base64, v4+ the URL-safe alphabet (rooms/v4#event-ids); both unpadded.
    """
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.V1:
        event_id = pdu_json.get("event_id")
        if not isinstance(event_id, str):
            raise EventFormatError("v1/v2 event has no string 'event_id'")
        return event_id
    return event_id_from_reference_hash(compute_reference_hash(pdu_json, room_version), room_version)


def event_id_from_reference_hash(digest: bytes, room_version: RoomVersion) -> str:
    """`$` + the reference hash: standard base64 in v3, URL-safe from v4 (both unpadded)."""
    if room_version.event_id_format is EventIdFormat.V2:
        return "$" + encode_base64(digest)
    return "$" + encode_base64(digest, urlsafe=True)


def compute_room_id_from_create(create_event_id: str) -> str:
    """v12: the room ID is the create event's ID with the `!` sigil (rooms/v12)."""
    if not create_event_id.startswith("$"):
        raise ValueError(f"not an event ID: {create_event_id!r}")
    return "!" + create_event_id[1:]
