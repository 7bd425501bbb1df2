"""Building a local PDU: graph references, depth, hashes and signature.

Spec: https://spec.matrix.org/v1.19/server-server-api/#pdus , the per-version event
formats at https://spec.matrix.org/v1.19/rooms/ and
https://spec.matrix.org/v1.19/server-server-api/#adding-hashes-and-signatures-to-outgoing-events .
Choosing prev_events (forward extremities) and auth_events (auth events selection) is
the caller's job; this module only assembles and signs.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

from homeserver.events.canonical_json import (
    CANONICALJSON_MAX_INT,
    encode_and_check_plain,
    encode_canonical_json,
    encode_known_plain,
)
from homeserver.events.hashing import compute_reference_hash, event_id_from_reference_hash
from homeserver.events.pdu import Pdu
from homeserver.events.redaction import redact_shared
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import key_id

JsonDict = dict[str, Any]

_EVENT_FIELDS = frozenset({"type", "sender", "content", "state_key", "redacts", "room_id"})
# The PDU schemas: depth "must be less than the maximum value for an integer" —
# 2**63-1 in rooms v1–5, 2**53-1 from v6 (strict canonical JSON); at the limit it stays.
_MAX_DEPTH_LEGACY = 2**63 - 1
_EVENT_ID_ALPHABET = string.ascii_letters + string.digits


def build_event(
    *,
    room_version: RoomVersion,
    event_fields: Mapping[str, Any],
    prev_events: Sequence[Pdu],
    auth_event_ids: Sequence[str],
    server_name: str,
    signing_key: SigningKey,
    origin_server_ts: int,
    auth_events_by_id: Mapping[str, Pdu] | None = None,
) -> Pdu:
    """Assemble, hash and sign a new event of this server.

    `event_fields` holds `type`, `sender`, `content`, and optionally `state_key`,
    `redacts` and `room_id` (required except for a v12 create event, which has none).
    `auth_events_by_id` is only used in rooms v1–2, whose PDUs list a reference hash
    next to each auth event ID; unknown auth events get an empty hash object.
    """
    unknown = set(event_fields) - _EVENT_FIELDS
    if unknown:
        raise ValueError(f"unexpected event fields: {sorted(unknown)}")
    event = _base_fields(room_version, event_fields)
    event["origin"] = server_name
    event["origin_server_ts"] = origin_server_ts
    event["depth"] = _depth(room_version, prev_events)
    if room_version.legacy_event_format:
        event["event_id"] = _legacy_event_id(server_name)
        by_id = auth_events_by_id or {}
        event["prev_events"] = [_legacy_ref(p.event_id, p) for p in prev_events]
        event["auth_events"] = [_legacy_ref(i, by_id.get(i)) for i in auth_event_ids]
    else:
        event["prev_events"] = [p.event_id for p in prev_events]
        event["auth_events"] = list(auth_event_ids)
    return _hash_and_sign(event, room_version, server_name, signing_key)


def _hash_and_sign(event: JsonDict, room_version: RoomVersion, server_name: str,
                   signing_key: SigningKey) -> Pdu:
    """Content hash, signature and event ID with one encoding of the redacted event.

    The signature covers the canonical JSON of the redacted event without `signatures`
    and `unsigned`, and the reference hash (whose base64 is the event ID from v3) is the
    SHA-256 of exactly those bytes (server-server-api#adding-hashes-and-signatures...,
    #calculating-the-reference-hash-for-an-event). Encoding them once instead of twice
    is a measurable share of a send (docs/benchmarks.md); test_builder checks the result
    against `sign_event` and `compute_event_id`.
    `event` has no `hashes`, `signatures` or `unsigned` yet, so it is exactly what the
    content hash covers. It is checked for exact JSON types once: the redacted form and
    the full event are built from its parts and base64 strings, so they are too.
    """
    content_bytes, plain = encode_and_check_plain(event)
    event["hashes"] = {"sha256": encode_base64(hashlib.sha256(content_bytes).digest())}
    redacted = redact_shared(event, room_version)
    signed_bytes = encode_known_plain(redacted) if plain else encode_canonical_json(redacted)
    signature = signing_key.sign(signed_bytes).signature
    event["signatures"] = {server_name: {key_id(signing_key): encode_base64(signature)}}
    event_id = None
    if not room_version.legacy_event_format:
        event_id = event_id_from_reference_hash(hashlib.sha256(signed_bytes).digest(), room_version)
    return Pdu(event, room_version, event_id=event_id, plain=plain and type(server_name) is str)


def _base_fields(room_version: RoomVersion, fields: Mapping[str, Any]) -> JsonDict:
    event: JsonDict = {
        "type": fields["type"],
        "sender": fields["sender"],
        "content": dict(fields.get("content") or {}),
    }
    if "state_key" in fields and fields["state_key"] is not None:
        event["state_key"] = fields["state_key"]
    room_id = fields.get("room_id")
    if room_version.room_id_from_create_event and event["type"] == "m.room.create":
        # v12: the room ID is derived from this event's ID, so it cannot be inside it.
        if room_id is not None:
            raise ValueError("a v12 m.room.create event must not have a room_id")
    elif room_id is None:
        raise ValueError("room_id is required")
    else:
        event["room_id"] = room_id
    _set_redacts(room_version, event, fields)
    return event


def _set_redacts(room_version: RoomVersion, event: JsonDict, fields: Mapping[str, Any]) -> None:
    redacts = fields.get("redacts")
    if room_version.redacts_in_content and redacts is None:
        redacts = event["content"].get("redacts")
    if redacts is None:
        return
    if room_version.redacts_in_content:
        # v11+: the content key is the one that counts (and survives redaction); the
        # top-level copy is for older servers and clients reading the previous format.
        event["content"]["redacts"] = redacts
    event["redacts"] = redacts


def _depth(room_version: RoomVersion, prev_events: Sequence[Pdu]) -> int:
    limit = CANONICALJSON_MAX_INT if room_version.strict_canonicaljson else _MAX_DEPTH_LEGACY
    if not prev_events:
        return 1
    return min(max(p.depth for p in prev_events) + 1, limit)


def _legacy_event_id(server_name: str) -> str:
    localpart = "".join(secrets.choice(_EVENT_ID_ALPHABET) for _ in range(20))
    return f"${localpart}:{server_name}"


def _legacy_ref(event_id: str, pdu: Pdu | None) -> list[Any]:
    if pdu is None:
        return [event_id, {}]
    digest = compute_reference_hash(pdu.get_json(), pdu.room_version)
    return [event_id, {"sha256": encode_base64(digest)}]
