"""Queries over a list of IDs, the one place where the two engines need different SQL.

PostgreSQL takes the list as an array (`= ANY($1::text[])`); SQLite has no arrays, so
the list travels as JSON text and `json_each` unpacks it. Either way the SQL stays a
constant and the values stay parameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from homeserver.storage.database import Connection, Row


def is_postgres(conn: Connection) -> bool:
    from homeserver.storage.postgres_engine import PostgresConnection

    return isinstance(conn, PostgresConnection)


async def fetch_for_ids(conn: Connection, pg_sql: str, sqlite_sql: str,
                        ids: Sequence[str], *args: Any) -> list[Row]:
    """Run the engine's variant of a query whose `$1` is the list of IDs."""
    if not ids:
        return []
    if is_postgres(conn):
        return await conn.fetch(pg_sql, list(ids), *args)
    return await conn.fetch(sqlite_sql, json.dumps(list(ids)), *args)
