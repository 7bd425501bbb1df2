"""whoami, password change, deactivation."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import (
    PASSWORD,
    Connect,
    MakeHs,
    bearer,
    error,
    password_auth,
    register,
)
from tests.spec_schemas import validate_response

V3 = "/_matrix/client/v3"


async def test_whoami(client: TestClient) -> None:
    reg = await register(client, "alice")
    resp = await client.get(f"{V3}/account/whoami", headers=bearer(reg["access_token"]))
    body = await resp.json()
    validate_response("whoami.yaml", "/account/whoami", "get", body)
    assert body == {"user_id": "@alice:test.local", "device_id": reg["device_id"], "is_guest": False}
    await error(await client.get(f"{V3}/account/whoami"), 401, "M_MISSING_TOKEN")


async def test_change_password(client: TestClient) -> None:
    reg = await register(client, "alice")
    other = await (await client.post(f"{V3}/login", json={
        "type": "m.login.password", "user": "alice", "password": PASSWORD})).json()
    url, headers = f"{V3}/account/password", bearer(reg["access_token"])
    resp = await client.post(url, headers=headers, json={"new_password": "another password"})
    challenge = await resp.json()
    assert resp.status == 401 and challenge["flows"] == [{"stages": ["m.login.password"]}]
    validate_response("password_management.yaml", "/account/password", "post", challenge, status="401")
    resp = await client.post(url, headers=headers, json={
        "new_password": "another password",
        "auth": password_auth("alice", "wrong password", challenge["session"])})
    body = await resp.json()
    assert resp.status == 401 and body["errcode"] == "M_FORBIDDEN" and body["completed"] == []
    resp = await client.post(url, headers=headers, json={
        "new_password": "another password", "auth": password_auth("alice", session=challenge["session"])})
    assert resp.status == 200 and await resp.json() == {}
    assert (await client.get(f"{V3}/account/whoami", headers=headers)).status == 200
    await error(await client.get(f"{V3}/account/whoami", headers=bearer(other["access_token"])),
                401, "M_UNKNOWN_TOKEN")
    await error(await client.post(f"{V3}/login", json={"type": "m.login.password", "user": "alice",
                                                      "password": PASSWORD}), 403, "M_FORBIDDEN")


async def test_change_password_keep_devices_and_without_token(client: TestClient) -> None:
    reg = await register(client, "alice")
    resp = await client.post(f"{V3}/account/password", json={
        "new_password": "another password", "logout_devices": False,
        "auth": password_auth("alice")})
    assert resp.status == 200, await resp.json()
    assert (await client.get(f"{V3}/account/whoami", headers=bearer(reg["access_token"]))).status == 200


async def test_change_password_bad_input(client: TestClient) -> None:
    reg = await register(client, "alice")
    url, headers = f"{V3}/account/password", bearer(reg["access_token"])
    await error(await client.post(url, headers=headers, json={}), 400, "M_MISSING_PARAM")
    await error(await client.post(url, headers=headers, json={"new_password": 5}), 400, "M_BAD_JSON")
    await error(await client.post(url, headers=headers, json={"new_password": "x"}), 400, "M_WEAK_PASSWORD")
    await error(await client.post(url, headers=headers, json={"new_password": "long enough",
                                                              "logout_devices": "no"}), 400, "M_BAD_JSON")
    await error(await client.post(url, headers=headers, data=b"{]"), 400, "M_NOT_JSON")
    await error(await client.post(url, headers=bearer("wrong"), json={"new_password": "long enough"}),
                401, "M_UNKNOWN_TOKEN")
    # Another user's password does not authorise a change to this account.
    await register(client, "bob")
    resp = await client.post(url, headers=headers, json={
        "new_password": "long enough", "auth": password_auth("bob")})
    assert resp.status == 401 and (await resp.json())["errcode"] == "M_FORBIDDEN"
    resp = await client.post(url, headers=headers, json={
        "new_password": "long enough", "auth": {"type": "m.login.dummy"}})
    assert resp.status == 401 and (await resp.json())["errcode"] == "M_UNRECOGNIZED"


async def test_password_change_rate_limited(make_hs: MakeHs, connect: Connect) -> None:
    client = await connect(make_hs(rate_limits={"password_change": {"per_second": 0.01, "burst": 1}}))
    reg = await register(client, "alice")
    url, headers = f"{V3}/account/password", bearer(reg["access_token"])
    assert (await client.post(url, headers=headers, json={"new_password": "long enough"})).status == 401
    body = await error(await client.post(url, headers=headers, json={"new_password": "long enough"}),
                       429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] > 0


async def test_deactivate(client: TestClient) -> None:
    reg = await register(client, "alice")
    url, headers = f"{V3}/account/deactivate", bearer(reg["access_token"])
    resp = await client.post(url, headers=headers, json={})
    assert resp.status == 401
    resp = await client.post(url, headers=headers, json={"auth": password_auth("alice", "nope")})
    assert resp.status == 401 and (await resp.json())["errcode"] == "M_FORBIDDEN"
    await error(await client.post(url, headers=headers, json={"erase": "yes"}), 400, "M_BAD_JSON")
    resp = await client.post(url, headers=headers, json={"auth": password_auth("alice"), "erase": True})
    body = await resp.json()
    assert resp.status == 200, body
    validate_response("account_deactivation.yaml", "/account/deactivate", "post", body)
    await error(await client.get(f"{V3}/account/whoami", headers=headers), 401, "M_UNKNOWN_TOKEN")
    await error(await client.get(f"{V3}/register/available?username=alice"), 400, "M_USER_IN_USE")
