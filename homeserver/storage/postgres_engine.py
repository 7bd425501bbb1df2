"""PostgreSQL engine on an asyncpg pool."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from homeserver.storage.database import Connection, Database, DatabaseUnavailable, Row


class PostgresConnection(Connection):
    def __init__(self, conn: asyncpg.Connection):
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        status = await self._conn.execute(sql, *args)
        # asyncpg returns the command tag, e.g. "UPDATE 3" or "INSERT 0 1".
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._conn.fetchrow(sql, *args)  # type: ignore[no-any-return]

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._conn.fetchval(sql, *args)

    async def execute_script(self, script: str) -> None:
        # Without arguments asyncpg uses the simple query protocol: many statements at once.
        await self._conn.execute(script)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        # asyncpg turns a transaction opened inside another into a SAVEPOINT.
        async with self._conn.transaction():
            yield

    async def advisory_lock(self, key: int) -> None:
        """Held until the surrounding transaction ends (serialises e.g. migrations)."""
        await self._conn.execute("SELECT pg_advisory_xact_lock($1)", key)


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
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresConnection(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PostgresConnection]:
        assert self._pool is not None, "database not opened"
        async with self._pool.acquire() as conn:
            yield PostgresConnection(conn)
