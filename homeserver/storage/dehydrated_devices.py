"""Dehydrated devices (`dehydrated_devices`, MSC3814): which of a user's devices is the
dehydrated one, and its opaque device data. The device row, keys and to-device messages
are in the ordinary tables.
"""

from __future__ import annotations

import attrs

from homeserver.storage.batch import is_postgres
from homeserver.storage.database import Connection, Database


@attrs.frozen
class DehydratedDeviceRow:
    user_id: str
    device_id: str
    device_data: str  # canonical JSON
    created_ts: int


SELECT_FOR_USER = """
SELECT user_id, device_id, device_data, created_ts FROM dehydrated_devices WHERE user_id = $1
"""
SELECT_IS_DEHYDRATED = "SELECT 1 FROM dehydrated_devices WHERE user_id = $1 AND device_id = $2"
# Serialises replacements of one user's dehydrated device across PostgreSQL connections:
# two concurrent PUTs would otherwise both see no old device, and the second's upsert
# would leave the first's device behind as an orphan. SQLite has one writer already.
LOCK_USER_PG = "SELECT 1 FROM users WHERE user_id = $1 FOR UPDATE"
UPSERT = """
INSERT INTO dehydrated_devices (user_id, device_id, device_data, created_ts)
VALUES ($1, $2, $3, $4)
ON CONFLICT (user_id) DO UPDATE
SET device_id = excluded.device_id, device_data = excluded.device_data,
    created_ts = excluded.created_ts
"""


class DehydratedDeviceStore:
    async def lock_user(self, conn: Connection, user_id: str) -> None:
        """Held until the caller's transaction ends."""
        if is_postgres(conn):
            await conn.fetchval(LOCK_USER_PG, user_id)

    async def for_user(self, db: Database | Connection, user_id: str) -> DehydratedDeviceRow | None:
        r = await db.fetchrow(SELECT_FOR_USER, user_id)
        if r is None:
            return None
        return DehydratedDeviceRow(r["user_id"], r["device_id"], r["device_data"],
                                   int(r["created_ts"]))

    async def is_dehydrated(self, db: Database | Connection, user_id: str, device_id: str) -> bool:
        return await db.fetchval(SELECT_IS_DEHYDRATED, user_id, device_id) is not None

    async def set(self, conn: Connection, user_id: str, device_id: str, device_data: str, *,
                  now_ms: int) -> None:
        """Mark `device_id` (an existing device row) as the user's dehydrated device."""
        await conn.execute(UPSERT, user_id, device_id, device_data, now_ms)
