"""Account services built directly over the `database` fixture (both engines)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from homeserver.accounts.account import AccountManagement
from homeserver.accounts.account_data import AccountData
from homeserver.accounts.devices import Devices
from homeserver.accounts.login import LoginService
from homeserver.accounts.passwords import Passwords
from homeserver.accounts.profiles import Profiles
from homeserver.accounts.registration import RegistrationService
from homeserver.accounts.tokens import AccessTokens
from homeserver.accounts.uiaa import InteractiveAuth
from homeserver.clock import FakeClock
from homeserver.config import RegistrationConfig
from homeserver.storage.access_tokens import AccessTokenStore
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Database
from homeserver.storage.devices import DeviceStore
from homeserver.storage.profiles import ProfileStore
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.uiaa_sessions import UiaaSessionStore
from homeserver.storage.users import UserStore

SERVER = "test.local"
TOKEN_LIFETIME_MS = 60_000
UIAA_LIFETIME_MS = 600_000


def cheap_passwords() -> Passwords:
    # Real argon2id, minimal cost: the tests check behaviour, not hardness.
    return Passwords(time_cost=1, memory_kib=64, parallelism=1)


@attrs.define
class Services:
    db: Database
    clock: FakeClock
    users: UserStore
    devices_store: DeviceStore
    token_store: AccessTokenStore
    reg_tokens: RegistrationTokenStore
    tokens: AccessTokens
    uiaa: InteractiveAuth
    registration: RegistrationService
    login: LoginService
    devices: Devices
    accounts: AccountManagement
    profiles: Profiles
    account_data: AccountData


def build_services(db: Database, clock: FakeClock, **registration: Any) -> Services:
    users, devices_store, profiles = UserStore(), DeviceStore(), ProfileStore()
    token_store, reg_tokens, ad_store = AccessTokenStore(), RegistrationTokenStore(), AccountDataStore()
    passwords = cheap_passwords()
    reg_config = RegistrationConfig(**{"policy": "open", **registration})
    tokens = AccessTokens(db, token_store, devices_store, clock,
                          access_token_lifetime_ms=TOKEN_LIFETIME_MS, cache_size=100)
    uiaa = InteractiveAuth(db, UiaaSessionStore(), users, reg_tokens, passwords, clock,
                           server_name=SERVER, session_lifetime_ms=UIAA_LIFETIME_MS,
                           config_tokens=reg_config.tokens)
    reg = RegistrationService(db, users, devices_store, profiles, tokens, uiaa, passwords, clock,
                              server_name=SERVER, config=reg_config)
    return Services(
        db=db, clock=clock, users=users, devices_store=devices_store, token_store=token_store,
        reg_tokens=reg_tokens, tokens=tokens, uiaa=uiaa, registration=reg,
        login=LoginService(db, users, devices_store, tokens, passwords, clock, server_name=SERVER),
        devices=Devices(db, devices_store, tokens, uiaa),
        accounts=AccountManagement(db, users, profiles, ad_store, tokens, uiaa, passwords, reg),
        profiles=Profiles(db, profiles, users, server_name=SERVER),
        account_data=AccountData(db, ad_store),
    )


@pytest.fixture
def services(database: Database, clock: FakeClock) -> Services:
    return build_services(database, clock)
