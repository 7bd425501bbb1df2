"""Transactions and savepoints on both engines, and on PostgreSQL the statements the
engine sends (storage/postgres_engine.py defers BEGIN and RELEASE to save round trips:
the outcome must be exactly that of sending them at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from homeserver.storage import postgres_engine
from homeserver.storage.database import Database

CREATE = "CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)"
INSERT = "INSERT INTO kv (k, v) VALUES ($1, $2)"


async def _keys(database: Database) -> list[str]:
    return [r["k"] for r in await database.fetch("SELECT k FROM kv ORDER BY k")]


async def test_failed_savepoint_keeps_the_rest_of_the_transaction(database: Database) -> None:
    await database.execute(CREATE)
    async with database.transaction() as conn:
        await conn.execute(INSERT, "a", 1)
        async with conn.savepoint():
            await conn.execute(INSERT, "b", 1)
        with pytest.raises(Exception):  # noqa: B017 - engine-specific IntegrityError types
            async with conn.savepoint():
                await conn.execute(INSERT, "c", 1)
                await conn.execute(INSERT, "a", 2)  # duplicate key: this savepoint fails
        await conn.execute(INSERT, "d", 1)
    assert await _keys(database) == ["a", "b", "d"]


async def test_nested_savepoints(database: Database) -> None:
    """An inner savepoint that succeeded is undone with a failing outer one; an inner
    one that failed leaves its outer one going."""
    await database.execute(CREATE)
    async with database.transaction() as conn:
        with pytest.raises(RuntimeError):
            async with conn.savepoint():
                await conn.execute(INSERT, "a", 1)
                async with conn.savepoint():
                    await conn.execute(INSERT, "b", 1)
                raise RuntimeError("outer fails")
        async with conn.savepoint():
            await conn.execute(INSERT, "c", 1)
            with pytest.raises(RuntimeError):
                async with conn.savepoint():
                    await conn.execute(INSERT, "d", 1)
                    raise RuntimeError("inner fails")
            await conn.execute(INSERT, "e", 1)
    assert await _keys(database) == ["c", "e"]


async def test_many_savepoints_then_rollback(database: Database) -> None:
    await database.execute(CREATE)
    async with database.transaction() as conn:
        for i in range(50):
            async with conn.savepoint():
                await conn.execute(INSERT, f"k{i:02d}", i)
    assert len(await _keys(database)) == 50
    with pytest.raises(RuntimeError):
        async with database.transaction() as conn:
            for i in range(50, 60):
                async with conn.savepoint():
                    await conn.execute(INSERT, f"k{i:02d}", i)
            raise RuntimeError("whole transaction fails")
    assert len(await _keys(database)) == 50


async def test_empty_transaction_and_a_cancelled_one(database: Database) -> None:
    await database.execute(CREATE)
    async with database.transaction():
        pass
    started = asyncio.Event()

    async def hang() -> None:
        async with database.transaction() as conn:
            await conn.execute(INSERT, "lost", 1)
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with database.transaction() as conn:
        await conn.execute(INSERT, "kept", 1)
    assert await _keys(database) == ["kept"]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The simple-protocol statements (those without parameters) the PostgreSQL engine
    sends, and a marker per parameterised one."""
    log: list[str] = []
    cls = postgres_engine._NoSessionResetConnection
    execute, fetch = cls.execute, cls.fetch

    async def logged_execute(self: Any, sql: str, *args: Any, **kw: Any) -> Any:
        log.append(sql if not args else "<statement>")
        return await execute(self, sql, *args, **kw)

    async def logged_fetch(self: Any, sql: str, *args: Any, **kw: Any) -> Any:
        log.append("<statement>")
        return await fetch(self, sql, *args, **kw)

    monkeypatch.setattr(cls, "execute", logged_execute)
    monkeypatch.setattr(cls, "fetch", logged_fetch)
    yield log


@pytest.mark.parametrize("engine", ["postgres"])
async def test_postgres_sends_begin_with_the_lock_and_no_release_before_commit(
        database: Database, sent: list[str]) -> None:
    await database.execute(CREATE)
    sent.clear()
    async with database.transaction() as conn:
        await conn.advisory_lock(42)  # type: ignore[attr-defined]
        await conn.execute(INSERT, "a", 1)
        async with conn.savepoint():
            await conn.execute(INSERT, "b", 1)
        async with conn.savepoint():
            await conn.execute(INSERT, "c", 1)
    assert sent == ["BEGIN; SELECT pg_advisory_xact_lock(42)", "<statement>",
                    "SAVEPOINT sp1", "<statement>",
                    "RELEASE SAVEPOINT sp1; SAVEPOINT sp2", "<statement>", "COMMIT"]
    assert await _keys(database) == ["a", "b", "c"]
    sent.clear()
    async with database.transaction():
        pass
    assert sent == []


@pytest.mark.parametrize("engine", ["postgres"])
async def test_postgres_room_lock_still_serialises_writers(database: Database) -> None:
    """The lock sent with BEGIN is held until COMMIT: a second writer waits for it."""
    await database.execute(CREATE)
    order: list[str] = []
    async with database.transaction() as first:
        await first.advisory_lock(7)  # type: ignore[attr-defined]

        async def second() -> None:
            async with database.transaction() as conn:
                await conn.advisory_lock(7)  # type: ignore[attr-defined]
                order.append("second")

        task = asyncio.create_task(second())
        # Wait (bounded) until the second transaction is seen blocked on the lock.
        for _ in range(500):
            waiting = await database.fetchval(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting == 1 and not task.done()
        order.append("first")
    await task
    assert order == ["first", "second"]
