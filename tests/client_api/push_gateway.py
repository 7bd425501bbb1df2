"""A real push gateway for tests: an aiohttp server on a loopback port that records the
notifications it receives and can go down, fail, or reject pushkeys on demand."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.push.pushers import NOTIFY_PATH


class FakeGateway:
    """Real HTTP on loopback; only its answers are scripted."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.reject: set[str] = set()
        self.status = 200
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{NOTIFY_PATH}"

    async def _notify(self, request: web.Request) -> web.Response:
        notification = (await request.json())["notification"]
        if self.status != 200:
            return web.json_response({"errcode": "M_UNKNOWN"}, status=self.status)
        self.received.append(notification)
        rejected = [d["pushkey"] for d in notification["devices"] if d["pushkey"] in self.reject]
        return web.json_response({"rejected": rejected})

    async def up(self) -> None:
        """Listen, on the same port as before when it was up already once."""
        app = web.Application()
        app.router.add_post(NOTIFY_PATH, self._notify)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def down(self) -> None:
        """Stop listening: connections are refused until `up` again."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def for_pushkey(self, pushkey: str) -> list[dict[str, Any]]:
        return [n for n in self.received if n["devices"][0]["pushkey"] == pushkey]
