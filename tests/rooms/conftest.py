"""A room service on a fresh database of each engine; users are plain ID strings (rooms
need no accounts)."""

from __future__ import annotations

import pytest
import signedjson.key

from homeserver.clock import FakeClock
from homeserver.rooms.creation import CreateRoomRequest
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database

SERVER = "test.local"
ALICE = "@alice:test.local"
BOB = "@bob:test.local"
CAROL = "@carol:test.local"


@pytest.fixture
def rooms(database: Database, clock: FakeClock) -> RoomService:
    key = signedjson.key.generate_signing_key("t1")
    return RoomService(database, server_name=SERVER, signing_key=key, clock=clock)


async def make_room(rooms: RoomService, creator: str = ALICE, **kwargs: object) -> str:
    return await rooms.creator.create_room(creator, CreateRoomRequest(**kwargs))  # type: ignore[arg-type]
