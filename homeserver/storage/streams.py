"""Stream positions: the counters that sync tokens are made of.

Each stream (room events, account data, to-device, ...) has one monotonically increasing
position. `next_position` must be called inside the transaction that writes the row it
numbers: the counter row stays locked until commit, so positions become visible in order.
"""

from __future__ import annotations

from homeserver.storage.database import Connection, Database

BUMP = """
INSERT INTO stream_positions (stream, position) VALUES ($1, 1)
ON CONFLICT (stream) DO UPDATE SET position = stream_positions.position + 1
RETURNING position
"""
BUMP_BY = """
INSERT INTO stream_positions (stream, position) VALUES ($1, $2)
ON CONFLICT (stream) DO UPDATE SET position = stream_positions.position + excluded.position
RETURNING position
"""
SELECT_ONE = "SELECT position FROM stream_positions WHERE stream = $1"
SELECT_ALL = "SELECT stream, position FROM stream_positions"


async def next_position(conn: Connection, stream: str) -> int:
    return int(await conn.fetchval(BUMP, stream))


async def next_positions(conn: Connection, stream: str, count: int) -> range:
    """`count` consecutive positions with one statement (same rules as next_position)."""
    if count < 1:
        raise ValueError("count must be positive")
    last = int(await conn.fetchval(BUMP_BY, stream, count))
    return range(last - count + 1, last + 1)


async def current_position(db: Database | Connection, stream: str) -> int:
    value = await db.fetchval(SELECT_ONE, stream)
    return int(value) if value is not None else 0


async def all_positions(db: Database | Connection) -> dict[str, int]:
    return {r["stream"]: int(r["position"]) for r in await db.fetch(SELECT_ALL)}
