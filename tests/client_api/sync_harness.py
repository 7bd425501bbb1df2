"""A real in-process client API serving only the sync building blocks, with a fake token
check, so their endpoints can be tested before the full homeserver wires them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from client_api.endpoint import Endpoint
from client_api.registrar import Registrar, create_app
from homeserver.accounts.requester import Requester
from homeserver.clock import FakeClock
from homeserver.config import RateLimit
from homeserver.errors import UnknownToken
from homeserver.ratelimit import RateLimiter


class FakeAuthenticator:
    """Access token "tok-<localpart>" is @<localpart>:x."""

    async def authenticate(self, access_token: str) -> Requester:
        if not access_token.startswith("tok-"):
            raise UnknownToken()
        return Requester(user_id=f"@{access_token[4:]}:x", device_id="DEV", token_id=1)


def app_for(*endpoint_lists: list[Endpoint]) -> web.Application:
    app = create_app(64 * 1024)
    limiter = RateLimiter({"default": RateLimit(per_second=1000, burst=1000)}, FakeClock())
    registrar = Registrar(FakeAuthenticator(), limiter, 64 * 1024)
    for endpoints in endpoint_lists:
        registrar.add_routes(app, endpoints)
    return app


def auth(localpart: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer tok-{localpart}"}
