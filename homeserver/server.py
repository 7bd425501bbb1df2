"""The composition root: the only place that builds services and wires adapters to them."""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from client_api.discovery import Discovery
from client_api.registrar import Registrar, create_app
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.ratelimit import RateLimiter
from homeserver.signing_key import load_signing_key
from homeserver.storage.database import create_database
from homeserver.storage.migrations import apply_migrations

logger = logging.getLogger(__name__)


class Homeserver:
    def __init__(self, config: Config, *, clock: Clock | None = None):
        self.config = config
        self.clock = clock or Clock()
        self.signing_key = load_signing_key(config.signing_key_path)
        db = config.database
        self.db = create_database(db.engine, path=db.path, dsn=db.dsn, pool_size=db.pool_size)
        self.rate_limiter = RateLimiter(config.rate_limits, self.clock)
        self._runners: list[web.AppRunner] = []

    async def open(self) -> None:
        """Open the database and apply pending migrations."""
        await self.db.open()
        applied = await apply_migrations(self.db, now_ms=self.clock.time_ms())
        if applied:
            logger.info("applied migrations %s", applied)

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self.db.close()

    def client_app(self) -> web.Application:
        """The client-server API (/_matrix/client/*) and /.well-known/matrix/*."""
        app = create_app(self.config.max_request_body_bytes)
        registrar = Registrar(self.authenticator, self.rate_limiter, self.config.max_request_body_bytes)
        discovery = Discovery(self.config)
        registrar.add_routes(app, discovery.endpoints())
        registrar.add_routes(app, discovery.wellknown_endpoints(), prefix="/.well-known/matrix")
        return app

    async def start(self) -> None:
        """Start the listeners (after open())."""
        client = self.config.client_listener
        await self._listen(self.client_app(), client.bind, client.port, None)
        logger.info("client API listening on http://%s:%d", client.bind, client.port)

    async def _listen(self, app: web.Application, host: str, port: int,
                      ssl_context: ssl.SSLContext | None) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        self._runners.append(runner)


async def run(config: Config) -> None:
    """Run until cancelled (SIGINT/SIGTERM)."""
    hs = Homeserver(config)
    await hs.open()
    try:
        await hs.start()
        await asyncio.Event().wait()
    finally:
        await hs.close()
