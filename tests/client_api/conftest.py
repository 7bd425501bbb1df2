"""An in-process homeserver on the engine under test, and an aiohttp test client for it.

Every response is recorded; a test fails at teardown if any was a 5xx, so bad-input
tests also prove that nothing crashed, or if any JSON body did not match the spec's
documented response schema (tests/spec_schemas.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from homeserver.clock import FakeClock
from homeserver.server import Homeserver
from tests.conftest import make_config
from tests.spec_schemas import validating_middleware

# Real argon2id at minimal cost: endpoint tests check behaviour, not hash hardness.
CHEAP_HASHING = {"password_hash_time_cost": 1, "password_hash_memory_kib": 64,
                 "password_hash_parallelism": 1}
PASSWORD = "correct horse battery"

MakeHs = Callable[..., Homeserver]
Connect = Callable[[Homeserver], Awaitable[TestClient]]


@pytest.fixture
def make_hs(tmp_path: Any, database_settings: dict[str, Any], clock: FakeClock) -> MakeHs:
    """Build (not open) a Homeserver; keyword arguments override config sections."""
    def make(**overrides: Any) -> Homeserver:
        overrides["auth"] = {**CHEAP_HASHING, **overrides.get("auth", {})}
        return Homeserver(make_config(tmp_path, database_settings, **overrides), clock=clock)
    return make


@pytest.fixture
async def connect(aiohttp_client: Any) -> AsyncIterator[Connect]:
    """Open a homeserver and return a test client for its client API (both closed after)."""
    opened: list[Homeserver] = []
    statuses: list[tuple[str, int]] = []
    spec_mismatches: list[str] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        statuses.append((f"{request.method} {request.path}", response.status))

    async def connect(hs: Homeserver) -> TestClient:
        await hs.open()
        opened.append(hs)
        app = hs.client_app()
        app.on_response_prepare.append(record)
        app.middlewares.insert(0, validating_middleware(spec_mismatches))
        return await aiohttp_client(app)  # type: ignore[no-any-return]

    yield connect
    for hs in opened:
        await hs.close()
    server_errors = [s for s in statuses if s[1] >= 500]
    assert not server_errors, f"server errors: {server_errors}"
    assert not spec_mismatches, "responses not matching the spec:\n" + "\n".join(spec_mismatches)


@pytest.fixture
async def client(make_hs: MakeHs, connect: Connect) -> TestClient:
    return await connect(make_hs())


async def error(resp: Any, status: int, errcode: str) -> dict[str, Any]:
    """Assert a Matrix error response and return its body."""
    body = await resp.json()
    assert resp.status == status, body
    assert body["errcode"] == errcode, body
    assert isinstance(body.get("error", ""), str)
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    return body  # type: ignore[no-any-return]


async def register(client: TestClient, username: str, password: str = PASSWORD,
                   **extra: Any) -> dict[str, Any]:
    """Register through the two-step dummy UIAA flow; returns the 200 body."""
    resp = await client.post("/_matrix/client/v3/register",
                             json={"username": username, "password": password, **extra})
    challenge = await resp.json()
    assert resp.status == 401, challenge
    resp = await client.post("/_matrix/client/v3/register", json={
        "username": username, "password": password, **extra,
        "auth": {"type": "m.login.dummy", "session": challenge["session"]}})
    body = await resp.json()
    assert resp.status == 200, body
    return body  # type: ignore[no-any-return]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def password_auth(user: str, password: str = PASSWORD, session: str | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {"type": "m.login.password", "password": password,
                            "identifier": {"type": "m.id.user", "user": user}}
    if session is not None:
        auth["session"] = session
    return auth
