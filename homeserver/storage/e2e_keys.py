"""Device identity keys, one-time keys and fallback keys (`e2e_device_keys`,
`e2e_one_time_keys`, `e2e_fallback_keys`). Key objects are stored as canonical JSON text.

Spec: https://spec.matrix.org/v1.19/client-server-api/#end-to-end-encryption
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from homeserver.storage.batch import fetch_for_ids, is_postgres
from homeserver.storage.database import Connection, Database


@attrs.frozen
class DeviceKeysRow:
    user_id: str
    device_id: str
    key_json: str
    ed25519: str
    curve25519: str
    display_name: str | None


@attrs.frozen
class ClaimedKey:
    key_id: str  # `<algorithm>:<id>`
    key_json: str


SELECT_DEVICE_KEYS = """
SELECT user_id, device_id, key_json, ed25519, curve25519 FROM e2e_device_keys
WHERE user_id = $1 AND device_id = $2
"""
UPSERT_DEVICE_KEYS = """
INSERT INTO e2e_device_keys (user_id, device_id, key_json, ed25519, curve25519)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (user_id, device_id) DO UPDATE
SET key_json = excluded.key_json, ed25519 = excluded.ed25519, curve25519 = excluded.curve25519
"""
# The device's display name travels in `unsigned` of /keys/query answers.
_QUERY_KEYS = """
SELECT k.user_id, k.device_id, k.key_json, k.ed25519, k.curve25519, d.display_name
FROM e2e_device_keys k JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
WHERE k.user_id {}
ORDER BY k.user_id, k.device_id
"""
QUERY_KEYS_PG = _QUERY_KEYS.format("= ANY($1::text[])")
QUERY_KEYS_SQLITE = _QUERY_KEYS.format("IN (SELECT value FROM json_each($1))")

SELECT_OTK = """
SELECT key_json FROM e2e_one_time_keys
WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4
"""
INSERT_OTK = """
INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, upload_seq)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING
"""
COUNT_OTKS = """
SELECT algorithm, COUNT(*) AS n FROM e2e_one_time_keys
WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm
"""
# One key per call, oldest upload first. The DELETE is the claim: on PostgreSQL the
# subquery locks the row it picks and skips rows another claim holds, so concurrent
# claims take different keys and a key is returned by exactly one DELETE. SQLite has one
# writer, so the plain form is already serial.
_CLAIM_OTK = """
DELETE FROM e2e_one_time_keys
WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = (
    SELECT key_id FROM e2e_one_time_keys
    WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
    ORDER BY upload_seq, key_id LIMIT 1{}
)
RETURNING key_id, key_json
"""
CLAIM_OTK_PG = _CLAIM_OTK.format(" FOR UPDATE SKIP LOCKED")
CLAIM_OTK_SQLITE = _CLAIM_OTK.format("")

SELECT_FALLBACK = """
SELECT key_id, key_json, used FROM e2e_fallback_keys
WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
"""
# A re-upload of the same key keeps its `used` flag; a new key starts unused.
UPSERT_FALLBACK = """
INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
VALUES ($1, $2, $3, $4, $5, 0)
ON CONFLICT (user_id, device_id, algorithm) DO UPDATE
SET key_id = excluded.key_id, key_json = excluded.key_json,
    used = CASE WHEN e2e_fallback_keys.key_id = excluded.key_id
                 AND e2e_fallback_keys.key_json = excluded.key_json
           THEN e2e_fallback_keys.used ELSE 0 END
"""
MARK_FALLBACK_USED = """
UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
"""
SELECT_UNUSED_FALLBACK_TYPES = """
SELECT algorithm FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = 0
ORDER BY algorithm
"""


class E2eKeyStore:
    async def device_keys(self, db: Database | Connection, user_id: str,
                          device_id: str) -> DeviceKeysRow | None:
        r = await db.fetchrow(SELECT_DEVICE_KEYS, user_id, device_id)
        if r is None:
            return None
        return DeviceKeysRow(r["user_id"], r["device_id"], r["key_json"], r["ed25519"],
                             r["curve25519"], None)

    async def set_device_keys(self, conn: Connection, user_id: str, device_id: str, *,
                              key_json: str, ed25519: str, curve25519: str) -> None:
        await conn.execute(UPSERT_DEVICE_KEYS, user_id, device_id, key_json, ed25519, curve25519)

    async def keys_for_users(self, conn: Connection,
                             user_ids: Sequence[str]) -> list[DeviceKeysRow]:
        rows = await fetch_for_ids(conn, QUERY_KEYS_PG, QUERY_KEYS_SQLITE, list(user_ids))
        return [DeviceKeysRow(r["user_id"], r["device_id"], r["key_json"], r["ed25519"],
                              r["curve25519"], r["display_name"]) for r in rows]

    async def one_time_key(self, conn: Connection, user_id: str, device_id: str,
                           algorithm: str, key_id: str) -> str | None:
        value = await conn.fetchval(SELECT_OTK, user_id, device_id, algorithm, key_id)
        return value if value is None else str(value)

    async def add_one_time_keys(self, conn: Connection, user_id: str, device_id: str,
                                keys: Sequence[tuple[str, str, str]], upload_seq: int) -> None:
        """`keys`: (algorithm, key_id, key_json); existing key IDs are left alone."""
        if keys:
            await conn.executemany(INSERT_OTK, [(user_id, device_id, alg, kid, js, upload_seq)
                                                for alg, kid, js in keys])

    async def one_time_key_counts(self, db: Database | Connection, user_id: str,
                                  device_id: str) -> dict[str, int]:
        rows = await db.fetch(COUNT_OTKS, user_id, device_id)
        return {r["algorithm"]: int(r["n"]) for r in rows}

    async def claim_one_time_key(self, conn: Connection, user_id: str, device_id: str,
                                 algorithm: str) -> ClaimedKey | None:
        sql = CLAIM_OTK_PG if is_postgres(conn) else CLAIM_OTK_SQLITE
        r = await conn.fetchrow(sql, user_id, device_id, algorithm)
        return None if r is None else ClaimedKey(f"{algorithm}:{r['key_id']}", r["key_json"])

    async def set_fallback_key(self, conn: Connection, user_id: str, device_id: str,
                               algorithm: str, key_id: str, key_json: str) -> None:
        await conn.execute(UPSERT_FALLBACK, user_id, device_id, algorithm, key_id, key_json)

    async def claim_fallback_key(self, conn: Connection, user_id: str, device_id: str,
                                 algorithm: str) -> ClaimedKey | None:
        """The device's fallback key for `algorithm`, now marked used (it stays)."""
        r = await conn.fetchrow(SELECT_FALLBACK, user_id, device_id, algorithm)
        if r is None:
            return None
        if not r["used"]:
            await conn.execute(MARK_FALLBACK_USED, user_id, device_id, algorithm)
        return ClaimedKey(f"{algorithm}:{r['key_id']}", r["key_json"])

    async def unused_fallback_key_types(self, db: Database | Connection, user_id: str,
                                        device_id: str) -> list[str]:
        return [r["algorithm"] for r in await db.fetch(SELECT_UNUSED_FALLBACK_TYPES,
                                                       user_id, device_id)]
