"""PostgreSQL engine on an asyncpg pool.

Why transactions are not asyncpg's `Transaction`: that object sends BEGIN, each
SAVEPOINT and RELEASE, and COMMIT as round trips of their own, and on this kind of
machine every round trip to an idle backend costs 0.1-0.3 ms of wake-ups. A send pays
them on the delivery path: BEGIN, the room's lock, ..., RELEASE of the batch writers'
savepoint, COMMIT. Here BEGIN and RELEASE are owed rather than sent: they go out in
front of the next statement that uses the simple-query protocol (which takes several
statements at once: the room lock, SAVEPOINT, scripts), or before a parameterised
statement as a round trip of its own (no worse than before); and COMMIT makes pending
RELEASEs unnecessary, so they are dropped. The effect on the database is the same
sequence of statements, minus RELEASEs that COMMIT implies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from homeserver.storage.database import Connection, Database, DatabaseUnavailable, Row

# Simple-query statements (no parameters: formatted from ints and our own names only).
ADVISORY_XACT_LOCK = "SELECT pg_advisory_xact_lock({key:d})"
SAVEPOINT = "SAVEPOINT sp{n:d}"
RELEASE = "RELEASE SAVEPOINT sp{n:d}"
ROLLBACK_TO = "ROLLBACK TO SAVEPOINT sp{n:d}"


class PostgresConnection(Connection):
    savepoint_is_a_round_trip = True

    def __init__(self, conn: asyncpg.Connection, *, transaction: bool = False):
        self._conn = conn
        self._transaction = transaction
        # BEGIN not sent yet (a transaction that runs no statement sends nothing at all).
        self._begin_owed = transaction
        # Savepoints left without error whose RELEASE is not sent yet, oldest first.
        self._release_owed: list[int] = []
        self._savepoints = 0

    def _owed(self) -> list[str]:
        """The statements owed before the next one, now counted as sent."""
        owed = ["BEGIN"] if self._begin_owed else []
        owed += [RELEASE.format(n=n) for n in self._release_owed]
        self._begin_owed = False
        self._release_owed = []
        return owed

    async def _pay(self) -> None:
        if self._begin_owed or self._release_owed:
            await self._conn.execute("; ".join(self._owed()))

    async def _simple(self, statement: str) -> None:
        """A statement without parameters, with whatever is owed, in one round trip."""
        await self._conn.execute("; ".join([*self._owed(), statement]))

    async def execute(self, sql: str, *args: Any) -> int:
        await self._pay()
        status = await self._conn.execute(sql, *args)
        # asyncpg returns the command tag, e.g. "UPDATE 3" or "INSERT 0 1".
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        await self._pay()
        await self._conn.executemany(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        await self._pay()
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        await self._pay()
        return await self._conn.fetchrow(sql, *args)  # type: ignore[no-any-return]

    async def fetchval(self, sql: str, *args: Any) -> Any:
        await self._pay()
        return await self._conn.fetchval(sql, *args)

    async def execute_script(self, script: str) -> None:
        # Without arguments asyncpg uses the simple query protocol: many statements at once.
        await self._simple(script)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        if not self._transaction:
            # Outside a transaction (autocommit reads) the block gets one of its own.
            async with self._conn.transaction():
                yield
            return
        self._savepoints += 1
        n = self._savepoints
        await self._simple(SAVEPOINT.format(n=n))
        try:
            yield
        except BaseException:
            # Savepoints made inside this one are gone with it: nothing to release there.
            self._release_owed = [m for m in self._release_owed if m < n]
            await self._simple(ROLLBACK_TO.format(n=n))
            self._release_owed.append(n)
            raise
        self._release_owed.append(n)

    async def advisory_lock(self, key: int) -> None:
        """Held until the surrounding transaction ends (serialises e.g. migrations, and a
        room's writers across processes). Sent with the owed BEGIN: one round trip."""
        await self._simple(ADVISORY_XACT_LOCK.format(key=int(key)))

    async def _end(self, commit: bool) -> None:
        if self._begin_owed:
            return  # nothing was sent: there is no transaction to end
        self._release_owed = []  # COMMIT and ROLLBACK end every savepoint
        await self._conn.execute("COMMIT" if commit else "ROLLBACK")


class _NoSessionResetConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection released without asyncpg's reset query.

    That query (RESET ALL, UNLISTEN *, advisory unlocks, CLOSE ALL...) is one more round
    trip on every release, i.e. per read, doubling a woken /sync's statements. We keep
    no session state to reset: no SET, no LISTEN, no cursors across uses, and only
    transaction-scoped advisory locks. asyncpg still rolls back an open transaction."""

    def get_reset_query(self) -> str:
        return ""


class PostgresDatabase(Database):
    engine = "postgres"

    def __init__(self, dsn: str, pool_size: int = 10):
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size,
                                                   connection_class=_NoSessionResetConnection)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {e}") from e

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConnection]:
        assert self._pool is not None, "database not opened"
        async with self._pool.acquire() as raw:
            conn = PostgresConnection(raw, transaction=True)
            try:
                yield conn
            except BaseException:
                try:
                    await conn._end(commit=False)
                except Exception:  # noqa: BLE001 (the block's own error is the one to raise)
                    # A broken connection: the pool's release rolls back or discards it.
                    pass
                raise
            await conn._end(commit=True)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PostgresConnection]:
        assert self._pool is not None, "database not opened"
        async with self._pool.acquire() as conn:
            yield PostgresConnection(conn)
