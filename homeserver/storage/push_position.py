"""`push_position`: the last events-stream position the push evaluator has finished.

The evaluator moves the position past a batch of events inside the transaction that
writes their notifications, so the two commit (or roll back) together.
"""

from __future__ import annotations

from homeserver.storage.database import Connection, Database

SELECT_POSITION = "SELECT evaluated_upto FROM push_position WHERE id = 1"
# Compare-and-set: matches no row unless the position is still where the evaluator read
# it, so a second evaluator (a concurrent catch-up, another process) that evaluated the
# same events learns they are taken and rolls back; on PostgreSQL the row lock makes it
# wait for the first to commit before it checks. For fresh events it is also the first
# CTE of the statement that records them (notifications.ADVANCE_AND_RECORD_PG).
ADVANCE = """
UPDATE push_position SET evaluated_upto = $2 WHERE id = 1 AND evaluated_upto = $1
RETURNING evaluated_upto
"""
# Timeline events (outliers have no stream ordering) in the order they committed: stream
# positions become visible in order (storage/streams.py).
SELECT_EVENTS_AFTER = """
SELECT event_id FROM events WHERE stream_ordering > $1 ORDER BY stream_ordering LIMIT $2
"""


class PushPositionStore:
    async def evaluated_upto(self, db: Database | Connection) -> int:
        return int(await db.fetchval(SELECT_POSITION) or 0)

    async def advance(self, conn: Connection, expected: int, position: int) -> bool:
        """Move the position from `expected` to `position`; False (and no change) if it
        is no longer at `expected`."""
        return await conn.fetchval(ADVANCE, expected, position) is not None

    async def events_after(self, db: Database | Connection, position: int,
                           limit: int) -> list[str]:
        """IDs of timeline events after `position`, oldest first."""
        return [r["event_id"] for r in await db.fetch(SELECT_EVENTS_AFTER, position, limit)]
