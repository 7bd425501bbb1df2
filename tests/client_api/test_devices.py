"""Device management, with UIAA on deletion."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import PASSWORD, bearer, error, password_auth, register
from tests.spec_schemas import validate_definition, validate_response

V3 = "/_matrix/client/v3"


async def _two_devices(client: TestClient) -> tuple[dict, dict]:
    reg = await register(client, "alice", device_id="FIRST", initial_device_display_name="Phone")
    resp = await client.post(f"{V3}/login", json={"type": "m.login.password", "user": "alice",
                                                  "password": PASSWORD, "device_id": "SECOND"})
    return reg, await resp.json()


async def test_list_get_rename(client: TestClient) -> None:
    reg, _ = await _two_devices(client)
    headers = bearer(reg["access_token"])
    body = await (await client.get(f"{V3}/devices", headers=headers)).json()
    # Unset fields come as null (Synapse's and matrix-nio's convention, see
    # client_api/devices.py); the spec's schema describes them as absent instead.
    assert all(set(d) == {"device_id", "display_name", "last_seen_ip", "last_seen_ts"}
               for d in body["devices"])
    validate_response("device_management.yaml", "/devices", "get", {"devices": [
        {k: v for k, v in d.items() if v is not None} for d in body["devices"]]})
    assert [d["device_id"] for d in body["devices"]] == ["FIRST", "SECOND"]
    device = await (await client.get(f"{V3}/devices/FIRST", headers=headers)).json()
    validate_definition("definitions/client_device.yaml", {k: v for k, v in device.items() if v is not None})
    assert device["display_name"] == "Phone" and device["last_seen_ts"] > 0
    resp = await client.put(f"{V3}/devices/FIRST", headers=headers, json={"display_name": "Tablet"})
    assert resp.status == 200 and await resp.json() == {}
    device = await (await client.get(f"{V3}/devices/FIRST", headers=headers)).json()
    assert device["display_name"] == "Tablet"


async def test_device_bad_input(client: TestClient) -> None:
    reg, _ = await _two_devices(client)
    headers = bearer(reg["access_token"])
    await error(await client.get(f"{V3}/devices/NOPE", headers=headers), 404, "M_NOT_FOUND")
    await error(await client.put(f"{V3}/devices/NOPE", headers=headers, json={"display_name": "x"}),
                404, "M_NOT_FOUND")
    await error(await client.put(f"{V3}/devices/FIRST", headers=headers, json={"display_name": 5}),
                400, "M_BAD_JSON")
    await error(await client.put(f"{V3}/devices/FIRST", headers=headers, data=b"x"), 400, "M_NOT_JSON")
    await error(await client.get(f"{V3}/devices"), 401, "M_MISSING_TOKEN")
    await error(await client.post(f"{V3}/delete_devices", headers=headers, json={}), 400, "M_MISSING_PARAM")
    await error(await client.post(f"{V3}/delete_devices", headers=headers, json={"devices": "A"}),
                400, "M_BAD_JSON")
    await error(await client.post(f"{V3}/delete_devices", headers=headers, json={"devices": [1]}),
                400, "M_BAD_JSON")
    # Another user's devices are invisible.
    bob = await register(client, "bob")
    await error(await client.get(f"{V3}/devices/FIRST", headers=bearer(bob["access_token"])),
                404, "M_NOT_FOUND")


async def test_delete_device_behind_uiaa(client: TestClient) -> None:
    reg, second = await _two_devices(client)
    headers = bearer(reg["access_token"])
    resp = await client.delete(f"{V3}/devices/SECOND", headers=headers)
    challenge = await resp.json()
    assert resp.status == 401
    validate_response("device_management.yaml", "/devices/{deviceId}", "delete", challenge, status="401")
    resp = await client.delete(f"{V3}/devices/SECOND", headers=headers,
                               json={"auth": password_auth("alice", "wrong", challenge["session"])})
    assert resp.status == 401 and (await resp.json())["errcode"] == "M_FORBIDDEN"
    # The session was started for SECOND; it cannot delete FIRST.
    await error(await client.delete(f"{V3}/devices/FIRST", headers=headers,
                                    json={"auth": password_auth("alice", session=challenge["session"])}),
                403, "M_FORBIDDEN")
    resp = await client.delete(f"{V3}/devices/SECOND", headers=headers,
                               json={"auth": password_auth("alice", session=challenge["session"])})
    assert resp.status == 200, await resp.json()
    await error(await client.get(f"{V3}/account/whoami", headers=bearer(second["access_token"])),
                401, "M_UNKNOWN_TOKEN")
    await error(await client.get(f"{V3}/devices/SECOND", headers=headers), 404, "M_NOT_FOUND")


async def test_delete_devices_bulk(client: TestClient) -> None:
    reg, second = await _two_devices(client)
    headers = bearer(reg["access_token"])
    payload = {"devices": ["SECOND", "UNKNOWN"]}
    resp = await client.post(f"{V3}/delete_devices", headers=headers, json=payload)
    assert resp.status == 401
    resp = await client.post(f"{V3}/delete_devices", headers=headers,
                             json={**payload, "auth": password_auth("alice")})
    assert resp.status == 200 and await resp.json() == {}
    body = await (await client.get(f"{V3}/devices", headers=headers)).json()
    assert [d["device_id"] for d in body["devices"]] == ["FIRST"]
    resp = await client.delete(f"{V3}/devices/FIRST", headers=headers, data=b"{bad")
    await error(resp, 400, "M_NOT_JSON")
