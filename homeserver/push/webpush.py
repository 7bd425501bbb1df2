"""Web Push (`webpush` pushers, MSC4174): message encryption per RFC 8291.

The browser's push service only relays ciphertext: the payload is encrypted to the
subscription's P-256 key (`pushkey`) with its auth secret (`data.auth`), using a fresh
ephemeral key per message, in one aes128gcm record (RFC 8188). Pure code: no I/O.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
from typing import TYPE_CHECKING, Any

from homeserver.push.gateway import prio_of, tweaks_of
from homeserver.storage.push_queue import QueuedPush

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# `cryptography` is imported where it is used, not here: it costs ~8 MiB of resident
# memory, and most servers never send a web push (docs/benchmarks.md, idle RSS).

RECORD_SIZE = 4096
AUTH_SECRET_BYTES = 16
# RFC 8291 section 4: the whole message (86-byte header, 16-byte tag, 1 delimiter byte)
# must fit the 4096 bytes push services are required to accept.
MAX_PLAINTEXT = RECORD_SIZE - 86 - 16 - 1
_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


def b64url_decode(value: str) -> bytes:
    """Unpadded (or padded) url-safe base64; ValueError on anything else."""
    if not _B64URL.match(value):
        raise ValueError("not url-safe base64")
    stripped = value.rstrip("=")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def p256_public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    """An uncompressed P-256 point (65 bytes, 0x04 first); ValueError if not on the curve."""
    if len(raw) != 65 or raw[0] != 4:
        raise ValueError("not an uncompressed P-256 point")
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def _uncompressed(key: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def encrypt(ua_public_raw: bytes, auth_secret: bytes, plaintext: bytes, *,
            salt: bytes | None = None,
            ephemeral: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """The aes128gcm body for one message. `salt` and `ephemeral` are only passed by
    tests that need fixed values; otherwise both are fresh per message, as RFC 8291
    requires."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError("web push payload too large")
    ua_public = p256_public_key(ua_public_raw)
    as_private = ephemeral or ec.generate_private_key(ec.SECP256R1())
    as_public_raw = _uncompressed(as_private.public_key())
    salt = salt if salt is not None else os.urandom(16)
    ecdh_secret = as_private.exchange(ec.ECDH(), ua_public)
    key_info = b"WebPush: info\x00" + ua_public_raw + as_public_raw
    ikm = _hkdf(auth_secret, ecdh_secret, key_info, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    # A single record, so it is the last one: delimiter 0x02 and no further padding.
    ciphertext = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)
    header = salt + struct.pack("!IB", RECORD_SIZE, len(as_public_raw)) + as_public_raw
    return header + ciphertext


def webpush_message(item: QueuedPush, event: dict[str, Any] | None) -> tuple[bytes, str]:
    """The JSON the service worker receives, and the notification's prio. Deliberately
    small (ids, type, sender, counts): the 4 KiB limit leaves no room for content, and
    the client fetches the event itself."""
    prio = prio_of(tweaks_of(item.actions))
    message: dict[str, Any] = {"event_id": item.event_id, "room_id": item.room_id,
                               "counts": {"unread": item.unread}, "prio": prio}
    if event is not None:
        message["type"] = event.get("type")
        message["sender"] = event.get("sender")
    return json.dumps(message, separators=(",", ":")).encode(), prio
