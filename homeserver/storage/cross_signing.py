"""Cross-signing keys (`e2e_cross_signing_keys`) and uploaded signatures (`e2e_signatures`).

Spec: https://spec.matrix.org/v1.19/client-server-api/#cross-signing
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from homeserver.storage.batch import fetch_for_ids
from homeserver.storage.database import Connection, Database


@attrs.frozen
class CrossSigningKeyRow:
    user_id: str
    key_type: str  # master, self_signing or user_signing
    public_key: str
    key_json: str


@attrs.frozen
class SignatureRow:
    target_user_id: str
    target_key_id: str
    signer_user_id: str
    signer_key_id: str
    signature: str


SELECT_USER_KEYS = """
SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys WHERE user_id = $1
"""
_SELECT_KEYS = """
SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys WHERE user_id {}
"""
SELECT_KEYS_PG = _SELECT_KEYS.format("= ANY($1::text[])")
SELECT_KEYS_SQLITE = _SELECT_KEYS.format("IN (SELECT value FROM json_each($1))")
UPSERT_KEY = """
INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json)
VALUES ($1, $2, $3, $4)
ON CONFLICT (user_id, key_type) DO UPDATE
SET public_key = excluded.public_key, key_json = excluded.key_json
"""
UPSERT_SIGNATURE = """
INSERT INTO e2e_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) DO UPDATE
SET signature = excluded.signature
"""
_SELECT_SIGNATURES = """
SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature
FROM e2e_signatures WHERE target_user_id {}
"""
SELECT_SIGNATURES_PG = _SELECT_SIGNATURES.format("= ANY($1::text[])")
SELECT_SIGNATURES_SQLITE = _SELECT_SIGNATURES.format("IN (SELECT value FROM json_each($1))")
# A new master key makes every signature over the old one meaningless.
DELETE_SIGNATURES_OF_KEY = """
DELETE FROM e2e_signatures WHERE target_user_id = $1 AND target_key_id = $2
"""


class CrossSigningStore:
    async def keys_for_user(self, db: Database | Connection,
                            user_id: str) -> dict[str, CrossSigningKeyRow]:
        """key_type -> key."""
        rows = await db.fetch(SELECT_USER_KEYS, user_id)
        return {r["key_type"]: CrossSigningKeyRow(r["user_id"], r["key_type"], r["public_key"],
                                                  r["key_json"]) for r in rows}

    async def keys_for_users(self, conn: Connection,
                             user_ids: Sequence[str]) -> list[CrossSigningKeyRow]:
        rows = await fetch_for_ids(conn, SELECT_KEYS_PG, SELECT_KEYS_SQLITE, list(user_ids))
        return [CrossSigningKeyRow(r["user_id"], r["key_type"], r["public_key"], r["key_json"])
                for r in rows]

    async def set_key(self, conn: Connection, user_id: str, key_type: str, public_key: str,
                      key_json: str) -> None:
        await conn.execute(UPSERT_KEY, user_id, key_type, public_key, key_json)

    async def add_signature(self, conn: Connection, sig: SignatureRow) -> None:
        await conn.execute(UPSERT_SIGNATURE, sig.target_user_id, sig.target_key_id,
                           sig.signer_user_id, sig.signer_key_id, sig.signature)

    async def delete_signatures_of(self, conn: Connection, user_id: str, key_id: str) -> None:
        await conn.execute(DELETE_SIGNATURES_OF_KEY, user_id, key_id)

    async def signatures_for_users(self, conn: Connection,
                                   user_ids: Sequence[str]) -> list[SignatureRow]:
        rows = await fetch_for_ids(conn, SELECT_SIGNATURES_PG, SELECT_SIGNATURES_SQLITE,
                                   list(user_ids))
        return [SignatureRow(r["target_user_id"], r["target_key_id"], r["signer_user_id"],
                             r["signer_key_id"], r["signature"]) for r in rows]
