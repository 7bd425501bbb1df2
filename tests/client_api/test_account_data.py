"""Global and per-room account data."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import bearer, error, register
from tests.spec_schemas import validate_response

V3 = "/_matrix/client/v3"
ALICE = "@alice:test.local"
ROOM = "!room:test.local"


async def test_account_data_roundtrip(client: TestClient) -> None:
    reg = await register(client, "alice")
    headers = bearer(reg["access_token"])
    url = f"{V3}/user/{ALICE}/account_data/org.example.config"
    resp = await client.put(url, headers=headers, json={"theme": "dark", "n": [1, 2]})
    assert resp.status == 200
    validate_response("account-data.yaml", "/user/{userId}/account_data/{type}", "put", await resp.json())
    body = await (await client.get(url, headers=headers)).json()
    assert body == {"theme": "dark", "n": [1, 2]}
    room_url = f"{V3}/user/{ALICE}/rooms/{ROOM}/account_data/m.tag"
    assert (await client.put(room_url, headers=headers, json={"tags": {"u.work": {}}})).status == 200
    assert await (await client.get(room_url, headers=headers)).json() == {"tags": {"u.work": {}}}
    # Per-room data does not leak into global data of the same type, nor other rooms.
    await error(await client.get(f"{V3}/user/{ALICE}/account_data/m.tag", headers=headers),
                404, "M_NOT_FOUND")
    await error(await client.get(f"{V3}/user/{ALICE}/rooms/!other:test.local/account_data/m.tag",
                                 headers=headers), 404, "M_NOT_FOUND")


async def test_account_data_bad_input(client: TestClient) -> None:
    reg = await register(client, "alice")
    bob = await register(client, "bob")
    headers = bearer(reg["access_token"])
    url = f"{V3}/user/{ALICE}/account_data/org.example.config"
    await error(await client.get(url, headers=headers), 404, "M_NOT_FOUND")
    await error(await client.get(url, headers=bearer(bob["access_token"])), 403, "M_FORBIDDEN")
    await error(await client.put(url, headers=bearer(bob["access_token"]), json={}), 403, "M_FORBIDDEN")
    await error(await client.put(url, json={}), 401, "M_MISSING_TOKEN")
    await error(await client.put(url, headers=headers, data=b"{oops"), 400, "M_NOT_JSON")
    await error(await client.put(url, headers=headers, data=b"[]"), 400, "M_BAD_JSON")
    for managed in ("m.fully_read", "m.push_rules"):
        await error(await client.put(f"{V3}/user/{ALICE}/account_data/{managed}", headers=headers,
                                     json={}), 405, "M_BAD_JSON")
    await error(await client.put(f"{V3}/user/{ALICE}/rooms/{ROOM}/account_data/m.fully_read",
                                 headers=headers, json={"event_id": "$x"}), 405, "M_BAD_JSON")
    await error(await client.put(f"{V3}/user/{ALICE}/rooms/not-a-room/account_data/m.tag",
                                 headers=headers, json={}), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{V3}/user/{ALICE}/rooms/not-a-room/account_data/m.tag",
                                 headers=headers), 400, "M_INVALID_PARAM")
    long_type = "t" * 300
    await error(await client.put(f"{V3}/user/{ALICE}/account_data/{long_type}", headers=headers,
                                 json={}), 400, "M_INVALID_PARAM")
