"""PostgreSQL only: hot statements keep primary-key lookups in their generic plans.

asyncpg prepares a statement once per pooled connection, and after a few executions
PostgreSQL may switch to a generic plan and keep it until the tables are analyzed again.
A plan made while `events` was nearly empty (a fresh server, then a busy room) chose a
sequential scan of `events` for a plain join, and kept reading every event on each send
and /sync as the room grew. These tests make the generic plan on an empty database, the
worst case, and check that it looks rows up by index instead. Reads whose custom plans
cost more to make than to run must also settle on that generic plan.
"""

from __future__ import annotations

import pytest

from homeserver.storage import room_batch, txn_ids
from homeserver.storage.database import Database
from homeserver.storage.events import SELECT_MANY_PG, SELECT_REDACTIONS_PG, SELECT_STREAM_RANGE
from homeserver.storage.relations import SELECT_FORMAT_READ_PG

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


async def test_format_read_looks_events_and_relations_up_by_key(database: Database) -> None:
    plan = await _generic_plan(database, SELECT_FORMAT_READ_PG, "text[], text, text[]",
                               "ARRAY['$p'], '@u', ARRAY['$a']")
    assert _scans(plan) == [], plan
    assert "Seq Scan on event_relations " not in plan, plan
    # The redactions' and the edits' events, each by primary key.
    assert plan.count("events_pkey") == 2, plan


async def test_events_by_id_read_looks_events_up_by_key(database: Database) -> None:
    plan = await _generic_plan(database, SELECT_MANY_PG, "text[]", "ARRAY['$a']")
    assert _scans(plan) == [], plan
    assert "events_pkey" in plan and "rooms_pkey" in plan, plan


async def test_transaction_ids_read_looks_them_up_by_event(database: Database) -> None:
    plan = await _generic_plan(database, txn_ids.SELECT_FOR_EVENTS_PG, "text[], text, text",
                               "ARRAY['$a'], '@u', 'D'")
    assert _scans(plan) == [], plan


@pytest.mark.parametrize("sql, args", [
    (SELECT_REDACTIONS_PG, (["$a"],)),
    (SELECT_FORMAT_READ_PG, (["$p"], "@u", ["$a"])),
    # The head read of every send batch: its custom plans knew the transaction-ID
    # arrays' length and so always looked cheaper than the generic plan, and each send
    # spent 0.1-0.16 ms planning what runs in 0.03-0.07 ms.
    (room_batch.SELECT_HEAD_PG, ("!r", ["@a"], ["D"], ["t"])),
    (SELECT_MANY_PG, (["$a"],)),
    (txn_ids.SELECT_FOR_EVENTS_PG, (["$a"], "@u", "D")),
])
async def test_reads_of_id_lists_keep_their_generic_plan(database: Database, sql: str,
                                                         args: tuple[object, ...]) -> None:
    # A custom plan of these reads costs more to make than to run; PostgreSQL must settle
    # on the generic plan checked above (five custom plans first, then the generic one).
    async with database.connection() as conn:
        for _ in range(8):
            await conn.fetch(sql, *args)
        row = await conn.fetchrow("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                  " WHERE statement = $1", sql)
    assert row is not None and row["generic_plans"] >= 2, row


async def test_stream_range_read_looks_events_up_by_position(database: Database) -> None:
    # What every woken /sync reads first: the events committed since its token.
    plan = await _generic_plan(database, SELECT_STREAM_RANGE, "bigint, bigint, int", "1, 2, 50")
    assert _scans(plan) == [], plan
    assert "events_stream_ordering_key" in plan, plan


async def test_timeline_write_finds_the_extremities_it_replaces_by_their_whole_key(
        database: Database) -> None:
    # With a realistic number of rooms the plain delete's generic plan looked the room up
    # and filtered by event ID: every dead index entry of the room's earlier extremities
    # (one per batch until the next vacuum) was walked again by each batch.
    await database.execute(
        "INSERT INTO forward_extremities (room_id, event_id)"
        " SELECT '!r' || g, '$e' || g FROM generate_series(1, 5000) AS g")
    await database.execute("ANALYZE forward_extremities")
    types = ("text, text, text[], bigint[], text[], text[], text[], bigint[], text[], text[],"
             " text[], text[], text[], text[], bigint[], text[], text[], bigint, text[], text[],"
             " text[], text[], boolean, bigint, bigint, boolean, int[], text[], text[]")
    args = ("'events', '!r', ARRAY['$e'], ARRAY[1], ARRAY['t'], ARRAY[NULL], ARRAY['@a'],"
            " ARRAY[1], ARRAY['{}'], ARRAY[NULL], ARRAY['$e'], ARRAY['$p'], ARRAY['$e'],"
            " ARRAY['$a'], ARRAY[1], ARRAY['$p'], ARRAY['$e'], 1, ARRAY['@a'], ARRAY['D'],"
            " ARRAY['t'], ARRAY['$e'], true, 1, 1, true, ARRAY[1], ARRAY['content.body'],"
            " ARRAY['words']")
    plan = await _generic_plan(database, room_batch.WRITE_TIMELINE_PG, types, args)
    lines = plan.splitlines()
    # The guard finds the room's newest event by index, not by reading its extremities.
    guard = lines[:next(i for i, line in enumerate(lines) if line.strip() == "CTE pos")]
    assert not [line for line in guard if "forward_extremities" in line], plan
    assert [line for line in guard if "Index Scan Backward using events_room_stream" in line
            or "Index Only Scan Backward using events_room_stream" in line], plan
    start = next(i for i, line in enumerate(lines) if line.strip() == "CTE removed")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("CTE "))
    lookups = [i for i in range(start, end) if "Scan using forward_extremities_pkey" in lines[i]]
    assert lookups, plan
    for i in lookups:
        assert "event_id" in lines[i + 1] and "Filter" not in lines[i + 2], plan
    # The search entries riding along check for redactions of their events by index.
    assert "Seq Scan on redactions" not in plan, plan
    assert "Index Only Scan using redactions_redacts" in plan or (
        "Index Scan using redactions_redacts" in plan), plan


async def test_timeline_write_with_push_records_looks_rows_up_by_key(database: Database) -> None:
    """The send batch's one statement on PostgreSQL, with the search entries and push's
    records riding along: no table that grows with the messages is read whole."""
    types = ("text, text, text[], bigint[], text[], text[], text[], bigint[], text[], text[],"
             " text[], text[], text[], text[], bigint[], text[], text[], bigint, text[], text[],"
             " text[], text[], boolean, bigint, bigint, boolean, int[], text[], text[],"
             " bigint, bigint, text[], text[], text[], boolean, text[], text[], text[], bigint[],"
             " bigint[], bigint[], text[], text[], text[], text[], bigint[], text[], smallint[],"
             " bigint[]")
    args = ("'events', '!r', ARRAY['$e'], ARRAY[1], ARRAY['t'], ARRAY[NULL], ARRAY['@a'],"
            " ARRAY[1], ARRAY['{}'], ARRAY[NULL], ARRAY['$e'], ARRAY['$p'], ARRAY['$e'],"
            " ARRAY['$a'], ARRAY[1], ARRAY['$p'], ARRAY['$e'], 1, ARRAY['@a'], ARRAY['D'],"
            " ARRAY['t'], ARRAY['$e'], true, 1, 1, true, ARRAY[1], ARRAY['content.body'],"
            " ARRAY['words'], 1, 2, ARRAY['@b'], ARRAY['!r'], ARRAY['@b'], true, ARRAY['@b'],"
            " ARRAY['!r'], ARRAY['main'], ARRAY[1], ARRAY[0], ARRAY[NULL::bigint], ARRAY['@b'],"
            " ARRAY['!r'], ARRAY['$e'], ARRAY['main'], ARRAY[2], ARRAY['[]'], ARRAY[0],"
            " ARRAY[1]")
    plan = await _generic_plan(database, room_batch.WRITE_TIMELINE_PUSH_PG, types, args)
    for table in (*GROWING, "notifications", "notification_counts", "event_search",
                  "redactions", "notification_room_read"):
        assert f"Seq Scan on {table} " not in plan + " ", plan
    assert "Scan using notification_counts_pkey" in plan, plan
