"""Checks on signed key objects: ed25519 public keys and the signatures over them.

Spec: https://spec.matrix.org/v1.19/appendices/#signing-json
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from unpaddedbase64 import decode_base64

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.signing import SignatureError, decode_verify_key_base64, verify_json

JsonDict = dict[str, Any]
ED25519 = "ed25519"
CURVE25519 = "curve25519"


class StreamNotifier(Protocol):
    """What E2EE services need from the sync notifier: a wake-up after a commit."""

    def notify(self, stream: str, position: int, *, users: Any = (), rooms: Any = ()) -> None: ...


def canonical(obj: Any) -> str:
    return encode_canonical_json(obj).decode("utf-8")


def loads(text: str) -> Any:
    return json.loads(text)


def is_public_key(value: Any) -> bool:
    """An unpadded-base64 32-byte key (ed25519 and curve25519 public keys both are)."""
    if not isinstance(value, str) or len(value) != 43:
        return False
    try:
        return len(decode_base64(value)) == 32
    except Exception:  # binascii.Error, ValueError: not base64 at all
        return False


def has_valid_signature(obj: JsonDict, user_id: str, key_id: str, public_key: str) -> bool:
    """Whether `obj` carries `user_id`'s signature by ed25519 key `key_id` (the part after
    `ed25519:`) made with `public_key`; `unsigned` and other signatures are ignored."""
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict) or not isinstance(sigs.get(user_id), dict):
        return False
    own = sigs[user_id].get(f"{ED25519}:{key_id}")
    if not isinstance(own, str):
        return False
    # Only the one signature being checked: signedjson would reject others it cannot parse.
    only = {**obj, "signatures": {user_id: {f"{ED25519}:{key_id}": own}}}
    try:
        verify_key = decode_verify_key_base64(ED25519, key_id, public_key)
        verify_json(only, user_id, verify_key)
    except (SignatureError, ValueError):
        return False
    return True


def signatures_of(obj: JsonDict) -> dict[str, dict[str, str]]:
    """The well-formed part of `obj["signatures"]`: user -> key ID -> signature."""
    found: dict[str, dict[str, str]] = {}
    sigs = obj.get("signatures")
    if isinstance(sigs, dict):
        for user, by_key in sigs.items():
            if isinstance(by_key, dict):
                found[user] = {k: v for k, v in by_key.items() if isinstance(v, str)}
    return found


def without_signatures(obj: JsonDict) -> JsonDict:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
