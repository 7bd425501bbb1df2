"""Downloading keys: POST /keys/query and POST /keys/claim, for local users.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3keysquery and
#post_matrixclientv3keysclaim. Users on other servers are answered in `failures` (keyed
by server name) until federation queries are wired in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from homeserver.e2e.signed_json import JsonDict, loads
from homeserver.storage.cross_signing import CrossSigningStore, SignatureRow
from homeserver.storage.database import Database
from homeserver.storage.e2e_keys import E2eKeyStore
from homeserver.types import UserID

MASTER = "master"
SELF_SIGNING = "self_signing"
USER_SIGNING = "user_signing"
_RESULT_FIELDS = {MASTER: "master_keys", SELF_SIGNING: "self_signing_keys",
                  USER_SIGNING: "user_signing_keys"}
# One request may name this many users (a large room's members).
MAX_QUERY_USERS = 10_000
_REMOTE_FAILURE = {"status": 503, "message": "Keys of users on other servers are not available"}


class KeyQueries:
    def __init__(self, db: Database, keys: E2eKeyStore, cross_signing: CrossSigningStore, *,
                 server_name: str):
        self._db = db
        self._keys = keys
        self._cross_signing = cross_signing
        self._server_name = server_name

    def _split_local(self, user_ids: Iterable[str]) -> tuple[list[str], dict[str, Any]]:
        local: list[str] = []
        failures: dict[str, Any] = {}
        for user_id in user_ids:
            server = UserID.parse(user_id).server_name
            if server == self._server_name:
                local.append(user_id)
            else:
                failures[server] = dict(_REMOTE_FAILURE)
        return local, failures

    async def query(self, requester: str, wanted: Mapping[str, list[str]]) -> JsonDict:
        """`wanted`: user -> device IDs (empty: all devices)."""
        local, failures = self._split_local(wanted)
        device_keys: dict[str, dict[str, Any]] = {u: {} for u in local}
        result: JsonDict = {"failures": failures, "device_keys": device_keys,
                            "master_keys": {}, "self_signing_keys": {}}
        async with self._db.connection() as conn:
            rows = await self._keys.keys_for_users(conn, local)
            cs_rows = await self._cross_signing.keys_for_users(conn, local)
            sigs = await self._cross_signing.signatures_for_users(conn, local)
        by_target: dict[tuple[str, str], list[SignatureRow]] = {}
        for sig in sigs:
            by_target.setdefault((sig.target_user_id, sig.target_key_id), []).append(sig)
        for row in rows:
            devices = wanted[row.user_id]
            if devices and row.device_id not in devices:
                continue
            obj = loads(row.key_json)
            _attach(obj, by_target.get((row.user_id, row.device_id), ()), requester)
            obj["unsigned"] = {"device_display_name": row.display_name} \
                if row.display_name is not None else {}
            device_keys[row.user_id][row.device_id] = obj
        for cs in cs_rows:
            # The user-signing key only serves its owner (to sign other users' keys).
            if cs.key_type == USER_SIGNING and cs.user_id != requester:
                continue
            obj = loads(cs.key_json)
            _attach(obj, by_target.get((cs.user_id, cs.public_key), ()), requester)
            result.setdefault(_RESULT_FIELDS[cs.key_type], {})[cs.user_id] = obj
        return result

    async def claim(self, wanted: Mapping[str, Mapping[str, str]]) -> JsonDict:
        """`wanted`: user -> device -> algorithm. Each one-time key goes to one claimer
        only; with none left the fallback key is handed out (and marked used)."""
        local, failures = self._split_local(wanted)
        claimed: dict[str, dict[str, Any]] = {}
        async with self._db.transaction() as conn:
            for user_id in local:
                for device_id, algorithm in wanted[user_id].items():
                    key = await self._keys.claim_one_time_key(conn, user_id, device_id, algorithm)
                    if key is None:
                        key = await self._keys.claim_fallback_key(conn, user_id, device_id,
                                                                  algorithm)
                    if key is not None:
                        claimed.setdefault(user_id, {})[device_id] = {
                            key.key_id: loads(key.key_json)}
        return {"failures": failures, "one_time_keys": claimed}


def _attach(obj: JsonDict, sigs: Iterable[SignatureRow], requester: str) -> None:
    """Add uploaded signatures to a key object. Signatures by the key's owner are public;
    another user's signature (made with their user-signing key) is shown only to that
    user: the spec returns the signatures "the requesting user is allowed to see", and
    who has verified whom is nobody else's business."""
    owner = obj.get("user_id")
    for sig in sigs:
        if sig.signer_user_id != owner and sig.signer_user_id != requester:
            continue
        signatures = obj.setdefault("signatures", {})
        if isinstance(signatures, dict):
            signatures.setdefault(sig.signer_user_id, {})[sig.signer_key_id] = sig.signature
