"""m.ignored_user_list validation and the ignored_users() lookup; m.direct round trip."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from homeserver.accounts.account_data import AccountData
from homeserver.accounts.requester import Requester
from tests.client_api.conftest import Connect, MakeHs, bearer, error, register

C = "/_matrix/client/v3"
ALICE = "@alice:test.local"
IGNORED = f"{C}/user/{ALICE}/account_data/m.ignored_user_list"


async def _ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def test_ignored_user_list_validation(client: TestClient) -> None:
    alice = bearer((await register(client, "alice"))["access_token"])
    bad: list[dict[str, Any]] = [
        {}, {"ignored_users": []}, {"ignored_users": "@bob:test.local"},
        {"ignored_users": {"bob": {}}}, {"ignored_users": {"@bob": {}}},
        {"ignored_users": {"@bob:test.local": True}}, {"ignored_users": {"@bob:test.local": []}}]
    for content in bad:
        await error(await client.put(IGNORED, headers=alice, json=content), 400, "M_BAD_JSON")
    await error(await client.get(IGNORED, headers=alice), 404, "M_NOT_FOUND")
    good: dict[str, Any] = {"ignored_users": {"@bob:test.local": {}, "@carol:elsewhere.example": {}}}
    await _ok(await client.put(IGNORED, headers=alice, json=good))
    assert await _ok(await client.get(IGNORED, headers=alice)) == good
    # The ignore list is global account data: a per-room event of that type means nothing.
    room_url = f"{C}/user/{ALICE}/rooms/!r:test.local/account_data/m.ignored_user_list"
    await _ok(await client.put(room_url, headers=alice, json={"anything": 1}))


async def test_ignored_users_lookup_follows_changes(make_hs: MakeHs, connect: Connect) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = bearer((await register(client, "alice"))["access_token"])
    assert await hs.account_data.ignored_users(ALICE) == frozenset()
    await _ok(await client.put(IGNORED, headers=alice, json={"ignored_users": {
        "@bob:test.local": {}, ALICE: {}}}))
    # Ignoring yourself would hide your own events: it is not honoured.
    assert await hs.account_data.ignored_users(ALICE) == {"@bob:test.local"}
    assert await hs.account_data.ignored_users(ALICE) == {"@bob:test.local"}  # cached
    await _ok(await client.put(IGNORED, headers=alice, json={"ignored_users": {
        "@carol:test.local": {}}}))
    assert await hs.account_data.ignored_users(ALICE) == {"@carol:test.local"}
    await _ok(await client.put(IGNORED, headers=alice, json={"ignored_users": {}}))
    assert await hs.account_data.ignored_users(ALICE) == frozenset()
    assert await hs.account_data.ignored_users("@nobody:test.local") == frozenset()


async def test_ignored_users_cache_is_bounded(make_hs: MakeHs, connect: Connect) -> None:
    hs = make_hs()
    await connect(hs)
    account_data = AccountData(hs.db, hs.account_data_store, ignored_cache_size=3)
    alice = Requester(user_id=ALICE, device_id="D", token_id=1)
    await account_data.set(alice, ALICE, "m.ignored_user_list", {"ignored_users": {"@bob:test.local": {}}})
    assert await account_data.ignored_users(ALICE) == {"@bob:test.local"}
    for i in range(10):
        await account_data.ignored_users(f"@u{i}:test.local")
    assert len(account_data._ignored) == 3
    assert await account_data.ignored_users(ALICE) == {"@bob:test.local"}
    # Other account data types leave the cached list alone; a new list replaces it.
    await account_data.set(alice, ALICE, "m.direct", {})
    assert ALICE in account_data._ignored
    await account_data.set(alice, ALICE, "m.ignored_user_list", {"ignored_users": {}})
    assert ALICE not in account_data._ignored
    assert await account_data.ignored_users(ALICE) == frozenset()


async def test_direct_rooms_round_trip(client: TestClient) -> None:
    alice = bearer((await register(client, "alice"))["access_token"])
    room = (await _ok(await client.post(f"{C}/createRoom", headers=alice, json={
        "is_direct": True, "invite": ["@bob:test.local"], "preset": "trusted_private_chat"})))["room_id"]
    url = f"{C}/user/{ALICE}/account_data/m.direct"
    direct = {"@bob:test.local": [room], "@carol:elsewhere.example": ["!old:elsewhere.example"]}
    await _ok(await client.put(url, headers=alice, json=direct))
    assert await _ok(await client.get(url, headers=alice)) == direct
    synced = await _ok(await client.get(f"{C}/sync", headers=alice))
    events = synced.get("account_data", {}).get("events", [])
    assert {"type": "m.direct", "content": direct} in events
