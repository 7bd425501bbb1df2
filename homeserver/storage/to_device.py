"""Pending to-device messages (`to_device_messages`) and send transaction IDs
(`to_device_txns`). Spec: https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from homeserver.storage.database import Connection, Database


@attrs.frozen
class ToDeviceRow:
    stream_id: int
    sender: str
    type: str
    content: str  # canonical JSON


@attrs.frozen
class NewMessage:
    user_id: str
    device_id: str
    stream_id: int
    sender: str
    type: str
    content: str


INSERT_TXN = """
INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)
ON CONFLICT (user_id, device_id, txn_id) DO NOTHING
"""
SELECT_DEVICE_IDS = "SELECT device_id FROM devices WHERE user_id = $1 ORDER BY device_id"
SELECT_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2"
SELECT_IS_DEHYDRATED = "SELECT 1 FROM dehydrated_devices WHERE user_id = $1 AND device_id = $2"
COUNT_PENDING = "SELECT COUNT(*) FROM to_device_messages WHERE user_id = $1 AND device_id = $2"
INSERT_MESSAGE = """
INSERT INTO to_device_messages (user_id, device_id, stream_id, sender, type, content)
VALUES ($1, $2, $3, $4, $5, $6)
"""
SELECT_PENDING = """
SELECT stream_id, sender, type, content FROM to_device_messages
WHERE user_id = $1 AND device_id = $2 AND stream_id > $3 AND stream_id <= $4
ORDER BY stream_id LIMIT $5
"""
DELETE_UP_TO = """
DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3
"""


class ToDeviceStore:
    async def claim_txn(self, conn: Connection, user_id: str, device_id: str, txn_id: str,
                        now_ms: int) -> bool:
        """Record the transaction ID; False when it was already used (a retry)."""
        return await conn.execute(INSERT_TXN, user_id, device_id, txn_id, now_ms) == 1

    async def device_ids(self, conn: Connection, user_id: str) -> list[str]:
        return [r["device_id"] for r in await conn.fetch(SELECT_DEVICE_IDS, user_id)]

    async def device_exists(self, conn: Connection, user_id: str, device_id: str) -> bool:
        return await conn.fetchval(SELECT_DEVICE_EXISTS, user_id, device_id) is not None

    async def is_dehydrated(self, conn: Connection, user_id: str, device_id: str) -> bool:
        return await conn.fetchval(SELECT_IS_DEHYDRATED, user_id, device_id) is not None

    async def pending_count(self, conn: Connection, user_id: str, device_id: str) -> int:
        return int(await conn.fetchval(COUNT_PENDING, user_id, device_id))

    async def add(self, conn: Connection, messages: Sequence[NewMessage]) -> None:
        if messages:
            await conn.executemany(INSERT_MESSAGE, [
                (m.user_id, m.device_id, m.stream_id, m.sender, m.type, m.content)
                for m in messages])

    async def pending(self, db: Database | Connection, user_id: str, device_id: str, *,
                      after: int, up_to: int, limit: int) -> list[ToDeviceRow]:
        rows = await db.fetch(SELECT_PENDING, user_id, device_id, after, up_to, limit)
        return [ToDeviceRow(int(r["stream_id"]), r["sender"], r["type"], r["content"])
                for r in rows]

    async def delete_up_to(self, conn: Connection, user_id: str, device_id: str,
                           up_to: int) -> int:
        return await conn.execute(DELETE_UP_TO, user_id, device_id, up_to)
