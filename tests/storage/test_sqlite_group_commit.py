"""SQLite group commit: concurrent transactions share commits, and each keeps its own
all-or-nothing outcome (homeserver/storage/sqlite_engine.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.storage import sqlite_engine
from homeserver.storage.sqlite_engine import SqliteDatabase

CREATE = "CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)"
INSERT = "INSERT INTO kv (k, v) VALUES ($1, $2)"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "gc.db"))
    await database.open()
    await database.execute(CREATE)
    yield database
    await database.close()


def count_commits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = sqlite_engine._run

    def run(conn: object, sql: str) -> None:
        seen.append(sql)
        original(conn, sql)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_engine, "_run", run)
    return seen


async def keys(db: SqliteDatabase) -> list[str]:
    return [r["k"] for r in await db.fetch("SELECT k FROM kv ORDER BY k")]


async def test_concurrent_transactions_share_commits_and_are_visible_on_return(
        db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    commits = count_commits(monkeypatch)

    async def write(i: int) -> None:
        async with db.transaction() as conn:
            await conn.execute(INSERT, f"k{i:03}", i)
            await asyncio.sleep(0)  # let the others queue up behind this one
        # Returned means committed: the separate reader connection sees it.
        assert await db.fetchval("SELECT v FROM kv WHERE k = $1", f"k{i:03}") == i

    await asyncio.gather(*(write(i) for i in range(100)))
    assert await keys(db) == [f"k{i:03}" for i in range(100)]
    assert 1 <= commits.count("COMMIT") < 100


async def test_a_failing_transaction_rolls_back_only_its_own_work(db: SqliteDatabase) -> None:
    async def ok(i: int) -> None:
        async with db.transaction() as conn:
            await conn.execute(INSERT, f"ok{i}", i)
            await asyncio.sleep(0)

    async def bad() -> None:
        async with db.transaction() as conn:
            await conn.execute(INSERT, "bad", 1)
            await asyncio.sleep(0)
            raise RuntimeError("boom")

    results = await asyncio.gather(ok(1), bad(), ok(2), bad(), ok(3), return_exceptions=True)
    assert [type(r) for r in results] == [type(None), RuntimeError, type(None), RuntimeError, type(None)]
    assert await keys(db) == ["ok1", "ok2", "ok3"]


async def test_a_constraint_violation_in_a_batch_spares_the_others(db: SqliteDatabase) -> None:
    await db.execute(INSERT, "taken", 0)

    async def insert(k: str) -> None:
        async with db.transaction() as conn:
            await asyncio.sleep(0)
            await conn.execute(INSERT, k, 1)

    results = await asyncio.gather(insert("a"), insert("taken"), insert("b"), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)
    assert await keys(db) == ["a", "b", "taken"]
    assert await db.fetchval("SELECT v FROM kv WHERE k = 'taken'") == 0


async def test_cancelled_callers_neither_hang_the_batch_nor_lose_others_work(db: SqliteDatabase) -> None:
    release = asyncio.Event()

    async def slow_first() -> None:
        async with db.transaction() as conn:
            await conn.execute(INSERT, "first", 1)
            await release.wait()

    async def waiter(k: str) -> None:
        async with db.transaction() as conn:
            await conn.execute(INSERT, k, 1)

    first = asyncio.create_task(slow_first())
    await asyncio.sleep(0)
    doomed = asyncio.create_task(waiter("doomed"))
    survivor = asyncio.create_task(waiter("survivor"))
    await asyncio.sleep(0)
    doomed.cancel()  # cancelled while waiting for the writer
    release.set()
    await asyncio.wait_for(asyncio.gather(first, survivor), timeout=10)
    assert doomed.cancelled()
    assert await keys(db) == ["first", "survivor"]
    # The writer is free again.
    await asyncio.wait_for(waiter("after"), timeout=10)
    assert "after" in await keys(db)


async def test_a_failed_commit_fails_every_member_and_stores_nothing(
        db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    original = sqlite_engine._run

    def run(conn: object, sql: str) -> None:
        if sql == "COMMIT":
            raise OSError("disk full (simulated)")
        original(conn, sql)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_engine, "_run", run)

    async def write(i: int) -> None:
        async with db.transaction() as conn:
            await conn.execute(INSERT, f"k{i}", i)
            await asyncio.sleep(0)

    results = await asyncio.gather(*(write(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    monkeypatch.setattr(sqlite_engine, "_run", original)
    assert await keys(db) == []
    await write(9)  # the writer recovered
    assert await keys(db) == ["k9"]


async def test_a_write_lock_held_by_another_process_is_waited_for_off_the_loop(
        db: SqliteDatabase, tmp_path: Path) -> None:
    """A free write lock is taken on the loop; one held elsewhere (another process:
    here a second connection) is waited for on the commit thread while the loop runs."""
    import sqlite3
    other = sqlite3.connect(str(tmp_path / "gc.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO kv (k, v) VALUES ('other', 1)")

    async def write() -> None:
        async with db.transaction() as conn:
            await conn.execute(INSERT, "mine", 2)
    writing = asyncio.create_task(write())
    for _ in range(10):  # the loop keeps running while the write waits for the lock
        await asyncio.sleep(0)
    assert not writing.done()
    other.execute("COMMIT")
    other.close()
    await writing
    assert await keys(db) == ["mine", "other"]
    # The lock is free again: taken on the loop, and the connection does not wait there.
    assert db._writer is not None
    assert db._writer.execute("PRAGMA busy_timeout").fetchone()[0] == 0
    await write_again(db)


async def write_again(db: SqliteDatabase) -> None:
    async with db.transaction() as conn:
        await conn.execute(INSERT, "again", 3)
    assert "again" in await keys(db)


class TimedCommits:
    """Where each COMMIT runs (the thread's name), each timed as taking `seconds` (a
    simulated fsync, on whichever thread commits). The engine sees only the simulated
    time, not the real one, which a loaded machine (tests in parallel) would stretch."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.where: list[str] = []
        self.seconds = 0.0
        original = sqlite_engine._timed_commit

        def timed_commit(conn: object) -> float:
            self.where.append(threading.current_thread().name)
            original(conn)  # type: ignore[arg-type]
            return self.seconds

        monkeypatch.setattr(sqlite_engine, "_timed_commit", timed_commit)


async def write_keys(db: SqliteDatabase, prefix: str, n: int) -> None:
    """`n` transactions one after the other, one row each."""
    for i in range(n):
        async with db.transaction() as conn:
            await conn.execute(INSERT, f"{prefix}{i}", 1)


async def test_commits_run_on_the_loop_only_while_they_are_fast(
        db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    """An uncontended COMMIT runs on the loop while commits are quick (a fast disk); once
    they are slow (simulated here), they move to the commit thread."""
    commits = TimedCommits(monkeypatch)
    await write_keys(db, "fast", 3)
    assert commits.where == ["MainThread"] * 3
    commits.seconds = 0.01
    await write_keys(db, "slow", 6)
    assert commits.where[-1].startswith("sqlite-commit")
    assert len(await keys(db)) == 9


async def test_commits_come_back_to_the_loop_when_the_thread_is_all_that_made_them_slow(
        db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit timed on the commit thread includes its waits for the GIL (1.4-1.8 ms on a
    busy loop in bench/'s workload 1, against 0.4 ms inline). Such times must not keep
    commits on the thread: after a slow spell they come back to the loop by themselves."""
    commits = TimedCommits(monkeypatch)
    commits.seconds = 0.01  # a slow spell: commits go to the thread
    await write_keys(db, "slow", 6)
    assert commits.where[-1].startswith("sqlite-commit")
    commits.seconds = 0.002  # what the thread's round trip costs on a busy loop
    await write_keys(db, "after", 12)
    assert commits.where[-1] == "MainThread"
    assert len(await keys(db)) == 18
