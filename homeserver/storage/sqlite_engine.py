"""SQLite engine: WAL mode, one writer connection, a few reader connections.

Why one writer: SQLite allows a single writer at a time; serialising writers in-process
with an asyncio lock avoids SQLITE_BUSY retries. Readers use their own connections so a
long read never waits for a write (WAL gives them a consistent snapshot).
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from homeserver.storage.database import Connection, Database, DatabaseUnavailable, Row

_PLACEHOLDER = re.compile(r"\$(\d+)")


def rewrite_placeholders(sql: str) -> str:
    """`$1` → `?1`: SQLite's numbered parameters keep asyncpg's numbering (reuse works)."""
    return _PLACEHOLDER.sub(r"?\1", sql)


class SqliteConnection(Connection):
    def __init__(self, conn: aiosqlite.Connection):
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        count = await self._in_thread(_execute_rowcount, rewrite_placeholders(sql), args)
        return max(count, 0)

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(rewrite_placeholders(sql), [tuple(a) for a in args])

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        # One hop to aiosqlite's thread instead of three (execute, fetchall, close): each
        # hop is a cross-thread wake-up, ~25 us of CPU (docs/benchmarks.md, profile).
        return list(await self._conn.execute_fetchall(rewrite_placeholders(sql), args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._in_thread(_execute_fetchone, rewrite_placeholders(sql), args)  # type: ignore[no-any-return]

    async def _in_thread(self, fn: Any, sql: str, args: tuple[Any, ...]) -> Any:
        """Run `fn(sqlite3_connection, sql, args)` on aiosqlite's thread in one hop.

        aiosqlite's cursor API costs a cross-thread round trip per call (execute, fetch,
        close); each is ~25 us of event-loop CPU, the largest cost in the send and sync
        profiles (docs/benchmarks.md). `_execute` is aiosqlite's own queueing primitive
        (private, present since its first releases; setup.cfg bounds the version)."""
        return await self._conn._execute(fn, self._conn._conn, sql, args)

    async def execute_script(self, script: str) -> None:
        # Not sqlite's executescript(): it COMMITs first, which would break the
        # migration's transaction. complete_statement() keeps triggers (BEGIN…END) whole.
        for statement in split_sql_script(script):
            await self._conn.execute(statement)


def _execute_rowcount(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> int:
    cursor = db.execute(sql, args)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def _execute_fetchone(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> Any:
    cursor = db.execute(sql, args)
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


def split_sql_script(script: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip().strip(";").strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()):
        statements.append(buffer.strip())
    return statements


def _check_directory(path: str) -> None:
    # Checked up front: after a failed connect, aiosqlite's worker thread outlives a
    # short-lived event loop and dies noisily, burying the one-line reason.
    directory = os.path.dirname(os.path.abspath(path))
    if path != ":memory:" and not os.path.isdir(directory):
        raise DatabaseUnavailable(f"cannot open SQLite database {path}: "
                                  f"directory {directory} does not exist")


async def _connect(path: str) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves.
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    # synchronous=FULL: with WAL, NORMAL survives a killed process but can lose the last
    # commits on power loss; an event answered 200 must be durable (ARCHITECTURE.md).
    for pragma in ("foreign_keys = ON", "busy_timeout = 5000", "synchronous = FULL"):
        await _pragma(conn, pragma)
    return conn


async def _pragma(conn: aiosqlite.Connection, pragma: str) -> None:
    # Some PRAGMAs return a row; an unfinished statement would hold a read lock.
    async with conn.execute(f"PRAGMA {pragma}") as cursor:
        await cursor.fetchall()


class SqliteDatabase(Database):
    engine = "sqlite"

    def __init__(self, path: str, readers: int = 2):
        self.path = path
        self._n_readers = readers if path != ":memory:" else 0
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []

    async def open(self) -> None:
        _check_directory(self.path)
        try:
            self._writer = await _connect(self.path)
        except sqlite3.Error as e:
            raise DatabaseUnavailable(f"cannot open SQLite database {self.path}: {e}") from e
        if self.path != ":memory:":
            await _pragma(self._writer, "journal_mode = WAL")
        for _ in range(self._n_readers):
            reader = await _connect(self.path)
            self._all_readers.append(reader)
            self._readers.put_nowait(reader)

    async def close(self) -> None:
        for reader in self._all_readers:
            await reader.close()
        self._all_readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteConnection]:
        assert self._writer is not None, "database not opened"
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteConnection(self._writer)
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[SqliteConnection]:
        if not self._all_readers:
            # In-memory databases are per-connection: read through the writer.
            assert self._writer is not None, "database not opened"
            async with self._write_lock:
                yield SqliteConnection(self._writer)
            return
        reader = await self._readers.get()
        try:
            yield SqliteConnection(reader)
        finally:
            self._readers.put_nowait(reader)
