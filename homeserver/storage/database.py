"""The Database API shared by both engines.

SQL is written once with asyncpg's `$1, $2` placeholders; the SQLite engine rewrites
them. Rows support both `row["col"]` and `row[0]`. Store functions take a `Connection`
so several of them can share one transaction:

    async with db.transaction() as conn:
        await users.create(conn, ...)
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, Protocol


class DatabaseUnavailable(Exception):
    """The database cannot be opened (server unreachable, bad credentials, unwritable file).

    Raised by `Database.open()` so callers can report one line without knowing engines."""


class Row(Protocol):
    def __getitem__(self, key: int | str) -> Any: ...
    def keys(self) -> Any: ...


class Connection(abc.ABC):
    """One connection, inside or outside a transaction."""

    # Whether entering `savepoint()` costs a round trip to the database of its own (on
    # PostgreSQL) rather than a statement run in this process (SQLite).
    savepoint_is_a_round_trip = False

    @abc.abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed."""

    @abc.abstractmethod
    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    @abc.abstractmethod
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    @abc.abstractmethod
    async def execute_script(self, script: str) -> None:
        """Run several `;`-separated statements without parameters (migrations)."""

    @abc.abstractmethod
    def savepoint(self) -> Any:
        """`async with conn.savepoint():` inside a transaction — on error, only the work
        done inside the block is rolled back and the error propagates; the transaction
        stays usable (e.g. one failed event in a batch of several)."""


class Database(abc.ABC):
    """Engine-independent entry point. Single statements outside a transaction run on a
    pooled/reader connection; anything that writes more than one row uses transaction()."""

    engine: str

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def transaction(self) -> Any:
        """`async with db.transaction() as conn:` — commits on exit, rolls back on error."""

    @abc.abstractmethod
    def connection(self) -> Any:
        """`async with db.connection() as conn:` — a connection for reads (autocommit)."""

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.transaction() as conn:
            return await conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self.connection() as conn:
            return await conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self.connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(sql, *args)


def create_database(engine: str, *, path: str | None = None, dsn: str | None = None,
                    pool_size: int = 10) -> Database:
    """Build the engine named in the config (not yet opened)."""
    if engine == "sqlite":
        from homeserver.storage.sqlite_engine import SqliteDatabase

        return SqliteDatabase(path or ":memory:")
    if engine == "postgres":
        from homeserver.storage.postgres_engine import PostgresDatabase

        assert dsn is not None
        return PostgresDatabase(dsn, pool_size=pool_size)
    raise ValueError(f"unknown database engine {engine!r}")
