"""Queries over a list of IDs, the one place where the two engines need different SQL.

PostgreSQL takes the list as an array (`= ANY($1::text[])`); SQLite has no arrays, so
the list travels as JSON text and `json_each` unpacks it. Either way the SQL stays a
constant and the values stay parameters.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from homeserver.storage.database import Connection, Row


def is_postgres(conn: Connection) -> bool:
    # Not an import: on SQLite it would load asyncpg (tens of ms) in the middle of the
    # first request that asks. A PostgresConnection exists only once its module is loaded.
    engine = sys.modules.get("homeserver.storage.postgres_engine")
    return engine is not None and isinstance(conn, engine.PostgresConnection)


async def fetch_for_ids(conn: Connection, pg_sql: str, sqlite_sql: str,
                        ids: Sequence[str], *args: Any) -> list[Row]:
    """Run the engine's variant of a query whose `$1` is the list of IDs."""
    if not ids:
        return []
    if is_postgres(conn):
        return await conn.fetch(pg_sql, list(ids), *args)
    return await conn.fetch(sqlite_sql, json_id_list(ids), *args)


def json_id_list(ids: Sequence[str]) -> str:
    """The IDs as a JSON array for `json_each`.

    orjson writes non-ASCII as UTF-8 where `json.dumps` writes `\\uXXXX` escapes; SQLite
    reads both as the same text. What orjson refuses (lone surrogates) keeps the escapes.
    """
    try:
        return orjson.dumps(list(ids)).decode()
    except orjson.JSONEncodeError:
        return json.dumps(list(ids))
