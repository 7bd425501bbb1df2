"""The one Matrix client the side-by-side benchmark drives both servers with.

A thin aiohttp client for the client-server API calls the workloads need: registration
(with the m.login.dummy stage), login, room creation, joins, sends, /sync (initial and
long-poll) and DevNet's WebSocket sync stream. It speaks only spec JSON, so it treats
DevNet and Synapse identically; nothing here knows which server it talks to.

Timing is the caller's business: `time.perf_counter()` around these calls.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

JsonDict = dict[str, Any]

_txn_counter = itertools.count()


class MatrixHTTPError(Exception):
    def __init__(self, status: int, body: Any, method: str, path: str):
        super().__init__(f"{method} {path}: HTTP {status} {str(body)[:300]}")
        self.status = status
        self.body = body


def new_session(limit: int = 0) -> aiohttp.ClientSession:
    """One session (connection pool) per benchmark run; `limit=0`: no connection cap,
    so 300 long-polls and 16 senders each get their own keep-alive connection."""
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, keepalive_timeout=120)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))


class Client:
    """One logged-in device (or, before `register`/`login`, an anonymous client)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str,
                 user_id: str | None = None, access_token: str | None = None):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.user_id = user_id
        self.access_token = access_token
        # How many 429s were absorbed by waiting (should stay 0: limits are raised).
        self.rate_limited = 0

    # -- plumbing ------------------------------------------------------------------

    async def request(self, method: str, path: str, body: JsonDict | None = None,
                      params: dict[str, str] | None = None, *, auth: bool = True,
                      ok: tuple[int, ...] = (200,)) -> tuple[int, JsonDict]:
        url = f"{self.base_url}/_matrix/client{path}"
        headers = {}
        if auth and self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        # orjson on both sides: the client shares the machine with the server under test,
        # so its own CPU per request is kept small (the same for both servers).
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        for _attempt in range(50):
            async with self.session.request(method, url, data=data, params=params,
                                            headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
            try:
                parsed = orjson.loads(raw) if raw else {}
            except ValueError:
                parsed = {"raw": raw[:200].decode("utf-8", "replace")}
            if status == 429:
                self.rate_limited += 1
                await asyncio.sleep(parsed.get("retry_after_ms", 100) / 1000)
                continue
            if status not in ok:
                raise MatrixHTTPError(status, parsed, method, path)
            return status, parsed
        raise MatrixHTTPError(429, "rate limited 50 times in a row", method, path)

    # -- accounts ------------------------------------------------------------------

    async def register(self, username: str, password: str) -> Client:
        """POST /register, completing the m.login.dummy stage; returns a logged-in client."""
        body: JsonDict = {"username": username, "password": password,
                          "initial_device_display_name": "bench"}
        status, reply = await self.request("POST", "/v3/register", body, auth=False, ok=(200, 401))
        if status == 401:
            body["auth"] = {"type": "m.login.dummy", "session": reply.get("session")}
            _, reply = await self.request("POST", "/v3/register", body, auth=False)
        return Client(self.session, self.base_url, reply["user_id"], reply["access_token"])

    async def login(self, user_id: str, password: str, device_id: str | None = None) -> Client:
        body: JsonDict = {"type": "m.login.password", "password": password,
                          "identifier": {"type": "m.id.user", "user": user_id}}
        if device_id:
            body["device_id"] = device_id
        _, reply = await self.request("POST", "/v3/login", body, auth=False)
        return Client(self.session, self.base_url, reply["user_id"], reply["access_token"])

    async def versions(self) -> JsonDict:
        return (await self.request("GET", "/versions", auth=False))[1]

    # -- rooms ---------------------------------------------------------------------

    async def create_room(self, **body: Any) -> str:
        return (await self.request("POST", "/v3/createRoom", body))[1]["room_id"]

    async def join(self, room_id: str) -> None:
        await self.request("POST", f"/v3/join/{quote(room_id, safe='')}", {})

    async def send(self, room_id: str, content: JsonDict, event_type: str = "m.room.message") -> str:
        txn = f"b{time.time_ns()}.{next(_txn_counter)}"
        path = f"/v3/rooms/{quote(room_id, safe='')}/send/{event_type}/{txn}"
        return (await self.request("PUT", path, content))[1]["event_id"]

    # -- sync ----------------------------------------------------------------------

    async def sync(self, since: str | None = None, timeout_ms: int = 0,
                   filter_json: JsonDict | None = None) -> JsonDict:
        params: dict[str, str] = {"timeout": str(timeout_ms)}
        if since:
            params["since"] = since
        if filter_json is not None:
            params["filter"] = json.dumps(filter_json, separators=(",", ":"))
        return (await self.request("GET", "/v3/sync", params=params))[1]

    def ws_url(self, filter_json: JsonDict | None = None, since: str | None = None) -> str:
        """DevNet's WebSocket sync stream (client_api/sync_ws.py)."""
        base = self.base_url.replace("http://", "ws://", 1)
        url = f"{base}/_matrix/client/unstable/im.devnet.ws/sync"
        params = []
        if filter_json is not None:
            params.append("filter=" + quote(json.dumps(filter_json, separators=(",", ":"))))
        if since:
            params.append("since=" + quote(since))
        return url + ("?" + "&".join(params) if params else "")


def timeline_events(sync_body: JsonDict) -> list[tuple[str, JsonDict]]:
    """(room_id, event) for every timeline event of joined rooms in a /sync response."""
    out = []
    for room_id, room in sync_body.get("rooms", {}).get("join", {}).items():
        for ev in room.get("timeline", {}).get("events", ()):
            out.append((room_id, ev))
    return out


def timeline_limited(sync_body: JsonDict) -> bool:
    return any(room.get("timeline", {}).get("limited", False)
               for room in sync_body.get("rooms", {}).get("join", {}).values())


class Poller:
    """A client that long-polls /sync in a loop and reports each timeline event's
    arrival time (perf_counter, taken when the response body has been read and parsed).

    `on_event(room_id, event, t_arrival)` is called for every timeline event; `parked` is
    set each time a long-poll request has been sent and the previous response handled.
    """

    def __init__(self, client: Client, filter_json: JsonDict, on_event: Callable[[str, JsonDict, float], None],
                 timeout_ms: int = 30_000):
        self.client = client
        self.filter_json = filter_json
        self.on_event = on_event
        self.timeout_ms = timeout_ms
        self.since: str | None = None
        self.limited = 0
        self.polls = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None
        self.in_flight = asyncio.Event()

    async def initial(self) -> None:
        body = await self.client.sync(None, 0, self.filter_json)
        self.since = body["next_batch"]

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            self.in_flight.set()
            try:
                body = await self.client.sync(self.since, self.timeout_ms, self.filter_json)
            except (aiohttp.ClientError, MatrixHTTPError):
                self.errors += 1
                await asyncio.sleep(0.1)
                continue
            t = time.perf_counter()
            self.in_flight.clear()
            self.polls += 1
            if timeline_limited(body):
                self.limited += 1
            for room_id, ev in timeline_events(body):
                self.on_event(room_id, ev, t)
            self.since = body["next_batch"]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
