"""Shared fixtures: both database engines, an in-process homeserver and its client API.

PostgreSQL tests need DEVNET_TEST_PG_DSN (e.g. postgresql://devnet:devnet@127.0.0.1/devnet_test).
Each test gets its own PostgreSQL schema, dropped afterwards. Without the DSN they skip,
unless DEVNET_REQUIRE_PG=1 (set by CI), where a missing PostgreSQL is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from homeserver.clock import FakeClock
from homeserver.config import Config
from homeserver.signing_key import generate_signing_key_file
from homeserver.storage.database import Database, create_database
from homeserver.storage.migrations import apply_migrations

PG_DSN = os.environ.get("DEVNET_TEST_PG_DSN")
REQUIRE_PG = os.environ.get("DEVNET_REQUIRE_PG") == "1"


def _pg_or_skip() -> str:
    if PG_DSN:
        return PG_DSN
    if REQUIRE_PG:
        pytest.fail("PostgreSQL is required (DEVNET_REQUIRE_PG=1) but DEVNET_TEST_PG_DSN is not set")
    pytest.skip("PostgreSQL not configured (set DEVNET_TEST_PG_DSN)")


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def database_settings(engine: str, tmp_path: Any) -> AsyncIterator[dict[str, Any]]:
    """Config `database` section for a fresh, empty database of the engine under test."""
    if engine == "sqlite":
        yield {"engine": "sqlite", "path": str(tmp_path / "test.db")}
        return
    import asyncpg

    dsn = _pg_or_skip()
    schema = "t_" + secrets.token_hex(6)
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in dsn else "?"
    try:
        # asyncpg passes unknown DSN query parameters on as server settings.
        yield {"engine": "postgres", "dsn": f"{dsn}{sep}search_path={schema}"}
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@pytest.fixture
async def database(database_settings: dict[str, Any]) -> AsyncIterator[Database]:
    """An opened database with every migration applied."""
    db = create_database(database_settings["engine"], path=database_settings.get("path"),
                         dsn=database_settings.get("dsn"))
    await db.open()
    await apply_migrations(db, now_ms=0)
    try:
        yield db
    finally:
        await db.close()


def make_config(tmp_path: Any, database_settings: dict[str, Any], **overrides: Any) -> Config:
    """A test config: open registration, generous rate limits unless overridden."""
    key_path = tmp_path / "test.signing.key"
    if not key_path.exists():
        generate_signing_key_file(str(key_path))
    data: dict[str, Any] = {
        "server_name": "test.local",
        "signing_key_path": str(key_path),
        "database": database_settings,
        "registration": {"policy": "open"},
        "listeners": {"federation": {"enabled": False}},
        "rate_limits": {name: {"per_second": 1000, "burst": 1000}
                        for name in ("login", "register", "register_available", "password_change",
                                     "message", "default")},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return Config.from_dict(data, str(tmp_path))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
