"""The composition root: the only place that builds services and wires adapters to them."""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from client_api.account import Account
from client_api.account_data import AccountDataApi
from client_api.devices import DeviceManagement
from client_api.discovery import Discovery
from client_api.filters import Filters
from client_api.login import Login
from client_api.profile import Profile
from client_api.registrar import Registrar, create_app
from client_api.registration import Registration
from client_api.room_directory import RoomDirectoryApi
from client_api.rooms import Rooms
from client_api.search import Search
from client_api.user_directory import UserDirectoryApi
from federation.app import build_federation_app
from homeserver.accounts.account import AccountManagement
from homeserver.accounts.account_data import AccountData
from homeserver.accounts.devices import Devices
from homeserver.accounts.login import LoginService
from homeserver.accounts.passwords import Passwords
from homeserver.accounts.profiles import Profiles
from homeserver.accounts.registration import RegistrationService
from homeserver.accounts.tokens import AccessTokens
from homeserver.accounts.uiaa import InteractiveAuth
from homeserver.accounts.user_directory import UserDirectory
from homeserver.clock import Clock
from homeserver.config import Config, ListenerConfig
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.directory import RoomDirectory
from homeserver.rooms.service import RoomService
from homeserver.search.context import ContextLoader
from homeserver.search.indexer import SearchIndexer
from homeserver.search.room_events import RoomEventSearch
from homeserver.signing_key import load_signing_key
from homeserver.storage.access_tokens import AccessTokenStore
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import create_database
from homeserver.storage.devices import DeviceStore
from homeserver.storage.filters import FilterStore
from homeserver.storage.migrations import apply_migrations
from homeserver.storage.profiles import ProfileStore
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.room_directory import RoomDirectoryStore
from homeserver.storage.search import SearchStore
from homeserver.storage.uiaa_sessions import UiaaSessionStore
from homeserver.storage.user_directory import UserDirectoryStore
from homeserver.storage.users import UserStore
from homeserver.sync.filter_service import FilterService
from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)


class Homeserver:
    def __init__(self, config: Config, *, clock: Clock | None = None):
        self.config = config
        self.clock = clock or Clock()
        self.signing_key = load_signing_key(config.signing_key_path)
        db = config.database
        self.db = create_database(db.engine, path=db.path, dsn=db.dsn, pool_size=db.pool_size)
        self.rate_limiter = RateLimiter(config.rate_limits, self.clock)
        self._build_accounts()
        self._build_rooms()
        self._build_sync()
        self._build_directories_and_search()
        self._runners: list[web.AppRunner] = []

    def _build_accounts(self) -> None:
        """Accounts and auth: stores, then the services over them."""
        config, db, clock = self.config, self.db, self.clock
        self.users_store = UserStore()
        self.devices_store = DeviceStore()
        self.profiles_store = ProfileStore()
        self.account_data_store = AccountDataStore()
        self.registration_tokens_store = RegistrationTokenStore()
        auth = config.auth
        self.passwords = Passwords(time_cost=auth.password_hash_time_cost,
                                   memory_kib=auth.password_hash_memory_kib,
                                   parallelism=auth.password_hash_parallelism)
        self.authenticator = AccessTokens(db, AccessTokenStore(), self.devices_store, clock,
                                          access_token_lifetime_ms=auth.access_token_lifetime_ms)
        self.uiaa = InteractiveAuth(db, UiaaSessionStore(), self.users_store,
                                    self.registration_tokens_store, self.passwords, clock,
                                    server_name=config.server_name,
                                    session_lifetime_ms=auth.uiaa_session_lifetime_ms,
                                    config_tokens=config.registration.tokens)
        self.registration = RegistrationService(
            db, self.users_store, self.devices_store, self.profiles_store, self.authenticator,
            self.uiaa, self.passwords, clock, server_name=config.server_name,
            config=config.registration)
        self.login = LoginService(db, self.users_store, self.devices_store, self.authenticator,
                                  self.passwords, clock, server_name=config.server_name)
        self.devices = Devices(db, self.devices_store, self.authenticator, self.uiaa)
        self.accounts = AccountManagement(db, self.users_store, self.profiles_store,
                                          self.account_data_store, self.authenticator, self.uiaa,
                                          self.passwords, self.registration)
        self.profiles = Profiles(db, self.profiles_store, self.users_store,
                                 server_name=config.server_name)
        self.account_data = AccountData(db, self.account_data_store)

    def _build_rooms(self) -> None:
        """The room service and its one persistence path; listeners (the sync notifier,
        push, federation) subscribe with `self.rooms.add_event_listener`."""
        self.rooms = RoomService(self.db, server_name=self.config.server_name,
                                 signing_key=self.signing_key, clock=self.clock,
                                 profile_lookup=self.profiles.get_profile)

    def _build_sync(self) -> None:
        """Sync building blocks that need nothing from rooms. Typing, receipts and presence
        join once the rooms service can supply their Membership/EventLocator ports."""
        self.notifier = Notifier()
        self.filters = FilterService(self.db, FilterStore())

    def _build_directories_and_search(self) -> None:
        """Room and user directories, and full-text search with its after-commit indexer."""
        rooms = self.rooms
        self.room_directory = RoomDirectory(self.db, rooms.stores, RoomDirectoryStore(), rooms.access,
                                            rooms.loader, server_name=self.config.server_name)
        self.user_directory = UserDirectory(self.db, UserDirectoryStore(), rooms.stores.memberships)
        search_store = SearchStore()
        self.search_indexer = SearchIndexer(self.db, search_store, rooms.stores, rooms.loader)
        rooms.add_event_listener(self.search_indexer.on_event_persisted)
        self.room_event_search = RoomEventSearch(
            self.db, search_store, rooms.stores, rooms.loader, rooms.visibility,
            ContextLoader(rooms.stores, rooms.loader, rooms.visibility))

    async def open(self) -> None:
        """Open the database and apply pending migrations."""
        await self.db.open()
        applied = await apply_migrations(self.db, now_ms=self.clock.time_ms())
        if applied:
            logger.info("applied migrations %s", applied)
        # Events committed but not indexed when the last process stopped.
        indexed = await self.search_indexer.catch_up()
        if indexed:
            logger.info("search index caught up over %d events", indexed)

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self.db.close()

    def client_app(self) -> web.Application:
        """The client-server API (/_matrix/client/*) and /.well-known/matrix/*."""
        app = create_app(self.config.max_request_body_bytes)
        registrar = Registrar(self.authenticator, self.rate_limiter, self.config.max_request_body_bytes)
        discovery = Discovery(self.config)
        registrar.add_routes(app, discovery.endpoints())
        registrar.add_routes(app, discovery.wellknown_endpoints(), prefix="/.well-known/matrix")
        self._add_account_routes(app, registrar)
        registrar.add_routes(app, Filters(self.filters).endpoints())
        registrar.add_routes(app, Rooms(self.rooms).endpoints())
        registrar.add_routes(app, RoomDirectoryApi(self.room_directory).endpoints())
        registrar.add_routes(app, UserDirectoryApi(self.user_directory).endpoints())
        registrar.add_routes(app, Search(self.room_event_search).endpoints())
        return app

    def _add_account_routes(self, app: web.Application, registrar: Registrar) -> None:
        config = self.config
        for endpoints in (
            Registration(self.registration, self.uiaa, server_name=config.server_name,
                         policy=config.registration.policy).endpoints(),
            Login(self.login, self.authenticator, server_name=config.server_name,
                  public_baseurl=config.public_baseurl).endpoints(),
            Account(self.accounts).endpoints(),
            DeviceManagement(self.devices, self.accounts).endpoints(),
            Profile(self.profiles).endpoints(),
            AccountDataApi(self.account_data).endpoints(),
        ):
            registrar.add_routes(app, endpoints)

    def federation_app(self) -> web.Application:
        """The server-server API (/_matrix/federation/*, /_matrix/key/*)."""
        return build_federation_app(self.config.server_name, self.signing_key, self.clock,
                                    self.config.max_request_body_bytes)

    async def start(self) -> None:
        """Start the listeners (after open())."""
        client = self.config.client_listener
        await self._listen(self.client_app(), client)
        logger.info("client API listening on %s://%s:%d",
                    "https" if client.tls_cert_path else "http", client.bind, client.port)
        federation = self.config.federation_listener
        if federation is not None:
            await self._listen(self.federation_app(), federation)
            logger.info("federation API listening on %s://%s:%d",
                        "https" if federation.tls_cert_path else "http", federation.bind,
                        federation.port)

    async def _listen(self, app: web.Application, listener: ListenerConfig) -> None:
        ssl_context = None
        if listener.tls_cert_path and listener.tls_key_path:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(listener.tls_cert_path, listener.tls_key_path)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        # Registered before start() so that close() cleans up a half-started listener too.
        self._runners.append(runner)
        site = web.TCPSite(runner, listener.bind, listener.port, ssl_context=ssl_context)
        await site.start()


async def run(config: Config, stop: asyncio.Event) -> None:
    """Open the homeserver, serve until `stop` is set, then close it."""
    hs = Homeserver(config)
    await hs.open()
    try:
        await hs.start()
        await stop.wait()
    finally:
        await hs.close()
