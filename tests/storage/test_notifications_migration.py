"""Migration 0015 re-keys `notifications` by (user, stream position) without losing rows."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.storage.database import Database, create_database
from homeserver.storage.migrations import load_migrations
from homeserver.storage.notifications import INSERT_NOTIFICATIONS

ROWS = [
    ("@a:hs", "!r:hs", "$e1", "main", 1, '["notify"]', 0, 10),
    ("@a:hs", "!r:hs", "$e2", "$e1", 2, '["notify"]', 1, 11),
    ("@b:hs", "!r:hs", "$e2", "$e1", 2, '["notify"]', 0, 11),
]
OLD_INSERT = """
INSERT INTO notifications (user_id, room_id, event_id, thread_id, stream_ordering, actions,
                           highlight, ts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""


@pytest.fixture
async def blank(database_settings: dict[str, Any]) -> Any:
    db = create_database(database_settings["engine"], path=database_settings.get("path"),
                         dsn=database_settings.get("dsn"))
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def _apply(db: Database, versions: range) -> None:
    for m in load_migrations(db.engine):
        if m.version in versions:
            async with db.transaction() as conn:
                await conn.execute_script(m.sql)


async def test_rows_survive_and_the_new_key_deduplicates(blank: Database) -> None:
    await _apply(blank, range(1, 15))
    async with blank.transaction() as conn:
        await conn.executemany(OLD_INSERT, ROWS)
    await _apply(blank, range(15, 16))
    rows = await blank.fetch("SELECT user_id, room_id, event_id, thread_id, stream_ordering, "
                             "actions, highlight, ts FROM notifications "
                             "ORDER BY user_id, stream_ordering")
    assert [tuple(r) for r in rows] == ROWS
    # The insert the evaluator uses: the same (user, position) again is a no-op, a new
    # position for the same user is a new row.
    async with blank.transaction() as conn:
        await conn.executemany(INSERT_NOTIFICATIONS, [
            ("@a:hs", "!r:hs", "$e2", "$e1", 2, '["dont_notify"]', 0, 99),
            ("@a:hs", "!r:hs", "$e3", "main", 3, '["notify"]', 0, 12)])
    got = await blank.fetch("SELECT event_id, actions FROM notifications WHERE user_id = $1 "
                            "ORDER BY stream_ordering", "@a:hs")
    assert [(r["event_id"], r["actions"]) for r in got] == [
        ("$e1", '["notify"]'), ("$e2", '["notify"]'), ("$e3", '["notify"]')]
