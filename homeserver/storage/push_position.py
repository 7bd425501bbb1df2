"""`push_position`: the last events-stream position the push evaluator has finished.

The evaluator claims each event by moving the position past it inside the transaction
that writes the event's notifications, so the two commit (or roll back) together.
"""

from __future__ import annotations

from homeserver.storage.database import Connection, Database

SELECT_POSITION = "SELECT evaluated_upto FROM push_position WHERE id = 1"
# Matches no row once the position is at or past the event, so a second evaluator (a
# concurrent catch-up, another process) learns the event is taken and rolls back; on
# PostgreSQL the row lock makes it wait for the first to commit before it checks.
CLAIM = """
UPDATE push_position SET evaluated_upto = $1 WHERE id = 1 AND evaluated_upto < $1
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

    async def claim(self, conn: Connection, stream_ordering: int) -> bool:
        """Move the position to `stream_ordering`; False if it was already there or past."""
        return await conn.fetchval(CLAIM, stream_ordering) is not None

    async def events_after(self, db: Database | Connection, position: int,
                           limit: int) -> list[str]:
        """IDs of timeline events after `position`, oldest first."""
        return [r["event_id"] for r in await db.fetch(SELECT_EVENTS_AFTER, position, limit)]
