"""Applies `schema/NNNN_description.sql` migrations in order, each in its own transaction.

A migration may have engine variants `NNNN_description.sqlite.sql` and
`NNNN_description.postgres.sql`; the variant for the running engine replaces the plain
file. Applied versions are recorded in `schema_version`; an applied file is never edited.
"""

from __future__ import annotations

import importlib.resources
import logging
import re

import attrs

from homeserver.storage.database import Database

logger = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgres))?\.sql$")
# Any constant works; it only has to be the same for every worker sharing the database.
_MIGRATION_LOCK_KEY = 0x6465766E6574  # "devnet"

CREATE_SCHEMA_VERSION = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_ts BIGINT NOT NULL
)
"""
SELECT_APPLIED = "SELECT version FROM schema_version"
INSERT_APPLIED = "INSERT INTO schema_version (version, name, applied_ts) VALUES ($1, $2, $3)"


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(engine: str, package: str = "schema") -> list[Migration]:
    """The migrations for `engine`, ordered by version."""
    plain: dict[int, tuple[str, str]] = {}
    variant: dict[int, tuple[str, str]] = {}
    for entry in importlib.resources.files(package).iterdir():
        m = _FILE.match(entry.name)
        if not m:
            continue
        version, name, dialect = int(m.group(1)), m.group(2), m.group(3)
        text = entry.read_text(encoding="utf-8")
        if dialect is None:
            plain[version] = (name, text)
        elif dialect == engine:
            variant[version] = (name, text)
    chosen = {**plain, **variant}
    return [Migration(v, chosen[v][0], chosen[v][1]) for v in sorted(chosen)]


async def apply_migrations(db: Database, *, now_ms: int, package: str = "schema") -> list[int]:
    """Apply pending migrations; returns the versions applied now."""
    async with db.transaction() as conn:
        await conn.execute(CREATE_SCHEMA_VERSION)
    applied_now: list[int] = []
    for migration in load_migrations(db.engine, package):
        async with db.transaction() as conn:
            if db.engine == "postgres":
                # Several workers may start at once: one applies, the others wait and skip.
                await conn.advisory_lock(_MIGRATION_LOCK_KEY)  # type: ignore[attr-defined]
            done = {r[0] for r in await conn.fetch(SELECT_APPLIED)}
            if migration.version in done:
                continue
            logger.info("applying migration %04d_%s", migration.version, migration.name)
            await conn.execute_script(migration.sql)
            await conn.execute(INSERT_APPLIED, migration.version, migration.name, now_ms)
            applied_now.append(migration.version)
    return applied_now
