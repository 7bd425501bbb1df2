"""The Database API behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from homeserver.storage.database import Database
from homeserver.storage.migrations import apply_migrations, load_migrations
from homeserver.storage.sqlite_engine import rewrite_placeholders, split_sql_script

CREATE = "CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)"
INSERT = "INSERT INTO kv (k, v) VALUES ($1, $2)"
UPSERT = "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = kv.v + $2"


async def test_execute_fetch_roundtrip(database: Database) -> None:
    await database.execute(CREATE)
    assert await database.execute(INSERT, "a", 1) == 1
    await database.execute(INSERT, "b", 2**53)
    rows = await database.fetch("SELECT k, v FROM kv ORDER BY k")
    assert [(r["k"], r["v"]) for r in rows] == [("a", 1), ("b", 2**53)]
    row = await database.fetchrow("SELECT v FROM kv WHERE k = $1", "a")
    assert row is not None and row[0] == 1
    assert await database.fetchrow("SELECT v FROM kv WHERE k = $1", "zzz") is None
    assert await database.fetchval("SELECT COUNT(*) FROM kv") == 2


async def test_placeholder_reuse_and_upsert(database: Database) -> None:
    await database.execute(CREATE)
    await database.execute(INSERT, "a", 1)
    await database.execute(UPSERT, "a", 5)  # $2 used twice
    assert await database.fetchval("SELECT v FROM kv WHERE k = $1", "a") == 6
    n = await database.execute("UPDATE kv SET v = $1 WHERE k = $2", 0, "nope")
    assert n == 0


async def test_transaction_rolls_back_on_error(database: Database) -> None:
    await database.execute(CREATE)
    with pytest.raises(RuntimeError):
        async with database.transaction() as conn:
            await conn.execute(INSERT, "a", 1)
            raise RuntimeError("boom")
    assert await database.fetchval("SELECT COUNT(*) FROM kv") == 0
    async with database.transaction() as conn:
        await conn.execute(INSERT, "a", 1)
        await conn.executemany(INSERT, [("b", 2), ("c", 3)])
        assert await conn.fetchval("SELECT COUNT(*) FROM kv") == 3
    assert await database.fetchval("SELECT COUNT(*) FROM kv") == 3


async def test_unique_violation_leaves_data_intact(database: Database) -> None:
    await database.execute(CREATE)
    await database.execute(INSERT, "a", 1)
    with pytest.raises(Exception):  # noqa: B017 - engine-specific IntegrityError types
        await database.execute(INSERT, "a", 2)
    assert await database.fetchval("SELECT v FROM kv WHERE k = $1", "a") == 1


async def test_migrations_recorded_and_idempotent(database: Database) -> None:
    versions = [m.version for m in load_migrations(database.engine)]
    recorded = [r[0] for r in await database.fetch("SELECT version FROM schema_version ORDER BY version")]
    assert recorded == versions
    assert await apply_migrations(database, now_ms=1) == []


def test_placeholder_rewrite() -> None:
    assert rewrite_placeholders("SELECT $1, $10, $2") == "SELECT ?1, ?10, ?2"


def test_split_script_keeps_triggers_whole() -> None:
    script = """
    CREATE TABLE a (x INT);
    -- a comment; with a semicolon
    CREATE TRIGGER t AFTER INSERT ON a BEGIN
        INSERT INTO a VALUES (1);
    END;
    """
    statements = split_sql_script(script)
    assert len(statements) == 2
    assert statements[1].startswith("-- a comment") or "CREATE TRIGGER" in statements[1]


async def test_stream_positions_increase_per_stream(database: Database) -> None:
    from homeserver.storage import streams

    assert await streams.current_position(database, "events") == 0
    async with database.transaction() as conn:
        assert await streams.next_position(conn, "events") == 1
        assert await streams.next_position(conn, "events") == 2
        assert await streams.next_position(conn, "account_data") == 1
    assert await streams.all_positions(database) == {"events": 2, "account_data": 1}
