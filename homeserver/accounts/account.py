"""Password changes and account deactivation, both behind UIAA.

Spec: https://spec.matrix.org/v1.19/client-server-api/#account-management
Both work with or without an access token: with one, the password stage must prove
that same account; without one, the password stage names the account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.accounts.passwords import Passwords
from homeserver.accounts.registration import RegistrationService
from homeserver.accounts.requester import Requester
from homeserver.accounts.tokens import AccessTokens
from homeserver.accounts.uiaa import PASSWORD, InteractiveAuth, UiaaResult
from homeserver.errors import Forbidden
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Connection, Database
from homeserver.storage.profiles import ProfileStore
from homeserver.storage.users import UserStore

USER_FLOWS = [[PASSWORD]]


class AccountManagement:
    def __init__(self, db: Database, users: UserStore, profiles: ProfileStore,
                 account_data: AccountDataStore, tokens: AccessTokens, uiaa: InteractiveAuth,
                 passwords: Passwords, registration: RegistrationService):
        self._db = db
        self._users = users
        self._profiles = profiles
        self._account_data = account_data
        self._tokens = tokens
        self._uiaa = uiaa
        self._passwords = passwords
        self._registration = registration
        # E2EE registers here without this module knowing about it: writers run inside
        # the deactivation transaction with (conn, user_id), so the account's keys go in
        # the same commit that deactivates it; listeners run after the commit.
        self.deactivation_writers: list[Callable[[Connection, str], Awaitable[None]]] = []
        self.on_deactivated: list[Callable[[str], Awaitable[None]]] = []

    async def authenticate_user(self, requester: Requester | None, auth: Any, *,
                                operation: str, params: Any = None) -> tuple[str, UiaaResult]:
        """UIAA with a password stage; returns the account it proved."""
        if requester is not None and requester.is_guest:
            raise Forbidden("Guest accounts cannot do this")
        result = await self._uiaa.authenticate(
            auth, flows=USER_FLOWS, operation=operation,
            user_id=requester.user_id if requester else None, params=params)
        user_id = requester.user_id if requester else result.user_id
        if user_id is None:
            raise Forbidden("No account was authenticated")
        return user_id, result

    async def change_password(self, requester: Requester | None, new_password: str, *,
                              logout_devices: bool, auth: Any) -> None:
        """POST /account/password. Other sessions go when logout_devices is true; the
        requesting session never does (spec: SHOULD NOT revoke the token provided)."""
        self._registration.check_password(new_password)
        user_id, result = await self.authenticate_user(requester, auth, operation="password")
        new_hash = await self._passwords.hash(new_password)
        async with self._db.transaction() as conn:
            await self._users.set_password_hash(conn, user_id, new_hash)
            await self._uiaa.finish(conn, result)
        if logout_devices:
            keep = requester.device_id if requester else None
            await self._tokens.revoke_all(user_id, except_device=keep, delete_devices=True)

    async def deactivate(self, requester: Requester | None, auth: Any, *, erase: bool) -> None:
        """POST /account/deactivate: no more logins; all sessions and devices go.

        The profile is cleared so the account stops showing a name; with `erase`, the
        account data goes too (spec: erase "any non-event data")."""
        user_id, result = await self.authenticate_user(requester, auth, operation="deactivate")
        async with self._db.transaction() as conn:
            await self._users.deactivate(conn, user_id)
            await self._profiles.delete_all(conn, user_id)
            if erase:
                await self._account_data.delete_all(conn, user_id)
            for writer in self.deactivation_writers:
                await writer(conn, user_id)
            await self._uiaa.finish(conn, result)
        await self._tokens.revoke_all(user_id, delete_devices=True)
        for listener in self.on_deactivated:
            await listener(user_id)
