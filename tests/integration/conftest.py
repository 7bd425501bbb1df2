"""Real clients against an in-process DevNet listening on a real loopback TCP port.

`servers.start()` opens a Homeserver on the engine under test's database, serves its
client API with aiohttp's AppRunner on 127.0.0.1 (an OS-chosen port) and returns the
base URL; `servers.stop()` shuts it down, so a test can start a new Homeserver on the
same database. Every response is recorded; a test fails at teardown if any was a 5xx or
if any JSON body did not match the spec's documented response schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from nio import AsyncClient, AsyncClientConfig

from homeserver.config import Config
from homeserver.server import Homeserver
from tests.conftest import make_config
from tests.spec_schemas import validating_middleware

# Real argon2id at minimal cost: these tests check protocol behaviour, not hash hardness.
CHEAP_HASHING = {"password_hash_time_cost": 1, "password_hash_memory_kib": 64,
                 "password_hash_parallelism": 1}


class Servers:
    """At most one running DevNet at a time, always on the same database."""

    def __init__(self, config: Config):
        self._config = config
        self._running: tuple[Homeserver, web.AppRunner] | None = None
        self.statuses: list[tuple[str, int]] = []
        self.spec_mismatches: list[str] = []

    async def start(self) -> str:
        assert self._running is None, "stop() the running server first"
        hs = Homeserver(self._config)
        await hs.open()
        app = hs.client_app()
        app.on_response_prepare.append(self._record)
        app.middlewares.insert(0, validating_middleware(self.spec_mismatches))
        runner = web.AppRunner(app, access_log=None)
        self._running = (hs, runner)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._running is None:
            return
        hs, runner = self._running
        self._running = None
        # As Homeserver.close() does: a client that went away mid-long-poll (a js-sdk
        # process that exited) would otherwise hold the shutdown for the poll's timeout.
        hs.notifier.close()
        await runner.cleanup()
        await hs.close()

    async def _record(self, request: web.Request, response: web.StreamResponse) -> None:
        self.statuses.append((f"{request.method} {request.path}", response.status))


MakeServers = Callable[..., Servers]
MakeClient = Callable[..., AsyncClient]


@pytest.fixture
async def make_servers(tmp_path: Any,
                       database_settings: dict[str, Any]) -> AsyncIterator[MakeServers]:
    """Servers for a config whose sections are overridden by keyword arguments (as in
    make_config); one database for all. Stopped, and checked for 5xx, at teardown."""
    made: list[Servers] = []

    def make(**overrides: Any) -> Servers:
        overrides["auth"] = {**CHEAP_HASHING, **overrides.get("auth", {})}
        made.append(Servers(make_config(tmp_path, database_settings, **overrides)))
        return made[-1]

    yield make
    for servers in made:
        await servers.stop()
    server_errors = [s for servers in made for s in servers.statuses if s[1] >= 500]
    assert not server_errors, f"server errors: {server_errors}"
    mismatches = [m for servers in made for m in servers.spec_mismatches]
    assert not mismatches, "responses not matching the spec:\n" + "\n".join(mismatches)


@pytest.fixture
def servers(make_servers: MakeServers) -> Servers:
    """Servers with the default test config (open registration)."""
    return make_servers()


@pytest.fixture
async def nio_client() -> AsyncIterator[MakeClient]:
    """Make nio AsyncClients (closed at teardown). No retries: a 429 or a dropped
    connection is returned or raised at once instead of being retried with sleeps."""
    clients: list[AsyncClient] = []

    def make(base_url: str, user: str = "") -> AsyncClient:
        config = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=30,
                                   encryption_enabled=False)
        client = AsyncClient(base_url, user, config=config)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
