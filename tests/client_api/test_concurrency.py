"""Concurrent writers never fail: no deadlock between room-event transactions."""

from __future__ import annotations

import asyncio

from tests.client_api.conftest import Connect, MakeHs, register


async def test_concurrent_room_creation_and_sends(make_hs: MakeHs, connect: Connect) -> None:
    # createRoom takes a state snapshot ID before the events position; sends take them
    # in the other order. On PostgreSQL both used to be locked counter rows: a deadlock.
    client = await connect(make_hs())
    alice = await register(client, "alice")
    headers = {"Authorization": f"Bearer {alice['access_token']}"}
    base = "/_matrix/client/v3"
    first = await (await client.post(f"{base}/createRoom", headers=headers, json={})).json()

    async def create(i: int) -> int:
        resp = await client.post(f"{base}/createRoom", headers=headers,
                                 json={"name": f"room {i}", "preset": "public_chat"})
        return resp.status

    async def send(i: int) -> int:
        resp = await client.put(f"{base}/rooms/{first['room_id']}/send/m.room.message/t{i}",
                                headers=headers, json={"msgtype": "m.text", "body": str(i)})
        return resp.status

    statuses = await asyncio.gather(*[create(i) for i in range(6)], *[send(i) for i in range(6)])
    assert statuses == [200] * 12
    rooms = await (await client.get(f"{base}/joined_rooms", headers=headers)).json()
    assert len(rooms["joined_rooms"]) == 7
