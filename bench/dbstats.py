"""Rows and bytes per table, read straight from a server's database (either server).

SQLite: exact row counts, and bytes from the `dbstat` virtual table (pages of the
table's b-tree and of its indexes; WAL content included). PostgreSQL: exact row counts
and `pg_total_relation_size` (heap, indexes and TOAST). Bytes are on-disk and so
page-granular: divide a delta by a window of many changes, not by one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

Snapshot = dict[str, tuple[int, int]]  # table -> (rows, bytes)

# The tables that hold room state, per server (the "state rows" of workload 6).
STATE_TABLES = {
    "devnet": ("state_snapshots", "state_snapshot_entries", "event_state", "current_state"),
    "synapse": ("state_groups", "state_groups_state", "state_group_edges",
                "event_to_state_groups", "current_state_events"),
}


def sqlite_snapshot(path: Path) -> Snapshot:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        tables = {name: tbl for name, tbl, kind in conn.execute(
            "SELECT name, tbl_name, type FROM sqlite_master WHERE type IN ('table', 'index')")}
        real_tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'")]
        sizes: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            owner = tables.get(name, name)
            sizes[owner] = sizes.get(owner, 0) + int(size or 0)
        out: Snapshot = {}
        for t in real_tables:
            rows = conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]  # noqa: S608 (names from the catalog)
            out[t] = (int(rows), sizes.get(t, 0))
        return out
    finally:
        conn.close()


async def pg_snapshot(dsn: str) -> Snapshot:
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT schemaname, relname, pg_total_relation_size(relid) AS bytes "
            "FROM pg_stat_user_tables")
        out: Snapshot = {}
        for r in tables:
            rows = await conn.fetchval(f'SELECT COUNT(*) FROM "{r["schemaname"]}"."{r["relname"]}"')
            out[r["relname"]] = (int(rows), int(r["bytes"]))
        return out
    finally:
        await conn.close()


def diff(before: Snapshot, after: Snapshot) -> Snapshot:
    out: Snapshot = {}
    for t in set(before) | set(after):
        r0, b0 = before.get(t, (0, 0))
        r1, b1 = after.get(t, (0, 0))
        if r1 != r0 or b1 != b0:
            out[t] = (r1 - r0, b1 - b0)
    return out
