"""Uploading device keys, one-time keys and fallback keys.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3keysupload
Every signed key must carry the uploading device's own ed25519 signature: the server
cannot vouch for keys, but it can refuse to store what no client would accept, and a
device's identity keys never change once published (a client that lost them must log in
as a new device; silently swapping keys would look like an attack to everyone else).
"""

from __future__ import annotations

from typing import Any

import attrs

from homeserver.e2e.device_lists import DeviceLists
from homeserver.e2e.signed_json import (
    CURVE25519,
    ED25519,
    JsonDict,
    canonical,
    has_valid_signature,
    is_public_key,
    loads,
)
from homeserver.errors import BadJson, InvalidParam, InvalidSignature
from homeserver.storage.database import Connection, Database
from homeserver.storage.e2e_keys import DeviceKeysRow, E2eKeyStore
from homeserver.storage.streams import next_position

# Orders one-time keys by upload (spec: claimed in the order they were uploaded).
UPLOAD_COUNTER = "e2e_one_time_key_uploads"
SIGNED_CURVE25519 = "signed_curve25519"
# One upload may carry this many one-time keys; clients send ~50 at a time.
MAX_KEYS_PER_UPLOAD = 1000
MAX_KEY_ID_LENGTH = 255


@attrs.frozen
class _Key:
    algorithm: str
    key_id: str  # without the algorithm
    key_json: str


class DeviceKeys:
    def __init__(self, db: Database, store: E2eKeyStore, device_lists: DeviceLists):
        self._db = db
        self._store = store
        self._device_lists = device_lists

    async def upload(self, user_id: str, device_id: str, body: JsonDict) -> dict[str, int]:
        """POST /keys/upload; returns one_time_key_counts."""
        async with self._db.transaction() as conn:
            counts, changed = await self.upload_in(conn, user_id, device_id, body)
            position = await self._device_lists.mark_changed(conn, [user_id]) if changed else None
        if position is not None:
            await self._device_lists.notify_changed([user_id], position)
        return counts

    async def upload_in(self, conn: Connection, user_id: str, device_id: str,
                        body: JsonDict) -> tuple[dict[str, int], bool]:
        """The checks and writes of /keys/upload in the caller's transaction (the
        dehydrated-device upload, MSC3814, goes through the same checks). Returns the
        one-time key counts and whether the device keys changed: the caller records the
        device-list change and notifies after its commit."""
        device_keys = body.get("device_keys")
        one_time_keys = _optional_object(body, "one_time_keys")
        fallback_keys = _optional_object(body, "fallback_keys")
        if len(one_time_keys) > MAX_KEYS_PER_UPLOAD:
            raise BadJson(f"At most {MAX_KEYS_PER_UPLOAD} one-time keys per upload")
        new_identity: tuple[str, str] | None = None
        if device_keys is not None:
            new_identity = _check_device_keys(device_keys, user_id, device_id)
        changed = False
        stored = await self._store.device_keys(conn, user_id, device_id)
        signing_key: str | None
        if new_identity is not None:
            changed = await self._store_device_keys(conn, user_id, device_id, device_keys,
                                                    new_identity, stored)
            signing_key = new_identity[0]
        else:
            signing_key = stored.ed25519 if stored is not None else None
        otks = _check_keys(one_time_keys, user_id, device_id, signing_key)
        fallbacks = _check_keys(fallback_keys, user_id, device_id, signing_key)
        await self._store_one_time_keys(conn, user_id, device_id, otks)
        await self._store_fallback_keys(conn, user_id, device_id, fallbacks)
        counts = await self._store.one_time_key_counts(conn, user_id, device_id)
        # Clients top up signed_curve25519 keys when its count is low; an absent count
        # reads as "unknown" to some of them, so zero is sent explicitly.
        return {SIGNED_CURVE25519: 0, **counts}, changed

    async def _store_device_keys(self, conn: Connection, user_id: str, device_id: str,
                                 device_keys: Any, identity: tuple[str, str],
                                 stored: DeviceKeysRow | None) -> bool:
        ed25519, curve25519 = identity
        if stored is not None and (stored.ed25519, stored.curve25519) != identity:
            raise InvalidParam("This device's identity keys are already published and cannot "
                               "change; log in as a new device to use new keys")
        key_json = canonical({k: v for k, v in device_keys.items() if k != "unsigned"})
        if stored is not None and stored.key_json == key_json:
            return False
        await self._store.set_device_keys(conn, user_id, device_id, key_json=key_json,
                                          ed25519=ed25519, curve25519=curve25519)
        return True

    async def _store_one_time_keys(self, conn: Connection, user_id: str, device_id: str,
                                   keys: list[_Key]) -> None:
        fresh: list[tuple[str, str, str]] = []
        for key in keys:
            existing = await self._store.one_time_key(conn, user_id, device_id, key.algorithm,
                                                      key.key_id)
            if existing is None:
                fresh.append((key.algorithm, key.key_id, key.key_json))
            elif existing != key.key_json:
                # A key ID names one key for good: a client reusing it has lost track of
                # what it published, and the peer holding the old key would fail to decrypt.
                raise InvalidParam(f"One-time key {key.algorithm}:{key.key_id} already exists "
                                   "with different content")
        if fresh:
            seq = await next_position(conn, UPLOAD_COUNTER)
            await self._store.add_one_time_keys(conn, user_id, device_id, fresh, seq)

    async def _store_fallback_keys(self, conn: Connection, user_id: str, device_id: str,
                                   keys: list[_Key]) -> None:
        algorithms = [k.algorithm for k in keys]
        if len(set(algorithms)) != len(algorithms):
            raise BadJson("At most one fallback key per algorithm")
        for key in keys:
            await self._store.set_fallback_key(conn, user_id, device_id, key.algorithm,
                                               key.key_id, key.key_json)

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        """For /sync's `device_one_time_keys_count` (signed_curve25519 always present)."""
        counts = await self._store.one_time_key_counts(self._db, user_id, device_id)
        return {SIGNED_CURVE25519: 0, **counts}

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        """For /sync's `device_unused_fallback_key_types`."""
        return await self._store.unused_fallback_key_types(self._db, user_id, device_id)


def _optional_object(body: JsonDict, key: str) -> JsonDict:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadJson(f"'{key}' must be an object")
    return value


def _check_device_keys(keys: Any, user_id: str, device_id: str) -> tuple[str, str]:
    """Shape, ownership and self-signature of `device_keys`; returns (ed25519, curve25519)."""
    if not isinstance(keys, dict):
        raise BadJson("'device_keys' must be an object")
    if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        raise InvalidParam("'device_keys' must be for the requesting user and device")
    algorithms = keys.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise BadJson("'device_keys.algorithms' must be an array of strings")
    identity = keys.get("keys")
    if not isinstance(identity, dict):
        raise BadJson("'device_keys.keys' must be an object")
    ed25519 = identity.get(f"{ED25519}:{device_id}")
    curve25519 = identity.get(f"{CURVE25519}:{device_id}")
    if not isinstance(ed25519, str) or not isinstance(curve25519, str) \
            or not is_public_key(ed25519) or not is_public_key(curve25519):
        raise BadJson(f"'device_keys.keys' needs valid ed25519:{device_id} and "
                      f"curve25519:{device_id} keys")
    if not isinstance(keys.get("signatures"), dict):
        raise BadJson("'device_keys.signatures' must be an object")
    if not has_valid_signature(keys, user_id, device_id, ed25519):
        raise InvalidSignature("'device_keys' is not signed by the device's ed25519 key")
    return ed25519, curve25519


def _check_keys(keys: JsonDict, user_id: str, device_id: str,
                signing_key: str | None) -> list[_Key]:
    """One-time or fallback keys, `<algorithm>:<key_id>` -> key. Signed algorithms must
    carry the device's signature; other algorithms' keys are stored as given."""
    checked: list[_Key] = []
    for name, value in keys.items():
        algorithm, sep, key_id = name.partition(":")
        if not sep or not algorithm or not key_id or len(name) > MAX_KEY_ID_LENGTH:
            raise BadJson(f"Key names must be '<algorithm>:<key_id>', not {name!r}")
        if algorithm.startswith("signed_"):
            if not isinstance(value, dict) or not is_public_key(value.get("key")):
                raise BadJson(f"Key {name} must be an object with a valid 'key'")
            if signing_key is None:
                raise InvalidParam("Upload the device's identity keys before signed keys")
            if not has_valid_signature(value, user_id, device_id, signing_key):
                raise InvalidSignature(f"Key {name} is not signed by the device's ed25519 key")
            stored = {k: v for k, v in value.items() if k != "unsigned"}
        elif isinstance(value, str | dict):
            stored = value  # type: ignore[assignment]
        else:
            raise BadJson(f"Key {name} must be a string or an object")
        checked.append(_Key(algorithm, key_id, canonical(stored)))
    return checked


def key_object(key_json: str) -> Any:
    """A stored key as the JSON value clients receive."""
    return loads(key_json)
