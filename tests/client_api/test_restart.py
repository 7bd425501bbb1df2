"""Accounts survive a restart: a new Homeserver on the same database sees everything."""

from __future__ import annotations

from tests.client_api.conftest import PASSWORD, Connect, MakeHs, bearer, register

V3 = "/_matrix/client/v3"
ALICE = "@alice:test.local"


async def test_state_survives_restart(make_hs: MakeHs, connect: Connect) -> None:
    first = make_hs()
    client = await connect(first)
    reg = await register(client, "alice", device_id="KEEP", initial_device_display_name="Phone")
    headers = bearer(reg["access_token"])
    login = await (await client.post(f"{V3}/login", json={
        "type": "m.login.password", "user": "alice", "password": PASSWORD, "refresh_token": True,
        "device_id": "REFRESHING"})).json()
    await client.put(f"{V3}/profile/{ALICE}/displayname", headers=headers, json={"displayname": "Alice"})
    await client.put(f"{V3}/user/{ALICE}/account_data/org.example", headers=headers, json={"k": "v"})
    await client.put(f"{V3}/user/{ALICE}/rooms/!r:test.local/account_data/m.tag", headers=headers,
                     json={"tags": {}})
    await client.close()
    await first.close()

    client = await connect(make_hs())
    whoami = await (await client.get(f"{V3}/account/whoami", headers=headers)).json()
    assert whoami == {"user_id": ALICE, "device_id": "KEEP", "is_guest": False}
    devices = await (await client.get(f"{V3}/devices", headers=headers)).json()
    assert {d["device_id"]: d.get("display_name") for d in devices["devices"]} == \
        {"KEEP": "Phone", "REFRESHING": None}
    assert await (await client.get(f"{V3}/profile/{ALICE}/displayname")).json() == {"displayname": "Alice"}
    assert await (await client.get(f"{V3}/user/{ALICE}/account_data/org.example",
                                   headers=headers)).json() == {"k": "v"}
    assert await (await client.get(f"{V3}/user/{ALICE}/rooms/!r:test.local/account_data/m.tag",
                                   headers=headers)).json() == {"tags": {}}
    resp = await client.post(f"{V3}/refresh", json={"refresh_token": login["refresh_token"]})
    assert resp.status == 200
    resp = await client.post(f"{V3}/login", json={"type": "m.login.password", "user": "alice",
                                                  "password": PASSWORD})
    assert resp.status == 200
    assert (await client.get(f"{V3}/register/available?username=alice")).status == 400
