"""SQLite engine: WAL mode, one writer connection with group commit, one reader connection.

Why statements run on the event loop's thread: an indexed SQLite statement costs
5-30 us, while handing it to a worker thread and back costs more than that in wake-ups
and GIL hand-overs (it was the largest cost in the send and sync profiles,
docs/benchmarks.md). Only the one slow thing, the fsync of COMMIT (~2 ms on an ordinary
disk), runs on a worker thread, unless the disk is fast and nobody waits (see
INLINE_COMMIT_MAX_S); so does BEGIN IMMEDIATE when another process holds the
write lock (it waits then), while a free lock is taken on the loop without waiting.

Why group commit: every commit is an fsync, and SQLite has one writer. A transaction
that finishes while others are waiting for the writer hands the open transaction on to
the next one instead of committing; the last in the chain commits once for all, and each
caller's `async with db.transaction()` returns only after that commit, so "answered
means durable" holds. Each caller's work sits in a SAVEPOINT: a caller that fails rolls
back only its own work. Writers therefore must not wait, inside a transaction body, for
anything another transaction holds (ARCHITECTURE.md: take in-process locks before the
transaction, as the event persister does with its room locks).

Why one shared reader connection: reads are single statements run to completion without
an `await` in between, so any number of tasks can share it; it is separate from the
writer so reads never see a transaction that has not committed yet.

Why checkpoints run on a thread of their own: SQLite's automatic checkpoint runs inside
the COMMIT that crosses 1,000 WAL pages, i.e. on the writer (the loop, or the commit
thread the next writers wait for), several times a second under load, and it writes
every page again to the database file with an fsync. A PASSIVE checkpoint on its own
connection copies the committed pages while the writer goes on; SQLite releases the GIL
while it does, so it runs on the other core; and checkpointing every
CHECKPOINT_INTERVAL_S rather than every 1,000 pages writes a page dirtied by many
commits in between (an index leaf, the end of a table) once instead of many times. The
writer's own automatic checkpoint stays as a backstop at a much larger size.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from homeserver.storage.database import Connection, Database, DatabaseUnavailable, Row

logger = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"\$(\d+)")
# Transactions that may share one commit. Bounded so the first caller's wait stays short
# when writers keep arriving.
MAX_GROUP_COMMIT = 64
# A COMMIT nobody else waits for runs on the loop while recent commits took less than
# this: handing it to the commit thread and back then costs the batch's callers more than
# the commit itself. A slow disk (a spinning one: 5-10 ms per fsync) keeps commits on the
# thread, so the loop does not stall for its fsyncs.
#
# Why 4 ms: on a busy loop the thread's round trip is itself a millisecond or more (the
# thread waits for the GIL to start, and again to return from the COMMIT): in workload 1
# of bench/, 1.4-1.8 ms median from start to end against 0.4 ms for the same COMMIT
# inline, and a room's next batch cannot start before it ends. With 1 ms here, a few slow
# fsyncs in a row (a checkpoint, the host's writeback) sent commits to the thread, whose
# own times (GIL waits included) then kept them there, and send throughput fell by up to
# a quarter in those runs (docs/benchmarks.md, the eleventh round). Times taken on the
# thread stay below 4 ms on a fast disk, so commits come back to the loop by themselves.
INLINE_COMMIT_MAX_S = 0.004
# How long a write waits for another process holding SQLite's write lock.
BUSY_TIMEOUT_MS = 5000
# At most one background checkpoint per interval, started by a commit (see the module
# docstring); the writer checkpoints by itself only if the WAL grows past the backstop.
CHECKPOINT_INTERVAL_S = 0.25
WRITER_AUTOCHECKPOINT_PAGES = 20_000


@functools.lru_cache(maxsize=4096)
def rewrite_placeholders(sql: str) -> str:
    """`$1` → `?1`: SQLite's numbered parameters keep asyncpg's numbering (reuse works).

    Cached: SQL strings are module constants, so the set is small and fixed."""
    return _PLACEHOLDER.sub(r"?\1", sql)


class SqliteConnection(Connection):
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        cursor = self._conn.execute(rewrite_placeholders(sql), args)
        try:
            return max(cursor.rowcount, 0)
        finally:
            cursor.close()

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(rewrite_placeholders(sql), [tuple(a) for a in args]).close()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        cursor = self._conn.execute(rewrite_placeholders(sql), args)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        cursor = self._conn.execute(rewrite_placeholders(sql), args)
        try:
            return cursor.fetchone()  # type: ignore[no-any-return]
        finally:
            cursor.close()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        # Nested savepoints need distinct names only for readability; SQLite resolves a
        # name to the innermost savepoint with it.
        self._conn.execute("SAVEPOINT inner_sp").close()
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK TO inner_sp").close()
            self._conn.execute("RELEASE inner_sp").close()
            raise
        self._conn.execute("RELEASE inner_sp").close()

    async def execute_script(self, script: str) -> None:
        # Not sqlite's executescript(): it COMMITs first, which would break the
        # migration's transaction. complete_statement() keeps triggers (BEGIN…END) whole.
        for statement in split_sql_script(script):
            self._conn.execute(statement).close()


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
    directory = os.path.dirname(os.path.abspath(path))
    if path != ":memory:" and not os.path.isdir(directory):
        raise DatabaseUnavailable(f"cannot open SQLite database {path}: "
                                  f"directory {directory} does not exist")


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: the
    # writer's BEGIN and COMMIT run on the commit thread; the engine guarantees that only
    # one thread uses a connection at a time (the writer is owned by one caller at once).
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           cached_statements=512)
    conn.row_factory = sqlite3.Row
    # synchronous=FULL: with WAL, NORMAL survives a killed process but can lose the last
    # commits on power loss; an event answered 200 must be durable (ARCHITECTURE.md).
    # temp_store=MEMORY: every transaction is a SAVEPOINT (group commit) and multi-row
    # statements keep statement journals; on files, each of them was a temporary file
    # created, written, unlinked and evicted by the kernel (~5% of a busy server's CPU).
    for pragma in ("foreign_keys = ON", f"busy_timeout = {BUSY_TIMEOUT_MS}", "synchronous = FULL",
                   "temp_store = MEMORY"):
        conn.execute(f"PRAGMA {pragma}").fetchall()
    return conn


class _Batch:
    """One open write transaction shared by `members` callers (group commit)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.members = 0
        self.committed: asyncio.Future[None] = loop.create_future()
        # Members may all be gone (cancelled) by the time a commit fails; nobody would
        # read the exception then, and asyncio would log it as never retrieved.
        self.committed.add_done_callback(lambda f: f.cancelled() or f.exception())


class SqliteDatabase(Database):
    engine = "sqlite"

    def __init__(self, path: str, readers: int = 1):
        self.path = path
        # ":memory:" databases are per connection: everything goes through the writer.
        self._separate_reader = path != ":memory:" and readers > 0
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        # The one thread that runs BEGIN IMMEDIATE and COMMIT (they may block).
        self._commit_thread: ThreadPoolExecutor | None = None
        # Ownership of the writer: at most one caller (or the committer) at a time; the
        # others wait in FIFO order and are handed ownership directly.
        self._owned = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._batch: _Batch | None = None
        self._committing: set[asyncio.Task[None]] = set()
        # Moving average of how long COMMIT itself takes (seconds), wherever it runs.
        self._commit_seconds = 0.0
        # The background checkpointer: its own connection and thread (module docstring).
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_thread: ThreadPoolExecutor | None = None
        self._checkpoint_running: asyncio.Future[None] | None = None
        # -inf: the first commit may start one whatever the loop clock reads (it counts
        # from boot: within CHECKPOINT_INTERVAL_S of it, 0.0 would hold the first back).
        self._last_checkpoint = float("-inf")

    async def open(self) -> None:
        _check_directory(self.path)
        try:
            self._writer = _connect(self.path)
            if self.path != ":memory:":
                self._writer.execute("PRAGMA journal_mode = WAL").fetchall()
            # The writer waits only in _begin_waiting, on the commit thread (see _begin).
            self._writer.execute("PRAGMA busy_timeout = 0").close()
            if self._separate_reader:
                self._reader = _connect(self.path)
                self._writer.execute(
                    f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}").fetchall()
                self._checkpointer = _connect(self.path)
        except sqlite3.Error as e:
            raise DatabaseUnavailable(f"cannot open SQLite database {self.path}: {e}") from e
        self._commit_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
        if self._checkpointer is not None:
            self._checkpoint_thread = ThreadPoolExecutor(max_workers=1,
                                                         thread_name_prefix="sqlite-checkpoint")

    async def close(self) -> None:
        # Let a commit in flight finish: its callers are waiting for it.
        while self._committing:
            await asyncio.gather(*self._committing, return_exceptions=True)
        if self._writer is not None:
            # Take the writer, so no transaction is open on it, and let the commit
            # thread finish what is queued (e.g. the undoing of a cancelled BEGIN)
            # before the connections go.
            await self._acquire()
            if self._commit_thread is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._commit_thread.shutdown)
                self._commit_thread = None
        if self._checkpoint_running is not None:
            await asyncio.gather(self._checkpoint_running, return_exceptions=True)
        if self._checkpoint_thread is not None:
            self._checkpoint_thread.shutdown(wait=True)
            self._checkpoint_thread = None
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._commit_thread is not None:
            self._commit_thread.shutdown(wait=True)
            self._commit_thread = None

    # -- ownership of the writer ---------------------------------------------------------

    async def _acquire(self) -> None:
        if not self._owned:
            self._owned = True
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Ownership was handed to us just as we were cancelled: pass it on, or a
                # batch left open would never commit.
                self._pass_on()
            else:
                self._waiters.remove(waiter)
            raise

    def _hand_over_or_free(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._owned = False

    def _pass_on(self) -> None:
        """The owner is done with the writer: continue the open batch with the next
        waiter, or commit it, or just hand over / free the writer."""
        batch = self._batch
        if batch is None:
            self._hand_over_or_free()
        elif any(not w.done() for w in self._waiters):
            if batch.members < MAX_GROUP_COMMIT:
                self._hand_over_or_free()
            else:
                self._commit_in_thread(batch)
        elif self._commit_seconds < INLINE_COMMIT_MAX_S:
            self._commit_inline(batch)
        else:
            self._commit_in_thread(batch)

    def _commit_in_thread(self, batch: _Batch) -> None:
        # A task of its own, so a cancelled caller cannot leave the batch uncommitted.
        task = asyncio.get_running_loop().create_task(self._commit(batch))
        self._committing.add(task)
        task.add_done_callback(self._committing.discard)

    def _commit_inline(self, batch: _Batch) -> None:
        writer = self._writer
        assert writer is not None
        try:
            seconds = _timed_commit(writer)
        except BaseException as e:
            self._end_batch(batch, e)
            return
        self._note_commit_time(seconds)
        self._end_batch(batch, None)

    async def _commit(self, batch: _Batch) -> None:
        writer = self._writer
        assert writer is not None and self._commit_thread is not None
        loop = asyncio.get_running_loop()
        try:
            seconds = await loop.run_in_executor(self._commit_thread, _timed_commit, writer)
        except BaseException as e:
            self._end_batch(batch, e)
            return
        self._note_commit_time(seconds)
        self._end_batch(batch, None)

    def _end_batch(self, batch: _Batch, error: BaseException | None) -> None:
        """The batch's COMMIT is over: tell its members how it went, free the writer."""
        writer = self._writer
        try:
            if error is None:
                batch.committed.set_result(None)
                self._maybe_checkpoint()
            else:
                if writer is not None and writer.in_transaction:
                    writer.execute("ROLLBACK").close()
                batch.committed.set_exception(error)
        finally:
            self._batch = None
            self._hand_over_or_free()

    def _maybe_checkpoint(self) -> None:
        """After a commit: start a background checkpoint unless one runs or ran lately."""
        if self._checkpointer is None or self._checkpoint_running is not None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._last_checkpoint < CHECKPOINT_INTERVAL_S:
            return
        self._last_checkpoint = now
        assert self._checkpoint_thread is not None
        running = loop.run_in_executor(self._checkpoint_thread, _checkpoint, self._checkpointer)
        self._checkpoint_running = running

        def done(future: asyncio.Future[None]) -> None:
            self._checkpoint_running = None
            _consume(future)
        running.add_done_callback(done)

    def _note_commit_time(self, seconds: float) -> None:
        self._commit_seconds = 0.8 * self._commit_seconds + 0.2 * seconds

    async def _begin(self) -> _Batch:
        """BEGIN IMMEDIATE: on the loop when the write lock is free (the usual case: no
        other process writes), else on the commit thread, which may wait for it."""
        writer = self._writer
        assert writer is not None and self._commit_thread is not None, "database not opened"
        loop = asyncio.get_running_loop()
        if self._try_begin(writer):
            return _Batch(loop)
        begun = loop.run_in_executor(self._commit_thread, _begin_waiting, writer)
        try:
            await asyncio.shield(begun)
        except asyncio.CancelledError:
            # The BEGIN may still run on the thread after we give up; the commit thread
            # runs one job at a time, so a ROLLBACK queued behind it undoes it. Nobody
            # waits for either any more: their outcome is only logged if it is an error
            # other than the database having been closed meanwhile.
            begun.add_done_callback(_consume)
            loop.run_in_executor(self._commit_thread, _rollback_if_open, writer).add_done_callback(_consume)
            raise
        return _Batch(loop)

    @staticmethod
    def _try_begin(writer: sqlite3.Connection) -> bool:
        # The writer's busy timeout is 0 outside _begin_waiting, so this never blocks the
        # loop; a thread hop per transaction was a measurable share of a busy server.
        if writer.in_transaction:
            return True
        try:
            writer.execute("BEGIN IMMEDIATE").close()
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return False
            raise
        return True

    # -- the Database API -----------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteConnection]:
        assert self._writer is not None, "database not opened"
        writer = self._writer
        await self._acquire()
        try:
            if self._batch is None:
                self._batch = await self._begin()
            batch = self._batch
        except BaseException:
            self._hand_over_or_free()
            raise
        batch.members += 1
        writer.execute("SAVEPOINT tx").close()
        try:
            yield SqliteConnection(writer)
        except BaseException:
            writer.execute("ROLLBACK TO tx").close()
            writer.execute("RELEASE tx").close()
            batch.members -= 1
            if batch.members == 0:
                # Nobody else's work is in it: end it now rather than commit nothing.
                writer.execute("ROLLBACK").close()
                batch.committed.set_result(None)
                self._batch = None
            self._pass_on()
            raise
        writer.execute("RELEASE tx").close()
        if not self._waiters and self._commit_seconds < INLINE_COMMIT_MAX_S:
            # About to commit on the loop, which ends the batch: first let the tasks that
            # are ready run, so that any that want the writer join this commit. (A
            # transaction that never awaits would otherwise commit alone every time.)
            try:
                await asyncio.sleep(0)
            finally:
                self._pass_on()
        else:
            self._pass_on()
        # shield: a caller cancelled now still has its work committed with the batch.
        await asyncio.shield(batch.committed)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[SqliteConnection]:
        if self._reader is not None:
            yield SqliteConnection(self._reader)
            return
        # In-memory databases are per-connection: read through the writer, as its owner.
        assert self._writer is not None, "database not opened"
        await self._acquire()
        try:
            yield SqliteConnection(self._writer)
        finally:
            self._pass_on()


def _run(conn: sqlite3.Connection, sql: str) -> None:
    conn.execute(sql).close()


def _timed_commit(conn: sqlite3.Connection) -> float:
    """COMMIT; how long it took (mostly the fsync)."""
    start = time.perf_counter()
    _run(conn, "COMMIT")
    return time.perf_counter() - start


def _checkpoint(conn: sqlite3.Connection) -> None:
    # PASSIVE: copy what is committed and not needed by a reader; never wait for anyone.
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        error = future.exception()
        if not isinstance(error, sqlite3.ProgrammingError):  # closed meanwhile: expected
            logger.error("SQLite background job failed: %r", error)


def _begin_waiting(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE that waits (up to BUSY_TIMEOUT_MS) for another process's write."""
    if conn.in_transaction:
        return
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}").close()
    try:
        conn.execute("BEGIN IMMEDIATE").close()
    finally:
        conn.execute("PRAGMA busy_timeout = 0").close()


def _rollback_if_open(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK").close()
