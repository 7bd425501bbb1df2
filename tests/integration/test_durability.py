"""Issue 4 acceptance: "Kill the server (SIGKILL) while several clients send; after
restart every event that was answered 200 is in the timeline, once."

ARCHITECTURE.md: "An event answered with 200 to a client is durable". The server is a
real `python -m homeserver run` subprocess (a SIGKILL cannot be simulated in-process):
several clients send concurrently, the server is killed the moment a fixed number of
sends have been answered while the rest are still in flight, and a new server process is
started on the same database. Every message body names its sender and transaction ID,
so a duplicate created by a retry shows up as the same body twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs
import pytest
import yaml

from tests.cli.conftest import REPO, edit_config, free_port, run_cli

SERVER_NAME = "durability.test"
PASSWORD = "correct horse battery"
USERS = ("alice", "bob", "carol", "dave")
# Concurrent senders per user, each with its own stream of transaction IDs.
SENDERS_PER_USER = 2
# The server is killed once this many sends have been answered 200.
KILL_AFTER = 150
# A sender stops after this many sends even if the kill never comes.
MAX_SENDS_PER_SENDER = 500
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
MAX_PAGES = 50
V3 = "/_matrix/client/v3"
FAST = {name: {"per_second": 10000, "burst": 10000}
        for name in ("login", "register", "register_available", "password_change", "message",
                     "default")}
CHEAP_HASHING = {"password_hash_time_cost": 1, "password_hash_memory_kib": 64,
                 "password_hash_parallelism": 1}


class ServerProcess:
    """`python -m homeserver run -c CONFIG` as a subprocess, logging to a file per start."""

    def __init__(self, config: Path, port: int):
        self.config = config
        self.url = f"http://127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.logs: list[Path] = []

    async def start(self) -> None:
        assert self.proc is None, "the previous server is still running"
        log = self.config.parent / f"server-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "homeserver", "run", "-c", str(self.config),
                env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=str(REPO),
                start_new_session=True, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=stderr)
        await self._wait_until_serving()

    async def _wait_until_serving(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    async with session.get(f"{self.url}/_matrix/client/versions") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                # Polling for readiness: the process gives no other signal.
                await asyncio.sleep(0.1)
        pytest.fail(f"server did not answer within {START_TIMEOUT_S}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, open transactions die with the process."""
        assert self.proc is not None and self.proc.returncode is None
        self.proc.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        assert self.proc is not None
        async with asyncio.timeout(STOP_TIMEOUT_S):
            status = await self.proc.wait()
        self.proc = None
        return status

    async def stop(self) -> int:
        """SIGTERM and wait; the exit status."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait()

    def log(self, index: int = -1) -> str:
        return self.logs[index].read_text(errors="replace") if self.logs else ""


@pytest.fixture
async def server(tmp_path: Path, database_settings: dict[str, Any]) -> AsyncIterator[ServerProcess]:
    """A generated config (open registration, no federation listener, high rate limits)
    on the engine under test's fresh database. Not started."""
    config = tmp_path / "homeserver.yaml"
    status, _, err = await run_cli("generate-config", "--server-name", SERVER_NAME,
                                   "--config", str(config), "--registration", "open")
    assert status == 0, err
    port = free_port()
    data = yaml.safe_load(config.read_text())
    edit_config(config, database=database_settings, rate_limits=FAST, auth=CHEAP_HASHING,
                listeners={"client": {**data["listeners"]["client"], "port": port},
                           "federation": {"enabled": False}})
    hs = ServerProcess(config, port)
    try:
        yield hs
    finally:
        if hs.proc is not None:
            if hs.proc.returncode is None:
                hs.proc.kill()
            await hs.wait()


@attrs.define
class User:
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register(session: aiohttp.ClientSession, base: str, name: str) -> User:
    """The two-step dummy UIAA flow, with a fixed device (transaction IDs are per device)."""
    body: dict[str, Any] = {"username": name, "password": PASSWORD, "device_id": f"{name.upper()}DEV"}
    async with session.post(f"{base}{V3}/register", json=body) as r:
        challenge = await r.json()
        assert r.status == 401, challenge
    body["auth"] = {"type": "m.login.dummy", "session": challenge["session"]}
    async with session.post(f"{base}{V3}/register", json=body) as r:
        reply = await r.json()
        assert r.status == 200, reply
    return User(reply["user_id"], reply["access_token"])


async def call(session: aiohttp.ClientSession, method: str, url: str, user: User,
               body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with session.request(method, url, headers=user.headers, json=body) as r:
        reply = await r.json()
        assert r.status == 200, (method, url, r.status, reply)
        return reply  # type: ignore[no-any-return]


def send_url(base: str, room_id: str, txn_id: str) -> str:
    return f"{base}{V3}/rooms/{quote(room_id)}/send/m.room.message/{txn_id}"


def message(user: User, txn_id: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": f"{user.user_id} {txn_id}"}


@attrs.define
class SendLog:
    """What the clients saw: 200s (txn → event ID) and sends whose outcome is unknown
    because the connection died (the server may or may not have stored them)."""

    answered: dict[tuple[str, str], str] = attrs.field(factory=dict)
    in_flight: list[tuple[User, str]] = attrs.field(factory=list)
    enough: asyncio.Event = attrs.field(factory=asyncio.Event)


async def sender(session: aiohttp.ClientSession, base: str, room_id: str, user: User,
                 prefix: str, log: SendLog) -> None:
    """Send until the connection fails (the kill). Any answer other than 200 fails the test."""
    for n in range(MAX_SENDS_PER_SENDER):
        txn_id = f"{prefix}-{n}"
        try:
            async with session.put(send_url(base, room_id, txn_id), headers=user.headers,
                                   json=message(user, txn_id)) as r:
                reply = await r.json()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            log.in_flight.append((user, txn_id))
            return
        assert r.status == 200, (r.status, reply)
        log.answered[(user.user_id, txn_id)] = reply["event_id"]
        if len(log.answered) >= KILL_AFTER:
            log.enough.set()
    pytest.fail(f"the server was not killed after {MAX_SENDS_PER_SENDER} sends")


async def kill_when_enough(hs: ServerProcess, log: SendLog) -> None:
    await log.enough.wait()
    hs.kill()


async def room_timeline(session: aiohttp.ClientSession, base: str, room_id: str,
                        user: User) -> list[dict[str, Any]]:
    """The whole room, oldest first, through /messages (forward pagination)."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        params = {"dir": "f", "limit": "100", **({"from": token} if token else {})}
        async with session.get(f"{base}{V3}/rooms/{quote(room_id)}/messages", params=params,
                               headers=user.headers) as r:
            page = await r.json()
            assert r.status == 200, page
        events.extend(page["chunk"])
        if "end" not in page or not page["chunk"]:
            return events
        token = page["end"]
    pytest.fail(f"room history did not end within {MAX_PAGES} pages")


def messages_by_body(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """body → event IDs of the m.room.message events carrying it."""
    by_body: dict[str, list[str]] = {}
    for e in events:
        if e["type"] == "m.room.message":
            by_body.setdefault(e["content"]["body"], []).append(e["event_id"])
    return by_body


async def make_room(session: aiohttp.ClientSession, base: str) -> tuple[list[User], str]:
    """The users, all joined to one public room created by the first."""
    users = [await register(session, base, name) for name in USERS]
    room_id = (await call(session, "POST", f"{base}{V3}/createRoom", users[0],
                          {"preset": "public_chat", "name": "durability"}))["room_id"]
    for user in users[1:]:
        await call(session, "POST", f"{base}{V3}/rooms/{quote(room_id)}/join", user, {})
    return users, room_id


async def send_until_killed(session: aiohttp.ClientSession, server: ServerProcess,
                            users: list[User], room_id: str) -> SendLog:
    """Several clients send at once; the server is SIGKILLed mid-stream."""
    log = SendLog()
    async with asyncio.timeout(60):
        await asyncio.gather(
            kill_when_enough(server, log),
            *(sender(session, server.url, room_id, user, f"s{i}", log)
              for user in users for i in range(SENDERS_PER_USER)))
    assert await server.wait() == -signal.SIGKILL
    assert len(log.answered) >= KILL_AFTER
    # Every sender ends on a send the kill cut off (in flight, or sent to a dead server).
    assert len(log.in_flight) == len(users) * SENDERS_PER_USER
    return log


def assert_answered_once(events: list[dict[str, Any]], users: list[User],
                         answered: dict[tuple[str, str], str]) -> dict[str, list[str]]:
    """No event and no send appears twice; every 200 is there under the ID the client
    was given. Returns body → event IDs."""
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event appears twice in the timeline"
    by_body = messages_by_body(events)
    duplicated = {body: found for body, found in by_body.items() if len(found) > 1}
    assert not duplicated, f"one send stored as several events: {duplicated}"
    by_user = {u.user_id: u for u in users}
    for (user_id, txn_id), event_id in answered.items():
        assert by_body.get(message(by_user[user_id], txn_id)["body"]) == [event_id], \
            f"{user_id} {txn_id}: answered {event_id}, not in the timeline after restart"
    return by_body


async def retry_after_restart(session: aiohttp.ClientSession, base: str, room_id: str,
                              users: list[User], log: SendLog,
                              by_body: dict[str, list[str]]) -> None:
    """Same device, same txn ID, new server process. A cut-off send returns the event its
    first attempt stored, if it committed, else creates one; an answered one returns its
    event. Cut-off sends join `log.answered`."""
    by_user = {u.user_id: u for u in users}
    for (user_id, txn_id), event_id in list(log.answered.items())[::10]:
        user = by_user[user_id]
        reply = await call(session, "PUT", send_url(base, room_id, txn_id), user,
                           message(user, txn_id))
        assert reply["event_id"] == event_id, f"{user_id} {txn_id}: retry made a new event"
    for user, txn_id in log.in_flight:
        stored = by_body.get(message(user, txn_id)["body"])
        reply = await call(session, "PUT", send_url(base, room_id, txn_id), user,
                           message(user, txn_id))
        if stored is not None:
            assert reply["event_id"] == stored[0], f"{user.user_id} {txn_id}: retry made a second event"
        log.answered[(user.user_id, txn_id)] = reply["event_id"]


def assert_sender_order(events: list[dict[str, Any]], answered: dict[tuple[str, str], str]) -> None:
    """One sender's sends were sequential, so the timeline keeps their order."""
    position = {e["event_id"]: i for i, e in enumerate(events)}
    streams: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for (user_id, txn_id), event_id in answered.items():
        prefix, _, n = txn_id.partition("-")
        streams.setdefault((user_id, prefix), []).append((int(n), position[event_id]))
    for sent in streams.values():
        in_timeline = [p for _, p in sorted(sent)]
        assert in_timeline == sorted(in_timeline)


async def assert_room_consistent(session: aiohttp.ClientSession, base: str, room_id: str,
                                 users: list[User]) -> None:
    for user in users:
        joined = await call(session, "GET", f"{base}{V3}/rooms/{quote(room_id)}/joined_members", user)
        assert set(joined["joined"]) == {u.user_id for u in users}
        rooms = await call(session, "GET", f"{base}{V3}/joined_rooms", user)
        assert rooms["joined_rooms"] == [room_id]


async def test_sigkill_while_sending_loses_no_answered_event(server: ServerProcess) -> None:
    base = server.url
    timeout = aiohttp.ClientTimeout(total=20)
    await server.start()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        users, room_id = await make_room(session, base)
        log = await send_until_killed(session, server, users, room_id)
    assert "Traceback" not in server.log(0), server.log(0)
    alice = users[0]

    await server.start()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        events = await room_timeline(session, base, room_id, alice)
        by_body = assert_answered_once(events, users, log.answered)
        await retry_after_restart(session, base, room_id, users, log, by_body)

        # The room is still usable: a new event lands at the end, and the timeline holds
        # each send (answered, or cut off and retried) exactly once.
        after = await call(session, "PUT", send_url(base, room_id, "after-0"), alice,
                           message(alice, "after-0"))
        log.answered[(alice.user_id, "after-0")] = after["event_id"]
        events = await room_timeline(session, base, room_id, alice)
        assert events[-1]["event_id"] == after["event_id"]
        by_body = assert_answered_once(events, users, log.answered)
        assert len(by_body) == len(log.answered)
        assert_sender_order(events, log.answered)
        await assert_room_consistent(session, base, room_id, users)
        # /sync agrees with /messages about the newest event.
        sync = await call(session, "GET", f"{base}{V3}/sync", users[1])
        assert sync["rooms"]["join"][room_id]["timeline"]["events"][-1]["event_id"] == after["event_id"]

    assert await server.stop() == 0
    assert "Traceback" not in server.log(), server.log()
