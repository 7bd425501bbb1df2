"""A /sync long-poll whose client goes away is cancelled on the server at once, not
left parked until its timeout (homeserver/server.py, `handler_cancellation`)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp

from homeserver.server import Homeserver
from tests.conftest import make_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _parked(hs: Homeserver, user_id: str) -> int:
    return sum(1 for w in hs.notifier._user_waiters.get(user_id, []) if not w.future.done())


async def _until(predicate: Any) -> None:
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 (bounded by the timeout above)
            await asyncio.sleep(0.01)


async def test_a_long_poll_is_released_when_its_client_disconnects(
        tmp_path: Path, database_settings: dict[str, Any]) -> None:
    port = _free_port()
    config = make_config(tmp_path, database_settings,
                         listeners={"client": {"bind": "127.0.0.1", "port": port}})
    hs = Homeserver(config)
    await hs.open()
    try:
        await hs.start()
        base = f"http://127.0.0.1:{port}/_matrix/client/v3"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/register", json={
                    "username": "alice", "password": "pw-alice-123456",
                    "auth": {"type": "m.login.dummy"}}) as r:
                reply = await r.json()
            headers = {"Authorization": f"Bearer {reply['access_token']}"}
            async with http.get(f"{base}/sync", headers=headers) as r:
                since = (await r.json())["next_batch"]
            user_id = reply["user_id"]
            poll = asyncio.create_task(http.get(
                f"{base}/sync", params={"since": since, "timeout": "60000"}, headers=headers))
            await _until(lambda: _parked(hs, user_id) == 1)
            # The client gives up: its connection closes mid-request.
            poll.cancel()
            await asyncio.gather(poll, return_exceptions=True)
        # Long before the 60 s timeout, the server has dropped the parked request.
        await _until(lambda: _parked(hs, user_id) == 0)
    finally:
        await hs.close()
