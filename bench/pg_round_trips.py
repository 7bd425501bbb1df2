"""Micro-benchmark: what a PostgreSQL round trip costs on this machine after the idle
workload's pause, and what a send batch would save as one statement (issue 5, the
eighth round in docs/benchmarks.md).

1. `SELECT 1` round trips from asyncpg with a pause of 0, 1, 5 and 50 ms before each:
   a backend (and our own process) that slept that long wakes more slowly.
2. Two shapes of a one-message send batch, each after a 50 ms pause, alternating:
   "six": the round trips DevNet makes today (BEGIN with the advisory lock, the event
   with its stream position, SAVEPOINT, a search row, a count upsert, COMMIT), and
   "one": the same writes in one autocommit call of a PL/pgSQL function that takes the
   lock first (its statements each take a fresh snapshot, so they see what the writer it
   waited for committed) and contains the search and count writes in an exception block.
   The tables are small stand-ins for DevNet's, in a scratch schema that is dropped
   afterwards: the difference between the shapes is the round trips, not the writes.
3. Whether work done while a statement is under way overlaps it (the ninth round): a
   statement that keeps the server busy for a while (a count over generated rows), with
   0, 0.15 or 0.3 ms of busy Python started right after it is sent, after no pause and
   after a 50 ms pause. Overlapped, the work costs nothing; if the backend process is
   woken on this process's CPU, the statement takes the work's time longer.

    .venv/bin/python -m bench.pg_round_trips [DSN]
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import time

import asyncpg

from bench.machine_probe import select_round_trips

DEFAULT_DSN = "postgresql://devnet:devnet@127.0.0.1/devnet_test"
SCHEMA = "bench_pg_round_trips"
PAUSE_S = 0.05
ROUNDS = 60

SETUP = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
SET search_path = {SCHEMA};
CREATE TABLE events (event_id text PRIMARY KEY, room_id text, ordering bigint, json text);
CREATE INDEX ON events (room_id, ordering);
CREATE TABLE positions (stream text PRIMARY KEY, position bigint);
INSERT INTO positions VALUES ('events', 0);
CREATE TABLE search (event_id text PRIMARY KEY, value text, vector tsvector);
CREATE TABLE counts (user_id text, room_id text, n bigint, PRIMARY KEY (user_id, room_id));
CREATE FUNCTION send(k bigint, ids text[], room text, js text[], body text, users text[])
RETURNS bigint LANGUAGE plpgsql VOLATILE SET search_path = {SCHEMA} AS $$
DECLARE last bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(k);
  UPDATE positions SET position = position + cardinality(ids) WHERE stream = 'events'
    RETURNING position INTO last;
  INSERT INTO events SELECT e.id, room, last - cardinality(ids) + e.n, e.j
    FROM unnest(ids, js) WITH ORDINALITY AS e(id, j, n);
  BEGIN
    INSERT INTO search SELECT e.id, body, to_tsvector('english', body) FROM unnest(ids) AS e(id);
    INSERT INTO counts SELECT u, room, 1 FROM unnest(users) AS u
      ON CONFLICT (user_id, room_id) DO UPDATE SET n = counts.n + 1;
  EXCEPTION WHEN OTHERS THEN RAISE WARNING 'writers failed: %', SQLERRM;
  END;
  RETURN last;
END $$;
"""
WRITE = f"""
WITH p AS (UPDATE {SCHEMA}.positions SET position = position + cardinality($1::text[])
           WHERE stream = 'events' RETURNING position),
i AS (INSERT INTO {SCHEMA}.events
      SELECT e.id, $2, p.position - cardinality($1::text[]) + e.n, e.j
      FROM p, unnest($1::text[], $3::text[]) WITH ORDINALITY AS e(id, j, n))
SELECT position FROM p
"""
SEARCH = (f"INSERT INTO {SCHEMA}.search SELECT e.id, $2, to_tsvector('english', $2) "
          "FROM unnest($1::text[]) AS e(id)")
COUNT = (f"INSERT INTO {SCHEMA}.counts SELECT u, $2, 1 FROM unnest($1::text[]) AS u "
         f"ON CONFLICT (user_id, room_id) DO UPDATE SET n = {SCHEMA}.counts.n + 1")
ONE = f"SELECT {SCHEMA}.send($1, $2, $3, $4, $5, $6)"
LOCK_KEY = 42
ROOM = "!room:bench"
BODY = "hello there"
EVENT_JSON = '{"content":{"body":"hello there","msgtype":"m.text"},"type":"m.room.message"}'
USERS = ["@a:bench", "@b:bench"]


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return (f"median {statistics.median(ordered) * 1e3:.3f} ms, "
            f"p90 {ordered[int(len(ordered) * 0.9)] * 1e3:.3f} ms")


async def _after_pauses(conn: asyncpg.Connection) -> None:
    for pause in (0.0, 0.001, 0.005, PAUSE_S):
        samples = await select_round_trips(conn, pause, ROUNDS)
        print(f"SELECT 1 after a {pause * 1e3:4.0f} ms pause: {_ms(samples)}")


async def _six(conn: asyncpg.Connection, ids: list[str]) -> None:
    await conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({LOCK_KEY})")
    await conn.fetchval(WRITE, ids, ROOM, [EVENT_JSON])
    await conn.execute("SAVEPOINT sp1")
    await conn.execute(SEARCH, ids, BODY)
    await conn.execute(COUNT, USERS, ROOM)
    await conn.execute("COMMIT")


async def _one(conn: asyncpg.Connection, ids: list[str]) -> None:
    await conn.fetchval(ONE, LOCK_KEY, ids, ROOM, [EVENT_JSON], BODY, USERS)


async def _shapes(conn: asyncpg.Connection) -> None:
    shapes = {"six round trips": _six, "one statement": _one}
    samples: dict[str, list[float]] = {name: [] for name in shapes}
    for i in range(2 * ROUNDS):
        name = list(shapes)[i % 2]
        await asyncio.sleep(PAUSE_S)
        started = time.perf_counter()
        await shapes[name](conn, ["$" + secrets.token_hex(16)])
        samples[name].append(time.perf_counter() - started)
    for name, taken in samples.items():
        print(f"send batch, {name}, after a {PAUSE_S * 1e3:.0f} ms pause: {_ms(taken[5:])}")


BUSY_STATEMENT = "SELECT count(*) FROM generate_series(1, 5000)"


def _busy(seconds: float) -> None:
    """Python that keeps this process's CPU, as building or evaluating events does."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def _overlap(conn: asyncpg.Connection) -> None:
    for pause in (0.0, PAUSE_S):
        for work in (0.0, 0.00015, 0.0003):
            samples = []
            for _ in range(ROUNDS):
                if pause:
                    await asyncio.sleep(pause)
                started = time.perf_counter()
                statement = asyncio.ensure_future(conn.fetchval(BUSY_STATEMENT))
                await asyncio.sleep(0)  # the statement is sent
                _busy(work)
                await statement
                samples.append(time.perf_counter() - started)
            print(f"statement with {work * 1e3:.2f} ms of work meanwhile, after a "
                  f"{pause * 1e3:2.0f} ms pause: {_ms(samples)}")


async def main(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SETUP)
        await _after_pauses(conn)
        await _shapes(conn)
        await _overlap(conn)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DSN))
