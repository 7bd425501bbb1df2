"""Password login and the session endpoints' service side.

Spec: https://spec.matrix.org/v1.19/client-server-api/#login
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from homeserver.accounts.devices import MAX_DEVICE_ID_LENGTH, new_device_id
from homeserver.accounts.identifiers import requested_user_id
from homeserver.accounts.passwords import Passwords
from homeserver.accounts.tokens import AccessTokens
from homeserver.clock import Clock
from homeserver.errors import (
    BadJson,
    BadRequest,
    InvalidParam,
    MissingParam,
    Unauthorized,
    UserDeactivated,
)
from homeserver.storage.database import Database
from homeserver.storage.devices import DeviceStore
from homeserver.storage.users import UserStore

PASSWORD_LOGIN = "m.login.password"


@attrs.frozen
class LoginResult:
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None = None
    expires_in_ms: int | None = None


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadJson(f"'{key}' must be a string")
    return value


class LoginService:
    def __init__(self, db: Database, users: UserStore, devices: DeviceStore, tokens: AccessTokens,
                 passwords: Passwords, clock: Clock, *, server_name: str):
        self._db = db
        self._users = users
        self._devices = devices
        self._tokens = tokens
        self._passwords = passwords
        self._clock = clock
        self._server_name = server_name
        # Checks, with (user_id, device_id), of a device ID a login names; each may raise.
        # E2EE refuses the dehydrated device's ID (MSC3814): it is no session to resume.
        self.device_id_guards: list[Callable[[str, str], Awaitable[None]]] = []

    def flows(self) -> list[dict[str, Any]]:
        return [{"type": PASSWORD_LOGIN}]

    async def login(self, body: Mapping[str, Any], *, client_ip: str | None) -> LoginResult:
        """POST /login with `m.login.password`."""
        login_type = body.get("type")
        if login_type is None:
            raise MissingParam("Missing 'type'")
        if not isinstance(login_type, str):
            raise BadJson("'type' must be a string")
        if login_type != PASSWORD_LOGIN:
            raise BadRequest(f"Unknown login type {login_type!r}")
        password = body.get("password")
        if password is None:
            raise MissingParam("Missing 'password'")
        if not isinstance(password, str):
            raise BadJson("'password' must be a string")
        device_id = _optional_str(body, "device_id")
        display_name = _optional_str(body, "initial_device_display_name")
        want_refresh = body.get("refresh_token", False)
        if not isinstance(want_refresh, bool):
            raise BadJson("'refresh_token' must be a boolean")
        if device_id is not None and not 0 < len(device_id) <= MAX_DEVICE_ID_LENGTH:
            raise InvalidParam("Invalid device_id")

        user_id = requested_user_id(body, self._server_name)
        user = await self._users.get(self._db, user_id)
        if user is not None and user.deactivated:
            raise UserDeactivated("This account has been deactivated")
        if not await self._passwords.verify(user.password_hash if user else None, password):
            raise Unauthorized("Invalid username or password")
        assert user is not None and user.password_hash is not None
        return await self._start_session(user_id, user.password_hash, password, device_id,
                                         display_name, want_refresh, client_ip)

    async def _start_session(self, user_id: str, password_hash: str, password: str,
                             device_id: str | None, display_name: str | None,
                             want_refresh: bool, client_ip: str | None) -> LoginResult:
        if device_id is not None:
            for guard in self.device_id_guards:
                await guard(user_id, device_id)
        new_hash = await self._passwords.hash(password) if self._passwords.needs_rehash(password_hash) else None
        if device_id is not None and await self._devices.get(self._db, user_id, device_id):
            # Logging in again on a known device replaces its session (spec: "the server
            # may invalidate any access token previously associated with that device").
            await self._tokens.revoke_devices(user_id, [device_id], delete_devices=False)
        device_id = device_id or new_device_id()
        async with self._db.transaction() as conn:
            if new_hash is not None:
                await self._users.set_password_hash(conn, user_id, new_hash)
            await self._devices.upsert(conn, user_id, device_id, display_name=display_name,
                                       now_ms=self._clock.time_ms(), ip=client_ip)
            issued = await self._tokens.issue(conn, user_id, device_id, with_refresh=want_refresh)
        return LoginResult(user_id=user_id, device_id=device_id, access_token=issued.access_token,
                           refresh_token=issued.refresh_token, expires_in_ms=issued.expires_in_ms)
