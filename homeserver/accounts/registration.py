"""Account registration: the policy, user ID rules and creating the account.

Spec: https://spec.matrix.org/v1.19/client-server-api/#account-registration
`register_user` creates an account without looking at the registration policy (the
`register-user` CLI uses it); `register` is the client API path, policy and UIAA included.
"""

from __future__ import annotations

import re
import secrets

import attrs

from homeserver.accounts.devices import MAX_DEVICE_ID_LENGTH, new_device_id
from homeserver.accounts.passwords import Passwords
from homeserver.accounts.tokens import AccessTokens
from homeserver.accounts.uiaa import DUMMY, REGISTRATION_TOKEN, InteractiveAuth, UiaaResult
from homeserver.clock import Clock
from homeserver.config import RegistrationConfig
from homeserver.errors import (
    Forbidden,
    GuestAccessForbidden,
    InvalidParam,
    InvalidUsername,
    MissingParam,
    UserInUse,
    WeakPassword,
)
from homeserver.storage.database import Database
from homeserver.storage.devices import DeviceStore
from homeserver.storage.profiles import ProfileStore
from homeserver.storage.users import UserStore
from homeserver.types import MAX_ID_LENGTH, is_valid_localpart

# Long enough for any passphrase; bounds the work a single request can make argon2 do.
MAX_PASSWORD_LENGTH = 1024
_ALL_DIGITS = re.compile(r"^[0-9]+$")


@attrs.frozen
class RegisterResult:
    user_id: str
    device_id: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    expires_in_ms: int | None = None


class RegistrationService:
    def __init__(self, db: Database, users: UserStore, devices: DeviceStore, profiles: ProfileStore,
                 tokens: AccessTokens, uiaa: InteractiveAuth, passwords: Passwords, clock: Clock,
                 *, server_name: str, config: RegistrationConfig):
        self._db = db
        self._users = users
        self._devices = devices
        self._profiles = profiles
        self._tokens = tokens
        self._uiaa = uiaa
        self._passwords = passwords
        self._clock = clock
        self._server_name = server_name
        self._config = config

    def flows(self) -> list[list[str]]:
        if self._config.policy == "token":
            # The trailing dummy stage matches Synapse's flow, which clients such as
            # matrix-nio rely on: they expect a 401 after the token stage.
            return [[REGISTRATION_TOKEN, DUMMY]]
        if self._config.policy == "open":
            return [[DUMMY]]
        return []

    def user_id_for(self, localpart: str) -> str:
        """The user ID for a requested user name, or M_INVALID_USERNAME.

        Upper case is mapped to lower case (the spec lets servers map user names onto
        the grammar); a leading `_` is reserved for application services and all-digit
        localparts for guests."""
        localpart = localpart.lower()
        user_id = f"@{localpart}:{self._server_name}"
        if not localpart or not is_valid_localpart(localpart, strict=True):
            raise InvalidUsername("User ID can only contain characters a-z, 0-9, or '=_-./+'")
        if localpart.startswith("_") or _ALL_DIGITS.match(localpart):
            raise InvalidUsername("User ID may not begin with '_' or be all digits")
        if len(user_id.encode()) > MAX_ID_LENGTH:
            raise InvalidUsername("User ID is too long")
        return user_id

    async def check_available(self, localpart: str) -> str:
        """GET /register/available: valid and free, or the reason why not."""
        user_id = self.user_id_for(localpart)
        if await self._users.exists(self._db, user_id):
            raise UserInUse("User ID already taken")
        return user_id

    def check_password(self, password: str) -> None:
        if len(password) < self._config.password_min_length:
            raise WeakPassword(f"Password must be at least {self._config.password_min_length} characters")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidParam(f"Password must be at most {MAX_PASSWORD_LENGTH} characters")

    async def register(self, *, kind: str, username: str | None, password: str | None,
                       auth: object, device_id: str | None, initial_device_display_name: str | None,
                       inhibit_login: bool, refresh_token: bool, client_ip: str | None) -> RegisterResult:
        """POST /register: policy, checks before UIAA (as the spec requires), UIAA, create."""
        if kind == "guest":
            if not self._config.guest_access:
                raise GuestAccessForbidden("Guest access is disabled")
            # The spec says to ignore everything but the display name for guests.
            return await self.register_user(
                str(secrets.randbits(48)), None, is_guest=True,
                initial_device_display_name=initial_device_display_name, client_ip=client_ip)
        if kind != "user":
            raise InvalidParam("'kind' must be 'user' or 'guest'")
        if self._config.policy == "disabled":
            raise Forbidden("Registration is disabled")
        if username is not None:
            await self.check_available(username)
        if password is not None:
            self.check_password(password)
        result = await self._uiaa.authenticate(auth, flows=self.flows(), operation="register",
                                               user_id=None, params={"username": username})
        if password is None:
            raise MissingParam("Missing 'password'")
        localpart = username if username is not None else "u" + secrets.token_hex(6)
        return await self.register_user(
            localpart, password, device_id=device_id, inhibit_login=inhibit_login,
            initial_device_display_name=initial_device_display_name, refresh_token=refresh_token,
            client_ip=client_ip, uiaa_result=result)

    async def register_user(self, localpart: str, password: str | None, *, admin: bool = False,
                            device_id: str | None = None,
                            initial_device_display_name: str | None = None,
                            inhibit_login: bool = False, refresh_token: bool = False,
                            is_guest: bool = False, client_ip: str | None = None,
                            uiaa_result: UiaaResult | None = None) -> RegisterResult:
        """Create an account (and, unless inhibit_login, a device and tokens)."""
        user_id = self.user_id_for(localpart) if not is_guest else f"@{localpart}:{self._server_name}"
        if password is not None:
            self.check_password(password)
        if device_id is not None and not 0 < len(device_id) <= MAX_DEVICE_ID_LENGTH:
            raise InvalidParam("Invalid device_id")
        password_hash = await self._passwords.hash(password) if password is not None else None
        now = self._clock.time_ms()
        async with self._db.transaction() as conn:
            if not await self._users.create(conn, user_id, password_hash, created_ts=now,
                                            is_admin=admin, is_guest=is_guest):
                raise UserInUse("User ID already taken")
            await self._profiles.set_field(conn, user_id, "displayname", user_id[1:].split(":")[0])
            if uiaa_result is not None:
                await self._uiaa.finish(conn, uiaa_result)
            if inhibit_login:
                return RegisterResult(user_id=user_id)
            device_id = device_id or new_device_id()
            await self._devices.upsert(conn, user_id, device_id, display_name=initial_device_display_name,
                                       now_ms=now, ip=client_ip)
            issued = await self._tokens.issue(conn, user_id, device_id, with_refresh=refresh_token)
        return RegisterResult(user_id=user_id, device_id=device_id, access_token=issued.access_token,
                              refresh_token=issued.refresh_token, expires_in_ms=issued.expires_in_ms)
