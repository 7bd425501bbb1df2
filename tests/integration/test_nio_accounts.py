"""Issue 2 acceptance with a real client: matrix-nio drives registration, login, profile,
devices (with UIAA), logout and a server restart, over a real loopback TCP connection.

nio builds its own requests (paths, bodies, query strings, headers) and validates every
response against its own JSON schemas, so any mismatch between what nio sends or expects
and what DevNet does shows up here as the wrong response class.
"""

from __future__ import annotations

from typing import Any

from nio import (
    Api,
    AsyncClient,
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    DevicesResponse,
    DirectRoomsResponse,
    ErrorResponse,
    LoginError,
    LoginResponse,
    LogoutResponse,
    ProfileGetDisplayNameResponse,
    ProfileSetDisplayNameResponse,
    RegisterResponse,
    UpdateDeviceResponse,
    WhoamiError,
    WhoamiResponse,
)

from tests.integration.conftest import MakeClient, MakeServers, Servers

PASSWORD = "correct horse battery"
ALICE = "@alice:test.local"
# m.direct because nio can read it back itself (AsyncClient.list_direct_rooms).
DIRECT = {"@bob:test.local": ["!dm:test.local"]}

async def put_account_data(client: AsyncClient, event_type: str, content: dict[str, Any]) -> None:
    """PUT /user/{userId}/account_data/{type}: nio has no method for it, so this goes
    through nio's own transport (AsyncClient.send) with nio's path builder."""
    path = Api._build_path(["user", client.user_id, "account_data", event_type])
    resp = await client.send("PUT", path, Api.to_json(content),
                             {"Authorization": f"Bearer {client.access_token}",
                              "Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {}


def assert_ok(response: Any, expected: type) -> None:
    assert isinstance(response, expected), response
    assert not isinstance(response, ErrorResponse), response


async def test_account_lifecycle(servers: Servers, nio_client: MakeClient) -> None:
    url = await servers.start()

    # Register: nio sends m.login.dummy straight away, without a UIAA session.
    registering = nio_client(url)
    reg = await registering.register("alice", PASSWORD, device_name="Registration")
    assert_ok(reg, RegisterResponse)
    assert reg.user_id == ALICE
    assert reg.device_id and reg.access_token
    assert (registering.user_id, registering.device_id) == (ALICE, reg.device_id)

    # Log in with a password: a new device, distinct from the registration one.
    alice = nio_client(url, "alice")
    wrong = await alice.login("wrong password")
    assert isinstance(wrong, LoginError), wrong
    assert wrong.status_code == "M_FORBIDDEN"
    login = await alice.login(PASSWORD, device_name="Phone")
    assert_ok(login, LoginResponse)
    assert login.user_id == ALICE
    assert login.device_id and login.device_id != reg.device_id
    assert login.access_token != reg.access_token
    phone = login.device_id

    # Display name: set, then read back by the owner and by an anonymous client.
    assert_ok(await alice.set_displayname("Alice Liddell"), ProfileSetDisplayNameResponse)
    got = await alice.get_displayname()
    assert_ok(got, ProfileGetDisplayNameResponse)
    assert got.displayname == "Alice Liddell"
    got = await nio_client(url).get_displayname(ALICE)
    assert_ok(got, ProfileGetDisplayNameResponse)
    assert got.displayname == "Alice Liddell"

    whoami = await alice.whoami()
    assert_ok(whoami, WhoamiResponse)
    assert (whoami.user_id, whoami.device_id, whoami.is_guest) == (ALICE, phone, False)

    # A second device, renamed through nio's update_device.
    laptop_client = nio_client(url, ALICE)  # full user ID this time
    second = await laptop_client.login(PASSWORD, device_name="Laptop")
    assert_ok(second, LoginResponse)
    laptop = second.device_id
    assert laptop not in (phone, reg.device_id)
    assert_ok(await alice.update_device(laptop, {"display_name": "Work laptop"}),
              UpdateDeviceResponse)

    devices = await alice.devices()
    assert_ok(devices, DevicesResponse)
    assert {d.id: d.display_name for d in devices.devices} == {
        reg.device_id: "Registration", phone: "Phone", laptop: "Work laptop"}

    # Delete the laptop: nio's UIAA dance. The first call gets the 401 challenge...
    challenge = await alice.delete_devices([laptop])
    assert_ok(challenge, DeleteDevicesAuthResponse)
    assert challenge.session
    assert ["m.login.password"] in [flow["stages"] for flow in challenge.flows]
    # ...the second answers it, in the form nio documents (the legacy top-level `user`).
    deleted = await alice.delete_devices([laptop], {
        "type": "m.login.password", "user": "alice", "password": PASSWORD,
        "session": challenge.session})
    assert_ok(deleted, DeleteDevicesResponse)
    rejected = await laptop_client.whoami()
    assert isinstance(rejected, WhoamiError), rejected
    assert rejected.status_code == "M_UNKNOWN_TOKEN"
    devices = await alice.devices()
    assert_ok(devices, DevicesResponse)
    assert {d.id for d in devices.devices} == {reg.device_id, phone}

    # Log out: nio forgets the token; the server must reject it and drop the device.
    old_token = alice.access_token
    assert_ok(await alice.logout(), LogoutResponse)
    assert alice.access_token == ""
    stale = nio_client(url)
    stale.restore_login(ALICE, phone, old_token)
    rejected = await stale.whoami()
    assert isinstance(rejected, WhoamiError), rejected
    assert rejected.status_code == "M_UNKNOWN_TOKEN"
    devices = await registering.devices()
    assert_ok(devices, DevicesResponse)
    assert {d.id for d in devices.devices} == {reg.device_id}

    # nio keeps its device ID across logout, so logging in again asks for the same device.
    again = await alice.login(PASSWORD)
    assert_ok(again, LoginResponse)
    assert again.device_id == phone
    assert again.access_token != old_token


async def test_account_survives_restart(servers: Servers, nio_client: MakeClient) -> None:
    url = await servers.start()
    first = nio_client(url)
    reg = await first.register("alice", PASSWORD, device_name="Registration")
    assert_ok(reg, RegisterResponse)
    assert_ok(await first.set_displayname("Alice"), ProfileSetDisplayNameResponse)
    await put_account_data(first, "m.direct", DIRECT)
    direct = await first.list_direct_rooms()
    assert_ok(direct, DirectRoomsResponse)
    assert direct.rooms == DIRECT
    await servers.stop()

    # A new Homeserver on the same database, on a new port.
    url = await servers.start()
    alice = nio_client(url, "alice")
    login = await alice.login(PASSWORD, device_name="After restart")
    assert_ok(login, LoginResponse)
    assert login.device_id != reg.device_id
    got = await alice.get_displayname()
    assert_ok(got, ProfileGetDisplayNameResponse)
    assert got.displayname == "Alice"
    direct = await alice.list_direct_rooms()
    assert_ok(direct, DirectRoomsResponse)
    assert direct.rooms == DIRECT

    # The token issued before the restart still works.
    old = nio_client(url)
    old.restore_login(ALICE, reg.device_id, reg.access_token)
    whoami = await old.whoami()
    assert_ok(whoami, WhoamiResponse)
    assert (whoami.user_id, whoami.device_id) == (ALICE, reg.device_id)
    devices = await old.devices()
    assert_ok(devices, DevicesResponse)
    assert {d.id: d.display_name for d in devices.devices} == {
        reg.device_id: "Registration", login.device_id: "After restart"}


async def test_devices_without_display_name(servers: Servers, nio_client: MakeClient) -> None:
    url = await servers.start()
    alice = nio_client(url)
    assert_ok(await alice.register("alice", PASSWORD), RegisterResponse)  # no device name
    devices = await alice.devices()
    assert_ok(devices, DevicesResponse)
    assert [(d.id, d.display_name) for d in devices.devices] == [(alice.device_id, None)]


async def test_register_with_token(make_servers: MakeServers, nio_client: MakeClient) -> None:
    url = await make_servers(registration={"policy": "token", "tokens": ["letmein"]}).start()
    alice = nio_client(url)
    reg = await alice.register_with_token("alice", PASSWORD, "letmein")
    assert_ok(reg, RegisterResponse)
    assert reg.user_id == ALICE
