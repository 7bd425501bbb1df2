"""PostgreSQL only: hot statements keep primary-key lookups in their generic plans.

asyncpg prepares a statement once per pooled connection, and after a few executions
PostgreSQL may switch to a generic plan and keep it until the tables are analyzed again.
A plan made while `events` was nearly empty (a fresh server, then a busy room) chose a
sequential scan of `events` for a plain join, and kept reading every event on each send
and /sync as the room grew. These tests make the generic plan on an empty database, the
worst case, and check that it looks rows up by index instead.
"""

from __future__ import annotations

import pytest

from homeserver.storage import room_batch
from homeserver.storage.database import Database
from homeserver.storage.events import SELECT_REDACTIONS_PG

# The tables whose growth made a scan costly: every room's events and every sent
# message's transaction ID.
GROWING = ("events", "event_txn_ids")

pytestmark = pytest.mark.parametrize("engine", ["postgres"])


async def _generic_plan(database: Database, sql: str, types: str, args: str) -> str:
    async with database.transaction() as conn:
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE generic_probe ({types}) AS {sql}")
        try:
            rows = await conn.fetch(f"EXPLAIN EXECUTE generic_probe ({args})")
        finally:
            await conn.execute("DEALLOCATE generic_probe")
    return "\n".join(row[0] for row in rows)


def _scans(plan: str) -> list[str]:
    return [table for table in GROWING if f"Seq Scan on {table} " in plan + " "]


async def test_redactions_read_looks_events_up_by_key(database: Database) -> None:
    plan = await _generic_plan(database, SELECT_REDACTIONS_PG, "text[]", "ARRAY['$a']")
    assert _scans(plan) == [], plan
    assert "events_pkey" in plan, plan


async def test_head_read_looks_events_and_transaction_ids_up_by_key(database: Database) -> None:
    plan = await _generic_plan(database, room_batch.SELECT_HEAD_PG, "text, text[], text[], text[]",
                               "'!r', ARRAY['@a'], ARRAY['D'], ARRAY['t']")
    assert _scans(plan) == [], plan
    assert "events_pkey" in plan and "event_txn_ids_pkey" in plan, plan
