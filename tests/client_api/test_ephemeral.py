"""Typing, receipts, read markers and presence endpoints through a real in-process server."""

from __future__ import annotations

from typing import Any

import pytest

from client_api.presence import Presence
from client_api.receipts import Receipts
from client_api.typing import Typing
from homeserver.clock import FakeClock
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Database
from homeserver.storage.presence import PresenceStore
from homeserver.storage.receipts import ReceiptStore
from homeserver.sync.notifier import Notifier
from homeserver.sync.presence import PresenceService
from homeserver.sync.receipts import ReceiptService
from homeserver.sync.timers import FakeScheduler
from homeserver.sync.typing import TypingService
from tests.client_api.sync_harness import app_for, auth
from tests.sync.fakes import FakeRooms

ROOM = "!r:x"
V3 = "/_matrix/client/v3"


class Services:
    def __init__(self, database: Database):
        self.rooms = FakeRooms()
        self.rooms.join("@a:x", ROOM)
        self.rooms.join("@b:x", ROOM)
        self.rooms.add_event(ROOM, "$e1", 1)
        self.rooms.add_event(ROOM, "$e2", 2)
        clock = FakeClock()
        self.scheduler = FakeScheduler(clock)
        notifier = Notifier()
        self.account_data = AccountDataStore()
        self.typing = TypingService(notifier, self.rooms, clock, self.scheduler)
        self.receipts = ReceiptService(database, ReceiptStore(), self.account_data, notifier,
                                       self.rooms, self.rooms, clock)
        self.presence = PresenceService(database, PresenceStore(), notifier, self.rooms, clock,
                                        self.scheduler)


@pytest.fixture
def services(database: Database) -> Services:
    return Services(database)


@pytest.fixture
async def client(aiohttp_client: Any, services: Services) -> Any:
    app = app_for(Typing(services.typing).endpoints(), Receipts(services.receipts).endpoints(),
                  Presence(services.presence).endpoints())
    return await aiohttp_client(app)


async def _err(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["errcode"]


async def test_typing(client: Any, services: Services) -> None:
    url = f"{V3}/rooms/{ROOM}/typing/@a:x"
    resp = await client.put(url, json={"typing": True, "timeout": 30000}, headers=auth("a"))
    assert resp.status == 200 and await resp.json() == {}
    assert services.typing.typing_users(ROOM) == ["@a:x"]
    resp = await client.put(url, json={"typing": False}, headers=auth("a"))
    assert resp.status == 200 and services.typing.typing_users(ROOM) == []
    assert await _err(await client.put(url, json={"typing": True}, headers=auth("b"))) == (403, "M_FORBIDDEN")
    assert await _err(await client.put(url, json={}, headers=auth("a"))) == (400, "M_MISSING_PARAM")
    assert await _err(await client.put(url, json={"typing": "yes"}, headers=auth("a"))) == (400, "M_BAD_JSON")
    other = f"{V3}/rooms/!nope:x/typing/@a:x"
    assert await _err(await client.put(other, json={"typing": True}, headers=auth("a"))) == (403, "M_FORBIDDEN")


async def test_receipts(client: Any, services: Services) -> None:
    resp = await client.post(f"{V3}/rooms/{ROOM}/receipt/m.read/$e2", json={"thread_id": "main"},
                             headers=auth("a"))
    assert resp.status == 200 and await resp.json() == {}
    content = (await services.receipts.receipts_initial("@b:x", [ROOM]))[ROOM]["content"]
    assert content["$e2"]["m.read"]["@a:x"]["thread_id"] == "main"
    resp = await client.post(f"{V3}/rooms/{ROOM}/receipt/m.fully_read/$e1", json={}, headers=auth("a"))
    assert resp.status == 200
    bad = [
        (f"{V3}/rooms/{ROOM}/receipt/m.nope/$e1", {}, (400, "M_INVALID_PARAM")),
        (f"{V3}/rooms/{ROOM}/receipt/m.read/$e1", {"thread_id": ""}, (400, "M_INVALID_PARAM")),
        (f"{V3}/rooms/{ROOM}/receipt/m.fully_read/$e1", {"thread_id": "main"}, (400, "M_INVALID_PARAM")),
        (f"{V3}/rooms/{ROOM}/receipt/m.read/$missing", {}, (404, "M_NOT_FOUND")),
        (f"{V3}/rooms/{ROOM}/receipt/m.read/e1", {}, (400, "M_INVALID_PARAM")),
        (f"{V3}/rooms/!other:x/receipt/m.read/$e1", {}, (403, "M_FORBIDDEN")),
    ]
    for url, body, expected in bad:
        assert await _err(await client.post(url, json=body, headers=auth("a"))) == expected, url


async def test_read_markers(client: Any, services: Services, database: Database) -> None:
    url = f"{V3}/rooms/{ROOM}/read_markers"
    resp = await client.post(url, json={"m.fully_read": "$e2", "m.read.private": "$e2"},
                             headers=auth("a"))
    assert resp.status == 200
    assert await services.account_data.get_room(database, "@a:x", ROOM, "m.fully_read") == {
        "event_id": "$e2"}
    assert await services.receipts.receipts_initial("@b:x", [ROOM]) == {}  # private
    assert await _err(await client.post(url, json={"m.read": 5}, headers=auth("a"))) == (400, "M_BAD_JSON")
    assert await _err(await client.post(url, json={"m.read": "nope"}, headers=auth("a"))) == (
        400, "M_INVALID_PARAM")


async def test_presence(client: Any) -> None:
    url = f"{V3}/presence/@a:x/status"
    resp = await client.put(url, json={"presence": "online", "status_msg": "here"}, headers=auth("a"))
    assert resp.status == 200 and await resp.json() == {}
    resp = await client.get(url, headers=auth("b"))
    assert resp.status == 200
    body = await resp.json()
    assert body["presence"] == "online" and body["status_msg"] == "here"
    assert await _err(await client.get(url, headers=auth("stranger"))) == (403, "M_FORBIDDEN")
    assert await _err(await client.put(url, json={"presence": "online"}, headers=auth("b"))) == (
        403, "M_FORBIDDEN")
    assert await _err(await client.put(url, json={"presence": "busy"}, headers=auth("a"))) == (
        400, "M_BAD_JSON")
    assert await _err(await client.get(f"{V3}/presence/nobody/status", headers=auth("a"))) == (
        400, "M_INVALID_PARAM")
