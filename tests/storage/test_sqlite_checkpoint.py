"""SQLite checkpoints run in the background after commits, not inside the writer's
COMMIT (homeserver/storage/sqlite_engine.py, "Why checkpoints run on a thread")."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.storage import sqlite_engine
from homeserver.storage.sqlite_engine import SqliteDatabase

CREATE = "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)"
INSERT = "INSERT INTO kv (k, v) VALUES ($1, $2)"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "cp.db"))
    await database.open()
    yield database
    await database.close()


def rows_in_main_file(path: Path, tmp_path: Path) -> int:
    """Rows visible in the database file alone, i.e. without the WAL's frames."""
    copy = tmp_path / "main-only.db"
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM kv").fetchone()[0])
    except sqlite3.OperationalError:  # the table itself is still only in the WAL
        return -1
    finally:
        conn.close()


async def test_a_commit_starts_a_background_checkpoint(db: SqliteDatabase, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_engine, "CHECKPOINT_INTERVAL_S", 0.0)
    await db.execute(CREATE)
    for i in range(20):
        async with db.transaction() as conn:
            await conn.execute(INSERT, f"k{i}", "x" * 500)
        # Each commit found no checkpoint running (the last one was awaited) and started one.
        running = db._checkpoint_running
        assert running is not None
        await running
    # The writer's own automatic checkpoint would not have run this early (20 small
    # commits are far below its backstop), so the rows reached the file through ours.
    assert rows_in_main_file(tmp_path / "cp.db", tmp_path) == 20


async def test_checkpoints_are_spaced_out(db: SqliteDatabase,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    original = sqlite_engine._checkpoint
    monkeypatch.setattr(sqlite_engine, "_checkpoint",
                        lambda conn: (started.append(conn), original(conn))[1])
    monkeypatch.setattr(sqlite_engine, "CHECKPOINT_INTERVAL_S", 3600.0)
    await db.execute(CREATE)
    for i in range(10):
        async with db.transaction() as conn:
            await conn.execute(INSERT, f"k{i}", "v")
        if db._checkpoint_running is not None:
            await db._checkpoint_running
    # The first commit starts one; the next ones fall inside the interval.
    assert len(started) == 1
    assert await db.fetchval("SELECT COUNT(*) FROM kv") == 10
