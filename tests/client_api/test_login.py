"""GET/POST /login, /logout, /logout/all, /refresh."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from homeserver.clock import FakeClock
from tests.client_api.conftest import PASSWORD, Connect, MakeHs, bearer, error, register
from tests.spec_schemas import validate_response

V3 = "/_matrix/client/v3"


async def _login(client: TestClient, **body: object) -> dict:
    resp = await client.post(f"{V3}/login", json={"type": "m.login.password", **body})
    data = await resp.json()
    assert resp.status == 200, data
    validate_response("login.yaml", "/login", "post", data)
    return data  # type: ignore[no-any-return]


async def test_login_flows(client: TestClient) -> None:
    resp = await client.get(f"{V3}/login")
    body = await resp.json()
    validate_response("login.yaml", "/login", "get", body)
    assert {"type": "m.login.password"} in body["flows"]


async def test_login_identifier_and_legacy_user(client: TestClient) -> None:
    await register(client, "alice")
    a = await _login(client, identifier={"type": "m.id.user", "user": "alice"}, password=PASSWORD)
    b = await _login(client, user="@alice:test.local", password=PASSWORD, device_id="LAPTOP",
                     initial_device_display_name="Laptop")
    assert a["user_id"] == b["user_id"] == "@alice:test.local" and b["device_id"] == "LAPTOP"
    assert a["device_id"] != b["device_id"] and "refresh_token" not in a
    resp = await client.get(f"{V3}/account/whoami", headers=bearer(b["access_token"]))
    assert (await resp.json())["device_id"] == "LAPTOP"


async def test_login_bad_input(client: TestClient) -> None:
    await register(client, "alice")
    cases = [
        ({"type": "m.login.password", "user": "alice", "password": "wrong"}, 403, "M_FORBIDDEN"),
        ({"type": "m.login.password", "user": "nobody", "password": PASSWORD}, 403, "M_FORBIDDEN"),
        ({"type": "m.login.password", "user": "@alice:other.org", "password": PASSWORD}, 403, "M_FORBIDDEN"),
        ({"type": "m.login.token", "token": "x"}, 400, "M_UNKNOWN"),
        ({"user": "alice", "password": PASSWORD}, 400, "M_MISSING_PARAM"),
        ({"type": 1, "user": "alice", "password": PASSWORD}, 400, "M_BAD_JSON"),
        ({"type": "m.login.password", "password": PASSWORD}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "user": "alice"}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "user": "alice", "password": 123}, 400, "M_BAD_JSON"),
        ({"type": "m.login.password", "user": ["alice"], "password": PASSWORD}, 400, "M_BAD_JSON"),
        ({"type": "m.login.password", "identifier": "alice", "password": PASSWORD}, 400, "M_BAD_JSON"),
        ({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email",
                                                     "address": "a@b.c"}, "password": PASSWORD},
         400, "M_UNKNOWN"),
        ({"type": "m.login.password", "user": "alice", "password": PASSWORD, "device_id": 7},
         400, "M_BAD_JSON"),
        ({"type": "m.login.password", "user": "alice", "password": PASSWORD, "refresh_token": "yes"},
         400, "M_BAD_JSON"),
    ]
    for payload, status, errcode in cases:
        await error(await client.post(f"{V3}/login", json=payload), status, errcode)
    await error(await client.post(f"{V3}/login", data=b"{"), 400, "M_NOT_JSON")
    await error(await client.post(f"{V3}/login", data=b'"string"'), 400, "M_BAD_JSON")


async def test_deactivated_user_cannot_login(client: TestClient) -> None:
    reg = await register(client, "alice")
    resp = await client.post(f"{V3}/account/deactivate", headers=bearer(reg["access_token"]),
                             json={"auth": {"type": "m.login.password", "user": "alice",
                                            "password": PASSWORD}})
    assert resp.status == 200, await resp.json()
    await error(await client.post(f"{V3}/login", json={"type": "m.login.password", "user": "alice",
                                                      "password": PASSWORD}),
                403, "M_USER_DEACTIVATED")


async def test_logout_deletes_device_and_token(client: TestClient) -> None:
    reg = await register(client, "alice")
    other = await _login(client, user="alice", password=PASSWORD)
    resp = await client.post(f"{V3}/logout", headers=bearer(reg["access_token"]))
    assert resp.status == 200 and await resp.json() == {}
    await error(await client.get(f"{V3}/account/whoami", headers=bearer(reg["access_token"])),
                401, "M_UNKNOWN_TOKEN")
    resp = await client.get(f"{V3}/devices", headers=bearer(other["access_token"]))
    assert [d["device_id"] for d in (await resp.json())["devices"]] == [other["device_id"]]
    await error(await client.post(f"{V3}/logout"), 401, "M_MISSING_TOKEN")


async def test_logout_all(client: TestClient) -> None:
    reg = await register(client, "alice")
    other = await _login(client, user="alice", password=PASSWORD)
    bob = await register(client, "bob")
    resp = await client.post(f"{V3}/logout/all", headers=bearer(other["access_token"]))
    assert resp.status == 200
    for token in (reg["access_token"], other["access_token"]):
        await error(await client.get(f"{V3}/account/whoami", headers=bearer(token)), 401, "M_UNKNOWN_TOKEN")
    resp = await client.get(f"{V3}/account/whoami", headers=bearer(bob["access_token"]))
    assert resp.status == 200


async def test_refresh_flow_and_soft_logout(client: TestClient, clock: FakeClock) -> None:
    await register(client, "alice")
    login = await _login(client, user="alice", password=PASSWORD, refresh_token=True)
    assert login["expires_in_ms"] == 5 * 60 * 1000 and login["refresh_token"]
    clock.advance(login["expires_in_ms"])
    body = await error(await client.get(f"{V3}/account/whoami", headers=bearer(login["access_token"])),
                       401, "M_UNKNOWN_TOKEN")
    assert body["soft_logout"] is True
    resp = await client.post(f"{V3}/refresh", json={"refresh_token": login["refresh_token"]})
    new = await resp.json()
    assert resp.status == 200, new
    validate_response("refresh.yaml", "/refresh", "post", new)
    resp = await client.get(f"{V3}/account/whoami", headers=bearer(new["access_token"]))
    assert (await resp.json())["device_id"] == login["device_id"]
    # The old refresh token is spent once the new access token has been used.
    await error(await client.post(f"{V3}/refresh", json={"refresh_token": login["refresh_token"]}),
                401, "M_UNKNOWN_TOKEN")
    await error(await client.post(f"{V3}/refresh", json={}), 400, "M_MISSING_PARAM")
    await error(await client.post(f"{V3}/refresh", json={"refresh_token": 5}), 400, "M_BAD_JSON")
    await error(await client.post(f"{V3}/refresh", data=b"nope"), 400, "M_NOT_JSON")


async def test_token_in_query_and_bad_headers(client: TestClient) -> None:
    reg = await register(client, "alice")
    resp = await client.get(f"{V3}/account/whoami?access_token={reg['access_token']}")
    assert resp.status == 200
    await error(await client.get(f"{V3}/account/whoami", headers={"Authorization": "Basic abc"}),
                401, "M_MISSING_TOKEN")
    body = await error(await client.get(f"{V3}/account/whoami", headers=bearer("not-a-token")),
                       401, "M_UNKNOWN_TOKEN")
    assert body["soft_logout"] is False


async def test_login_rate_limited(make_hs: MakeHs, connect: Connect) -> None:
    client = await connect(make_hs(rate_limits={"login": {"per_second": 0.01, "burst": 2}}))
    payload = {"type": "m.login.password", "user": "nobody", "password": "x"}
    for _ in range(2):
        await error(await client.post(f"{V3}/login", json=payload), 403, "M_FORBIDDEN")
    resp = await client.post(f"{V3}/login", json=payload)
    body = await error(resp, 429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] > 0 and int(resp.headers["Retry-After"]) >= 1
