"""The aiohttp adapter for the push gateway port (homeserver/push/gateway.py), wired by
server.py: the only place push touches aiohttp."""

from __future__ import annotations

from typing import Any

import aiohttp

from homeserver.outbound_http import PublicOnlyResolver
from homeserver.push.gateway import GatewayResponse, GatewayUnreachable

TIMEOUT_S = 30


class AiohttpGatewayClient:
    def __init__(self, *, allow_private_addresses: bool = False) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._allow_private = allow_private_addresses

    async def post_json(self, url: str, body: dict[str, Any]) -> GatewayResponse:
        return await self._post(url, json=body)

    async def post_bytes(self, url: str, body: bytes,
                         headers: dict[str, str]) -> GatewayResponse:
        return await self._post(url, data=body, headers=headers)

    async def _post(self, url: str, **kwargs: Any) -> GatewayResponse:
        if self._session is None:
            # Created lazily: a session must be made inside the running loop.
            connector = None if self._allow_private else aiohttp.TCPConnector(
                resolver=PublicOnlyResolver())
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        try:
            # No redirects: the address was checked when the pusher was set, and a
            # redirect could point anywhere (a private address included).
            async with self._session.post(url, allow_redirects=False, **kwargs) as resp:
                try:
                    payload = await resp.json(content_type=None)
                except ValueError:
                    payload = None
                return GatewayResponse(resp.status, payload)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise GatewayUnreachable(str(e) or type(e).__name__) from e

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
