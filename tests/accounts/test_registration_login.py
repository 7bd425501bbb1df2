"""Registration (service and CLI path), login and account management."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.accounts.uiaa import DUMMY, PASSWORD
from homeserver.errors import (
    BadRequest,
    Forbidden,
    GuestAccessForbidden,
    InteractiveAuthRequired,
    InvalidUsername,
    MissingParam,
    Unauthorized,
    UnknownToken,
    UserDeactivated,
    UserInUse,
    WeakPassword,
)
from tests.accounts.conftest import Services, build_services

ALICE = "@alice:test.local"


def _api(**kw: Any) -> dict[str, Any]:
    base = {"kind": "user", "username": "alice", "password": "password123", "auth": None,
            "device_id": None, "initial_device_display_name": None, "inhibit_login": False,
            "refresh_token": False, "client_ip": "127.0.0.1"}
    return {**base, **kw}


async def test_register_user_for_cli(services: Services) -> None:
    result = await services.registration.register_user("admin", "password123", admin=True,
                                                       inhibit_login=True)
    assert result.user_id == "@admin:test.local" and result.access_token is None
    user = await services.users.get(services.db, "@admin:test.local")
    assert user is not None and user.is_admin
    assert await services.profiles.get_profile("@admin:test.local") == {"displayname": "admin"}


@pytest.mark.parametrize("localpart", ["", "_bridge", "12345", "a:b", "with space", "é", "x" * 300])
async def test_invalid_localparts(services: Services, localpart: str) -> None:
    with pytest.raises(InvalidUsername):
        await services.registration.register_user(localpart, "password123")


async def test_uppercase_is_mapped_to_lowercase(services: Services) -> None:
    result = await services.registration.register_user("Alice", "password123", inhibit_login=True)
    assert result.user_id == ALICE


async def test_user_in_use_and_weak_password(services: Services) -> None:
    await services.registration.register_user("alice", "password123")
    with pytest.raises(UserInUse):
        await services.registration.register_user("alice", "password123")
    with pytest.raises(UserInUse):
        await services.registration.check_available("ALICE")
    with pytest.raises(WeakPassword):
        await services.registration.register_user("bob", "short")


async def test_api_registration_runs_uiaa_after_checks(services: Services) -> None:
    await services.registration.register_user("taken", "password123")
    with pytest.raises(UserInUse):  # before UIAA, as the spec requires
        await services.registration.register(**_api(username="taken"))
    with pytest.raises(InteractiveAuthRequired) as e:
        await services.registration.register(**_api())
    assert e.value.body["flows"] == [{"stages": [DUMMY]}]
    session = e.value.body["session"]
    result = await services.registration.register(
        **_api(auth={"type": DUMMY, "session": session}, device_id="MYDEV", refresh_token=True))
    assert result.user_id == ALICE and result.device_id == "MYDEV" and result.refresh_token


async def test_api_registration_policies(database, clock) -> None:
    disabled = build_services(database, clock, policy="disabled")
    with pytest.raises(Forbidden):
        await disabled.registration.register(**_api())
    with pytest.raises(GuestAccessForbidden):
        await disabled.registration.register(**_api(kind="guest"))
    guests = build_services(database, clock, guest_access=True)
    guest = await guests.registration.register(**_api(kind="guest", username="ignored"))
    assert guest.user_id != ALICE and guest.access_token
    requester = await guests.tokens.authenticate(guest.access_token)
    assert requester.is_guest
    token = build_services(database, clock, policy="token", tokens=("let-me-in",))
    with pytest.raises(InteractiveAuthRequired) as e:
        await token.registration.register(**_api(auth={"type": "m.login.registration_token",
                                                       "token": "wrong"}))
    assert e.value.body["errcode"] == "M_FORBIDDEN"
    session = e.value.body["session"]
    with pytest.raises(InteractiveAuthRequired) as e:
        await token.registration.register(
            **_api(auth={"type": "m.login.registration_token", "token": "let-me-in", "session": session}))
    assert e.value.body["completed"] == ["m.login.registration_token"]
    result = await token.registration.register(**_api(auth={"type": DUMMY, "session": session}))
    assert result.user_id == ALICE


async def test_password_required_after_uiaa(services: Services) -> None:
    with pytest.raises(MissingParam):
        await services.registration.register(**_api(password=None, auth={"type": DUMMY}))


async def test_login_variants(services: Services) -> None:
    await services.registration.register_user("alice", "password123")
    for ident in ({"user": "alice"}, {"user": ALICE}, {"user": "ALICE"},
                  {"identifier": {"type": "m.id.user", "user": "alice"}}):
        result = await services.login.login({"type": "m.login.password", "password": "password123",
                                             **ident}, client_ip=None)
        assert result.user_id == ALICE
    with pytest.raises(Unauthorized):
        await services.login.login({"type": "m.login.password", "user": "alice", "password": "nope"},
                                   client_ip=None)
    with pytest.raises(Unauthorized):
        await services.login.login({"type": "m.login.password", "user": "nobody", "password": "x"},
                                   client_ip=None)
    with pytest.raises(Unauthorized):
        await services.login.login({"type": "m.login.password", "user": "@alice:elsewhere.org",
                                    "password": "password123"}, client_ip=None)
    with pytest.raises(BadRequest):
        await services.login.login({"type": "m.login.token", "token": "x"}, client_ip=None)


async def test_login_on_known_device_replaces_its_token(services: Services) -> None:
    await services.registration.register_user("alice", "password123")
    body = {"type": "m.login.password", "user": "alice", "password": "password123",
            "device_id": "DEV", "initial_device_display_name": "Laptop"}
    first = await services.login.login(body, client_ip="10.0.0.1")
    second = await services.login.login({**body, "initial_device_display_name": "Ignored"},
                                        client_ip=None)
    with pytest.raises(UnknownToken):
        await services.tokens.authenticate(first.access_token)
    assert (await services.tokens.authenticate(second.access_token)).device_id == "DEV"
    device = await services.devices.get(ALICE, "DEV")
    assert device.display_name == "Laptop" and device.last_seen_ip == "10.0.0.1"


async def test_change_password_and_deactivate(services: Services) -> None:
    reg = await services.registration.register_user("alice", "password123", device_id="ONE")
    other = await services.login.login({"type": "m.login.password", "user": "alice",
                                        "password": "password123"}, client_ip=None)
    me = await services.tokens.authenticate(reg.access_token or "")
    auth = {"type": PASSWORD, "user": "alice", "password": "password123"}
    await services.accounts.change_password(me, "new-password-1", logout_devices=True, auth=auth)
    await services.tokens.authenticate(reg.access_token or "")  # our own session survives
    with pytest.raises(UnknownToken):
        await services.tokens.authenticate(other.access_token)
    with pytest.raises(Unauthorized):
        await services.login.login({"type": "m.login.password", "user": "alice",
                                    "password": "password123"}, client_ip=None)
    # Without an access token, the password stage names the account.
    await services.accounts.deactivate(None, {"type": PASSWORD, "user": "alice",
                                              "password": "new-password-1"}, erase=False)
    with pytest.raises(UnknownToken):
        await services.tokens.authenticate(reg.access_token or "")
    with pytest.raises(UserDeactivated):
        await services.login.login({"type": "m.login.password", "user": "alice",
                                    "password": "new-password-1"}, client_ip=None)
    with pytest.raises(UserInUse):
        await services.registration.register_user("alice", "password123")
