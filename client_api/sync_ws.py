"""The WebSocket sync stream, a DevNet extension of /sync.

    GET /_matrix/client/unstable/im.devnet.ws/sync?since=...&filter=...   (WebSocket upgrade)

Authentication, through the same Authenticator as every endpoint, one of:
  - `Authorization: Bearer <token>` on the upgrade request;
  - the `access_token` query parameter (browsers cannot set headers on a WebSocket);
  - with neither, a first text message `{"access_token": "<token>"}` within
    AUTH_TIMEOUT_S of connecting.
A bad token on the upgrade request is the usual 401 JSON error; later, an error object.

Options are /sync's query parameters: `since`, `filter` (ID or inline JSON),
`full_state`, `set_presence`, `use_state_after`; `timeout` is ignored.

Messages from the server are text, each one JSON object exactly as an incremental
GET /sync with those parameters returns it (`next_batch` included), computed by the
same SyncService. Without `since` the first message is the initial sync; afterwards a
message is sent whenever there is something new, and an idle connection carries only
WebSocket pings. Each message covers the range right after the previous one, so a
client resumes after a reconnect, without gaps or duplicates, by passing the
`next_batch` of the last message it processed as `since`.

To-device messages (room keys) are deleted only once the client confirms it processed
them: by reconnecting with a `since` past them, or by sending `{"ack": "<next_batch>"}`
on the open socket. A message the server merely sent is kept, so a connection that drops
mid-flight loses no keys. Clients should ack as they go: a device's inbox is bounded.

Errors: a Matrix error object (`errcode`, `error`), then the server closes the socket
with code 4400 (bad request) or 4401 (authentication failed, e.g. logged out).
Other messages from the client after authentication are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping

import attrs
from aiohttp import WSMsgType, web

from client_api.registrar import Authenticator, access_token_from
from client_api.sync import parse_sync_params
from homeserver.accounts.requester import Requester
from homeserver.errors import MatrixError, MissingToken
from homeserver.sync.filter_service import FilterService
from homeserver.sync.sync_result import SyncRequest
from homeserver.sync.sync_service import SyncService
from homeserver.sync.tokens import SyncToken

logger = logging.getLogger(__name__)

PATH = "/unstable/im.devnet.ws/sync"
AUTH_TIMEOUT_S = 10.0
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401


class SyncStream:
    def __init__(self, sync: SyncService, filters: FilterService, authenticator: Authenticator,
                 *, wait_ms: int = 30_000, heartbeat_s: float = 30.0):
        self._sync = sync
        self._filters = filters
        self._auth = authenticator
        # How long one sync waits before the stream re-checks the access token.
        self._wait_ms = wait_ms
        self._heartbeat_s = heartbeat_s
        # Open streams, closed by close_all() when the server shuts down.
        self._open: set[web.WebSocketResponse] = set()

    async def close_all(self) -> None:
        """Close every stream with 1001 (going away): clients reconnect elsewhere/later."""
        for ws in list(self._open):
            with contextlib.suppress(ConnectionResetError):
                await ws.close(code=1001, message=b"server shutting down")

    async def handle(self, http: web.Request) -> web.StreamResponse:
        """GET /_matrix/client/unstable/im.devnet.ws/sync"""
        token = access_token_from(http)
        requester = await self._auth.authenticate(token) if token is not None else None
        query = dict(http.query)
        ws = web.WebSocketResponse(heartbeat=self._heartbeat_s)
        await ws.prepare(http)
        self._open.add(ws)
        try:
            if token is None or requester is None:
                token = await self._first_message_token(ws)
                requester = await self._auth.authenticate(token)
            request = await parse_sync_params(query, requester, self._filters,
                                              timeout_ms=self._wait_ms)
            await self._stream(ws, token, request)
        except MatrixError as e:
            code = CLOSE_UNAUTHORIZED if e.status == 401 else CLOSE_BAD_REQUEST
            await self._close_with(ws, e.to_json(), code)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            logger.exception("WebSocket sync stream failed")
            await self._close_with(ws, {"errcode": "M_UNKNOWN", "error": "Internal server error"},
                                   1011)
        finally:
            self._open.discard(ws)
        return ws

    async def _first_message_token(self, ws: web.WebSocketResponse) -> str:
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_S):
                msg = await ws.receive()
        except TimeoutError:
            raise MissingToken("Missing access token") from None
        if msg.type != WSMsgType.TEXT:
            raise MissingToken("Missing access token")
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token:
            raise MissingToken("Missing access token")
        return token

    async def _stream(self, ws: web.WebSocketResponse, token: str, request: SyncRequest) -> None:
        closed = asyncio.ensure_future(self._read_acks(ws, request))
        try:
            while not ws.closed:
                syncing = asyncio.ensure_future(self._sync.sync(request))
                await asyncio.wait({syncing, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not syncing.done():
                    syncing.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await syncing
                    return
                result = syncing.result()
                if request.since is None or not result.is_empty():
                    await ws.send_str(json.dumps(result.to_json(), ensure_ascii=False,
                                                 separators=(",", ":")))
                # Our own next_batch is not an acknowledgement: the client may not have
                # processed the message yet (see the module docstring).
                request = attrs.evolve(request, since=result.next_batch, full_state=False,
                                       acknowledges_since=False)
                # A device that logged out stops receiving at once, not at reconnect.
                requester: Requester = await self._auth.authenticate(token)
                if requester.user_id != request.user_id:
                    return
        finally:
            closed.cancel()

    async def _read_acks(self, ws: web.WebSocketResponse, request: SyncRequest) -> None:
        """Apply `{"ack": token}` messages; returns when the client goes away."""
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                body = json.loads(msg.data)
                ack = body.get("ack") if isinstance(body, Mapping) else None
                if isinstance(ack, str):
                    await self._sync.acknowledge(request, SyncToken.parse(ack))
            except (ValueError, MatrixError) as e:
                # A malformed ack is the client's problem; the stream goes on.
                logger.info("ignoring bad WebSocket ack from %s: %s", request.user_id, e)

    @staticmethod
    async def _close_with(ws: web.WebSocketResponse, body: object, code: int) -> None:
        if ws.closed:
            return
        with contextlib.suppress(ConnectionResetError):
            await ws.send_str(json.dumps(body))
            await ws.close(code=code)
