"""Cross-signing: publishing a user's master, self-signing and user-signing keys, and
signatures made with them (or with device keys, over the master key).

Spec: https://spec.matrix.org/v1.19/client-server-api/#cross-signing ,
#post_matrixclientv3keysdevice_signingupload and #post_matrixclientv3keyssignaturesupload
"""

from __future__ import annotations

from typing import Any

from homeserver.accounts.requester import Requester
from homeserver.accounts.uiaa import PASSWORD, InteractiveAuth, UiaaResult
from homeserver.e2e.device_lists import DeviceLists
from homeserver.e2e.key_query import MASTER, SELF_SIGNING, USER_SIGNING
from homeserver.e2e.signed_json import (
    ED25519,
    JsonDict,
    canonical,
    has_valid_signature,
    is_public_key,
    loads,
    without_signatures,
)
from homeserver.errors import BadJson, Forbidden, InvalidParam, InvalidSignature, MissingParam
from homeserver.storage.cross_signing import CrossSigningKeyRow, CrossSigningStore, SignatureRow
from homeserver.storage.database import Connection, Database
from homeserver.storage.devices import DeviceStore
from homeserver.storage.e2e_keys import E2eKeyStore

_BODY_FIELDS = {MASTER: "master_key", SELF_SIGNING: "self_signing_key",
                USER_SIGNING: "user_signing_key"}
UIAA_FLOWS = [[PASSWORD]]


class CrossSigning:
    def __init__(self, db: Database, store: CrossSigningStore, keys: E2eKeyStore,
                 devices: DeviceStore, uiaa: InteractiveAuth, device_lists: DeviceLists):
        self._db = db
        self._store = store
        self._keys = keys
        self._devices = devices
        self._uiaa = uiaa
        self._device_lists = device_lists

    async def upload_keys(self, requester: Requester, body: JsonDict) -> None:
        """POST /keys/device_signing/upload. UIAA is skipped for a user's first master key
        and for a re-upload of exactly the stored keys (the spec's two exceptions)."""
        user_id = requester.user_id
        new = {kind: body[field] for kind, field in _BODY_FIELDS.items()
               if body.get(field) is not None}
        publics = {kind: _check_key_shape(obj, user_id, kind) for kind, obj in new.items()}
        existing = await self._store.keys_for_user(self._db, user_id)
        master = publics.get(MASTER) or (existing[MASTER].public_key if MASTER in existing else None)
        if master is None:
            raise MissingParam("No master key: upload one with (or before) the other keys")
        for kind in (SELF_SIGNING, USER_SIGNING):
            if kind in new and not has_valid_signature(new[kind], user_id, master, master):
                raise InvalidSignature(f"The {kind} key is not signed by the master key")
        device_ids = {d.device_id for d in await self._devices.list_for_user(self._db, user_id)}
        if device_ids & set(publics.values()):
            raise Forbidden("Key ID in use")
        stored = {kind: canonical(_for_storage(obj)) for kind, obj in new.items()}
        unchanged = all(kind in existing and existing[kind].key_json == stored[kind]
                        for kind in new)
        if unchanged and MASTER in existing:
            return
        result: UiaaResult | None = None
        if MASTER in existing:
            result = await self._uiaa.authenticate(
                body.get("auth"), flows=UIAA_FLOWS, operation="device_signing_upload",
                user_id=user_id, params=stored)
        async with self._db.transaction() as conn:
            for kind, key_json in stored.items():
                await self._store.set_key(conn, user_id, kind, publics[kind], key_json)
            if result is not None:
                await self._uiaa.finish(conn, result)
            position = await self._device_lists.mark_changed(conn, [user_id])
        await self._device_lists.notify_changed([user_id], position)

    async def upload_signatures(self, user_id: str, body: JsonDict) -> JsonDict:
        """POST /keys/signatures/upload; returns `failures` (user -> key ID -> error)."""
        failures: dict[str, dict[str, Any]] = {}
        accepted = 0
        async with self._db.transaction() as conn:
            own = await self._store.keys_for_user(conn, user_id)
            for target_user, by_key in body.items():
                if not isinstance(by_key, dict):
                    raise BadJson("Each user's entry must be an object of key ID -> signed key")
                targets = own if target_user == user_id else \
                    await self._store.keys_for_user(conn, target_user)
                for key_id, signed in by_key.items():
                    try:
                        rows = await self._signatures_for(conn, user_id, own, target_user,
                                                          targets, key_id, signed)
                    except _Failure as failure:
                        failures.setdefault(target_user, {})[key_id] = failure.body
                        continue
                    for row in rows:
                        await self._store.add_signature(conn, row)
                    accepted += 1
            position = await self._device_lists.mark_changed(conn, [user_id]) if accepted else None
        if position is not None:
            await self._device_lists.notify_changed([user_id], position)
        return {"failures": failures}

    async def _signatures_for(self, conn: Connection, signer: str, own: dict[str, CrossSigningKeyRow],
                              target_user: str, targets: dict[str, CrossSigningKeyRow],
                              key_id: str, signed: Any) -> list[SignatureRow]:
        if not isinstance(signed, dict):
            raise _Failure("M_BAD_JSON", "The signed key must be an object")
        master = targets.get(MASTER)
        if master is not None and key_id == master.public_key:
            stored_json = master.key_json
            if target_user == signer:
                # The owner's devices sign their own master key.
                signers = await self._device_signers(conn, signer, signed, master.public_key)
            else:
                usk = own.get(USER_SIGNING)
                if usk is None:
                    raise _Failure("M_NOT_FOUND", "You have no user-signing key")
                signers = {usk.public_key: usk.public_key}
        elif target_user == signer:
            device = await self._keys.device_keys(conn, signer, key_id)
            if device is None:
                raise _Failure("M_NOT_FOUND", "Unknown key")
            ssk = own.get(SELF_SIGNING)
            if ssk is None:
                raise _Failure("M_NOT_FOUND", "You have no self-signing key")
            stored_json, signers = device.key_json, {ssk.public_key: ssk.public_key}
        else:
            raise _Failure("M_NOT_FOUND", "Unknown key")
        if without_signatures(loads(stored_json)) != without_signatures(signed):
            raise _Failure("M_INVALID_PARAM", "The signed object does not match the stored key")
        rows = [SignatureRow(target_user, key_id, signer, f"{ED25519}:{version}",
                             signed["signatures"][signer][f"{ED25519}:{version}"])
                for version, public in signers.items()
                if has_valid_signature(signed, signer, version, public)]
        if not rows:
            raise _Failure("M_INVALID_SIGNATURE", "Invalid signature")
        return rows

    async def _device_signers(self, conn: Connection, user_id: str, signed: JsonDict,
                              master_public: str) -> dict[str, str]:
        """Device key IDs (device IDs) among the signer's signatures -> their ed25519 key."""
        sigs = signed.get("signatures")
        mine = sigs.get(user_id) if isinstance(sigs, dict) else None
        found: dict[str, str] = {}
        for name in mine if isinstance(mine, dict) else ():
            algorithm, _, device_id = str(name).partition(":")
            if algorithm != ED25519 or device_id == master_public:
                continue
            device = await self._keys.device_keys(conn, user_id, device_id)
            if device is not None:
                found[device_id] = device.ed25519
        return found


class _Failure(Exception):
    def __init__(self, errcode: str, error: str):
        super().__init__(error)
        self.body = {"errcode": errcode, "error": error}


def _for_storage(obj: JsonDict) -> JsonDict:
    return {k: v for k, v in obj.items() if k != "unsigned"}


def _check_key_shape(obj: Any, user_id: str, usage: str) -> str:
    """A CrossSigningKey for `user_id` with `usage` and one ed25519 key; its public key."""
    name = _BODY_FIELDS[usage]
    if not isinstance(obj, dict):
        raise BadJson(f"'{name}' must be an object")
    if obj.get("user_id") != user_id:
        raise InvalidParam(f"'{name}.user_id' must be the requesting user")
    uses = obj.get("usage")
    if not isinstance(uses, list) or usage not in uses or not all(isinstance(u, str) for u in uses):
        raise BadJson(f"'{name}.usage' must be an array containing '{usage}'")
    keys = obj.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise BadJson(f"'{name}.keys' must hold exactly one key")
    ((key_id, public),) = keys.items()
    if not is_public_key(public) or key_id != f"{ED25519}:{public}":
        raise BadJson(f"'{name}.keys' must map 'ed25519:<public key>' to that public key")
    if "signatures" in obj and not isinstance(obj["signatures"], dict):
        raise BadJson(f"'{name}.signatures' must be an object")
    return str(public)
