"""Client transaction IDs: a retried PUT /send/.../{txnId} returns the first event.

Spec: https://spec.matrix.org/v1.19/client-server-api/#transaction-identifiers — scoped
to the device (the access token's device); tokens without a device use "".
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.storage.batch import fetch_for_ids
from homeserver.storage.database import Connection

SELECT = "SELECT event_id FROM event_txn_ids WHERE user_id = $1 AND device_id = $2 AND txn_id = $3"
INSERT = """
INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, room_id, created_ts)
VALUES ($1, $2, $3, $4, $5, $6)
"""
_FOR_EVENTS = """
SELECT event_id, txn_id FROM event_txn_ids
WHERE user_id = $2 AND device_id = $3 AND event_id {}
"""
# The array through a scalar subquery, so that PostgreSQL keeps the generic plan (see
# storage/events.py, SELECT_REDACTIONS_PG): this read runs on /sync for a device's own
# events, and was planned anew each time.
SELECT_FOR_EVENTS_PG = _FOR_EVENTS.format("= ANY((SELECT $1::text[])::text[])")
SELECT_FOR_EVENTS_SQLITE = _FOR_EVENTS.format("IN (SELECT value FROM json_each($1))")


class TxnIdStore:
    async def get(self, conn: Connection, user_id: str, device_id: str | None,
                  txn_id: str) -> str | None:
        return await conn.fetchval(SELECT, user_id, device_id or "", txn_id)  # type: ignore[no-any-return]

    async def insert(self, conn: Connection, user_id: str, device_id: str | None, txn_id: str,
                     event_id: str, room_id: str, now_ms: int) -> None:
        await conn.execute(INSERT, user_id, device_id or "", txn_id, event_id, room_id, now_ms)

    async def for_events(self, conn: Connection, user_id: str, device_id: str | None,
                         event_ids: Sequence[str]) -> dict[str, str]:
        """`event_id -> txn_id` for the events this device sent (unsigned.transaction_id)."""
        rows = await fetch_for_ids(conn, SELECT_FOR_EVENTS_PG, SELECT_FOR_EVENTS_SQLITE,
                                   list(event_ids), user_id, device_id or "")
        return {r["event_id"]: r["txn_id"] for r in rows}
