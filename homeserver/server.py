"""The composition root: the only place that builds services and wires adapters to them."""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl

from aiohttp import web

from client_api.account import Account
from client_api.account_data import AccountDataApi
from client_api.dehydrated_devices import DehydratedDevicesApi
from client_api.devices import DeviceManagement
from client_api.discovery import Discovery
from client_api.filters import Filters
from client_api.key_backup import KeyBackupApi
from client_api.keys import Keys
from client_api.login import Login
from client_api.messages import Messages
from client_api.presence import Presence
from client_api.profile import Profile
from client_api.push_rules import PushRulesApi
from client_api.pushers import PushersApi
from client_api.receipts import Receipts
from client_api.registrar import CLIENT_PREFIX, Registrar, create_app
from client_api.registration import Registration
from client_api.relations import Relations
from client_api.room_directory import RoomDirectoryApi
from client_api.rooms import Rooms
from client_api.search import Search
from client_api.spaces import Spaces
from client_api.sync import Sync
from client_api.sync_ws import PATH as SYNC_STREAM_PATH
from client_api.sync_ws import SyncStream
from client_api.tags import Tags
from client_api.to_device import ToDeviceApi
from client_api.typing import Typing
from client_api.user_directory import UserDirectoryApi
from federation.app import build_federation_app
from homeserver.accounts.account import AccountManagement
from homeserver.accounts.account_data import AccountData
from homeserver.accounts.devices import Devices
from homeserver.accounts.login import LoginService
from homeserver.accounts.passwords import Passwords
from homeserver.accounts.profiles import Profiles
from homeserver.accounts.registration import RegistrationService
from homeserver.accounts.tags import RoomTags
from homeserver.accounts.tokens import AccessTokens
from homeserver.accounts.uiaa import InteractiveAuth
from homeserver.accounts.user_directory import UserDirectory
from homeserver.clock import Clock
from homeserver.config import Config, ListenerConfig
from homeserver.e2e.cross_signing import CrossSigning
from homeserver.e2e.deactivation import E2eDeactivation
from homeserver.e2e.dehydrated_devices import DehydratedDevices
from homeserver.e2e.device_keys import DeviceKeys
from homeserver.e2e.device_lists import DeviceLists
from homeserver.e2e.key_backup import KeyBackup
from homeserver.e2e.key_query import KeyQueries
from homeserver.e2e.to_device import ToDevice
from homeserver.push.bulk_evaluator import BulkPushEvaluator
from homeserver.push.counts import NotificationCounts
from homeserver.push.event_details import EventDetails
from homeserver.push.gateway_http import AiohttpGatewayClient
from homeserver.push.pushers import Pushers
from homeserver.push.rules_service import PushRules
from homeserver.push.sender import PushSender
from homeserver.push.vapid import VapidKey
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.directory import RoomDirectory
from homeserver.rooms.hierarchy import SpaceHierarchy
from homeserver.rooms.service import RoomService
from homeserver.rooms.space_summary import SpaceSummaries
from homeserver.search.context import ContextLoader
from homeserver.search.indexer import SearchIndexer
from homeserver.search.room_events import RoomEventSearch
from homeserver.signing_key import load_signing_key
from homeserver.storage.access_tokens import AccessTokenStore
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.cross_signing import CrossSigningStore
from homeserver.storage.database import create_database
from homeserver.storage.dehydrated_devices import DehydratedDeviceStore
from homeserver.storage.device_lists import DeviceListStore
from homeserver.storage.devices import DeviceStore
from homeserver.storage.e2e_deactivation import E2eDeactivationStore
from homeserver.storage.e2e_keys import E2eKeyStore
from homeserver.storage.filters import FilterStore
from homeserver.storage.key_backup import KeyBackupStore
from homeserver.storage.media import MediaStore
from homeserver.storage.migrations import apply_migrations
from homeserver.storage.notifications import NotificationStore
from homeserver.storage.presence import PresenceStore
from homeserver.storage.profiles import ProfileStore
from homeserver.storage.push_queue import PushQueueStore
from homeserver.storage.push_rules import PushRuleStore
from homeserver.storage.pushers import PusherStore
from homeserver.storage.receipts import ReceiptStore
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.room_directory import RoomDirectoryStore
from homeserver.storage.search import SearchStore
from homeserver.storage.sync_queries import SyncQueries
from homeserver.storage.to_device import ToDeviceStore
from homeserver.storage.uiaa_sessions import UiaaSessionStore
from homeserver.storage.user_directory import UserDirectoryStore
from homeserver.storage.users import UserStore
from homeserver.sync.e2e_sync import E2eSync
from homeserver.sync.filter_service import FilterService
from homeserver.sync.local_batches import LocalBatches
from homeserver.sync.notifier import Notifier
from homeserver.sync.presence import PresenceService
from homeserver.sync.receipts import ReceiptService
from homeserver.sync.sync_extras import SyncExtras
from homeserver.sync.sync_service import SyncService, UnreadCounts, room_event_listener
from homeserver.sync.timers import LoopScheduler, Scheduler
from homeserver.sync.tokens import ACCOUNT_DATA
from homeserver.sync.typing import TypingService
from media_repo.download_api import MediaDownloads
from media_repo.filestore import FileStore
from media_repo.preview_api import UrlPreviewApi
from media_repo.repository import MediaRepository
from media_repo.thumbnailer import Thumbnailer
from media_repo.thumbnails import Thumbnails
from media_repo.upload_api import MediaUploads
from media_repo.url_fetch import UrlFetcher
from media_repo.url_preview import UrlPreviewer

logger = logging.getLogger(__name__)


class Homeserver:
    def __init__(self, config: Config, *, clock: Clock | None = None,
                 scheduler: Scheduler | None = None, unread_counts: UnreadCounts | None = None):
        self.config = config
        self.clock = clock or Clock()
        self.scheduler = scheduler or LoopScheduler()
        self._unread_counts = unread_counts
        self.signing_key = load_signing_key(config.signing_key_path)
        db = config.database
        self.db = create_database(db.engine, path=db.path, dsn=db.dsn, pool_size=db.pool_size)
        self.rate_limiter = RateLimiter(config.rate_limits, self.clock)
        self._build_accounts()
        self._build_rooms()
        self._build_sync()
        self._build_directories_and_search()
        self._build_spaces_and_tags()
        self._build_e2e()
        self._build_push()
        self._build_sync_service()
        self._build_media()
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
        self.account_data = AccountData(db, self.account_data_store,
                                        on_change=self._account_data_changed)

    def _build_rooms(self) -> None:
        """The room service and its one persistence path; listeners (the sync notifier,
        push, federation) subscribe with `self.rooms.add_event_listener`."""
        self.rooms = RoomService(self.db, server_name=self.config.server_name,
                                 signing_key=self.signing_key, clock=self.clock,
                                 profile_lookup=self.profiles.get_profile)

    def _build_sync(self) -> None:
        """Sync's building blocks: the notifier woken by every stream writer and the
        ephemeral services over the rooms service's Membership/EventLocator ports."""
        db, rooms = self.db, self.rooms
        self.notifier = Notifier()
        # Registered by _build_push behind the push evaluator: an event's notification
        # counts must be in the same /sync as the event (spec: #server-behaviour-1).
        self.sync_queries = SyncQueries()
        # The latest batches sent here: their woken syncs need not read them back.
        self.local_batches = LocalBatches()
        self._sync_wake = room_event_listener(self.notifier, self.sync_queries,
                                              self.local_batches)
        self.filters = FilterService(db, FilterStore())
        self.typing = TypingService(self.notifier, rooms, self.clock, self.scheduler)
        self.receipts = ReceiptService(db, ReceiptStore(), self.account_data_store, self.notifier,
                                       rooms, rooms, self.clock)
        self.presence = PresenceService(db, PresenceStore(), self.notifier, rooms, self.clock,
                                        self.scheduler, enabled=self.config.presence.enabled,
                                        idle_timeout_ms=self.config.presence.idle_timeout_ms)

    def _build_sync_service(self) -> None:
        """/sync itself, last: it reads every stream, the E2EE ones included."""
        rooms = self.rooms
        extras = SyncExtras(self.account_data_store, self.typing, self.receipts, self.presence)
        e2e = E2eSync(self.to_device, self.device_lists, self.device_keys)
        self.sync = SyncService(self.db, rooms.stores, rooms.loader, extras, self.typing,
                                self.presence, self.notifier,
                                counts=self._unread_counts, ignored=self.account_data,
                                queries=self.sync_queries, e2e=e2e, local=self.local_batches)

    def _build_push(self) -> None:
        """Push: rules (changes reach clients as m.push_rules account data), the
        evaluator behind an after-commit listener, counts reset by read receipts, pushers
        and the sender that delivers queued notifications to their gateways."""
        db, rooms = self.db, self.rooms
        self.push_rules = PushRules(db, PushRuleStore(), self.account_data_store,
                                    on_change=self._account_data_changed)
        notifications = NotificationStore()
        pusher_store = PusherStore()
        push_config = self.config.push
        allow_private = push_config.allow_private_gateway_addresses
        vapid = None
        if push_config.vapid_private_key_path is not None:
            vapid = VapidKey.load_or_create(push_config.vapid_private_key_path,
                                            push_config.vapid_contact)
        self.push_sender = PushSender(db, PushQueueStore(), pusher_store,
                                      AiohttpGatewayClient(allow_private_addresses=allow_private),
                                      EventDetails(db, rooms.stores), self.clock, self.scheduler,
                                      allow_private_addresses=allow_private, vapid=vapid)
        self.push_evaluator = BulkPushEvaluator(db, rooms.stores, self.push_rules, notifications,
                                                self.clock, server_name=self.config.server_name,
                                                delivery=self.push_sender)
        rooms.add_event_listener(self.push_evaluator.on_event_persisted)
        # Counts commit with their events where it can (push/bulk_evaluator.py), so the
        # sync wake-up needs no second transaction.
        rooms.persister.batch_writers.append(self.push_evaluator.record_in_transaction)
        rooms.persister.timeline_push = self.push_evaluator.timeline_rows
        self.push_evaluator.after_evaluation.append(self._sync_wake)
        self.notification_counts = NotificationCounts(db, notifications, rooms.stores,
                                                      rooms.loader)
        self.receipts.on_receipt.append(self.notification_counts.on_receipt)
        self.pushers = Pushers(db, pusher_store, self.clock,
                               allow_private_addresses=allow_private)

    def _account_data_changed(self, user_id: str, stream_id: int) -> None:
        # Built before the notifier exists; only called after open(), by then it does.
        self.notifier.notify(ACCOUNT_DATA, stream_id, users=(user_id,))

    def _build_directories_and_search(self) -> None:
        """Room and user directories, and full-text search with its after-commit indexer."""
        rooms = self.rooms
        self.room_directory = RoomDirectory(self.db, rooms.stores, RoomDirectoryStore(), rooms.access,
                                            rooms.loader, server_name=self.config.server_name)
        self.user_directory = UserDirectory(self.db, UserDirectoryStore(), rooms.stores.memberships)
        search_store = SearchStore()
        self.search_indexer = SearchIndexer(self.db, search_store, rooms.stores, rooms.loader)
        rooms.add_event_listener(self.search_indexer.on_event_persisted)
        rooms.persister.batch_writers.append(self.search_indexer.index_in_transaction)
        rooms.persister.timeline_search = self.search_indexer.timeline_rows
        self.room_event_search = RoomEventSearch(
            self.db, search_store, rooms.stores, rooms.loader, rooms.visibility,
            ContextLoader(rooms.stores, rooms.loader, rooms.visibility),
            index_ready=self.search_indexer.caught_up)

    def _build_spaces_and_tags(self) -> None:
        """The space hierarchy over local rooms, and room tags (stored as m.tag account data)."""
        rooms = self.rooms
        self.space_hierarchy = SpaceHierarchy(self.db, SpaceSummaries(rooms.stores, rooms.loader))
        self.room_tags = RoomTags(self.account_data)

    def _build_e2e(self) -> None:
        """E2EE: device and one-time keys, cross-signing, device-list tracking (fed by
        membership changes inside the rooms persistence path and by device deletion),
        to-device messages, key backup and dehydrated devices (MSC3814); account
        deactivation and login call back into E2EE through hooks. /sync reads them through
        `device_lists`, `device_keys` and `to_device`."""
        db, server_name = self.db, self.config.server_name
        self.device_lists = DeviceLists(db, DeviceListStore(), self.notifier)
        self.rooms.persister.derived_writers.append(self.device_lists.on_member_event)
        self.authenticator.on_devices_deleted.append(self.device_lists.devices_deleted)
        e2e_keys, cross_signing_store = E2eKeyStore(), CrossSigningStore()
        self.device_keys = DeviceKeys(db, e2e_keys, self.device_lists)
        self.key_queries = KeyQueries(db, e2e_keys, cross_signing_store, server_name=server_name)
        self.cross_signing = CrossSigning(db, cross_signing_store, e2e_keys, self.devices_store,
                                          self.uiaa, self.device_lists)
        self.to_device = ToDevice(db, ToDeviceStore(), self.notifier, self.clock,
                                  server_name=server_name)
        self.key_backup = KeyBackup(db, KeyBackupStore())
        self.dehydrated_devices = DehydratedDevices(db, DehydratedDeviceStore(), self.devices_store,
                                                    self.device_keys, self.device_lists,
                                                    self.to_device, self.clock)
        self.login.device_id_guards.append(self.dehydrated_devices.check_login_device)
        e2e_deactivation = E2eDeactivation(E2eDeactivationStore(), self.device_lists)
        self.accounts.deactivation_writers.append(e2e_deactivation.on_deactivate)
        self.accounts.on_deactivated.append(e2e_deactivation.after_deactivate)

    def _build_media(self) -> None:
        """The media repository: content-addressed files, metadata, thumbnails."""
        config = self.config.media
        self.media_files = FileStore(config.media_store_path)
        media_store = MediaStore()
        self.media = MediaRepository(self.db, media_store, self.media_files, self.clock,
                                     server_name=self.config.server_name, config=config)
        self.thumbnails = Thumbnails(self.db, media_store, self.media_files,
                                     Thumbnailer(config.max_image_pixels), config)
        self.url_previewer = (UrlPreviewer(UrlFetcher(config.url_preview), self.media, self.clock)
                              if config.url_preview.enabled else None)

    async def open(self) -> None:
        """Open the database and apply pending migrations."""
        await self.db.open()
        self.media_files.ensure_dirs()
        applied = await apply_migrations(self.db, now_ms=self.clock.time_ms())
        if applied:
            logger.info("applied migrations %s", applied)
        # Events committed but not indexed when the last process stopped.
        indexed = await self.search_indexer.catch_up()
        if indexed:
            logger.info("search index caught up over %d events", indexed)
        # Events committed but not push-evaluated when the last process stopped; before
        # the sender starts, so the pushes they queue go out with the rest.
        evaluated = await self.push_evaluator.catch_up()
        if evaluated:
            logger.info("push evaluation caught up over %d events", evaluated)
        # Notifications queued but not delivered when the last process stopped.
        self.push_sender.start()

    async def close(self) -> None:
        # Waiting long-polls answer now (empty), so shutdown does not wait for them.
        self.notifier.close()
        self.presence.close()
        await self.push_evaluator.close()
        await self.push_sender.close()
        await self.search_indexer.close()
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
        registrar.add_routes(app, Messages(self.rooms.history).endpoints())
        registrar.add_routes(app, Relations(self.rooms.relations).endpoints())
        registrar.add_routes(app, RoomDirectoryApi(self.room_directory).endpoints())
        registrar.add_routes(app, UserDirectoryApi(self.user_directory).endpoints())
        registrar.add_routes(app, Search(self.room_event_search).endpoints())
        registrar.add_routes(app, Spaces(self.space_hierarchy).endpoints())
        registrar.add_routes(app, Tags(self.room_tags).endpoints())
        registrar.add_routes(app, PushRulesApi(self.push_rules).endpoints())
        registrar.add_routes(app, PushersApi(self.pushers, self.notification_counts).endpoints())
        self._add_e2e_routes(app, registrar)
        self._add_sync_routes(app, registrar)
        self._add_media_routes(app, registrar)
        return app

    def _add_media_routes(self, app: web.Application, registrar: Registrar) -> None:
        # Uploads are table endpoints (the body is left unread and streamed); downloads
        # answer with files, so they add plain routes using the same Authenticator.
        registrar.add_routes(app, MediaUploads(self.media, self.thumbnails).endpoints(),
                             prefix="/_matrix")
        registrar.add_plain_routes(
            app, MediaDownloads(self.media, self.thumbnails, self.authenticator).add_routes)
        registrar.add_routes(app, UrlPreviewApi(self.url_previewer).endpoints(), prefix="/_matrix")

    def _add_e2e_routes(self, app: web.Application, registrar: Registrar) -> None:
        registrar.add_routes(app, Keys(self.device_keys, self.key_queries, self.device_lists,
                                       self.cross_signing).endpoints())
        registrar.add_routes(app, ToDeviceApi(self.to_device).endpoints())
        registrar.add_routes(app, KeyBackupApi(self.key_backup).endpoints())
        registrar.add_routes(app, DehydratedDevicesApi(self.dehydrated_devices).endpoints())

    def _add_sync_routes(self, app: web.Application, registrar: Registrar) -> None:
        registrar.add_routes(app, Sync(self.sync, self.filters).endpoints())
        registrar.add_routes(app, Typing(self.typing).endpoints())
        registrar.add_routes(app, Receipts(self.receipts).endpoints())
        registrar.add_routes(app, Presence(self.presence).endpoints())
        # A WebSocket is no JSON endpoint, so it bypasses the registrar's table; it
        # authenticates through the same Authenticator (see client_api/sync_ws.py).
        stream = SyncStream(self.sync, self.filters, self.authenticator)
        registrar.add_plain_routes(
            app, lambda plain: plain.router.add_get(CLIENT_PREFIX + SYNC_STREAM_PATH, stream.handle))

        async def close_streams(_: web.Application) -> None:
            await stream.close_all()

        app.on_shutdown.append(close_streams)

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
        # In-flight requests get this long to finish on shutdown (long-polls are released
        # at once by the notifier); a send cut off here rolls back and its client retries.
        # handler_cancellation: a request whose client has gone is cancelled, above all a
        # parked /sync long-poll, which would otherwise stay until its timeout and still be
        # woken, computed and written to nobody (Synapse cancels /sync the same way). The
        # write paths are made for it: a cancelled send is never persisted later, and a
        # transaction cancelled mid-way rolls back (or, in an SQLite group commit, still
        # commits with its batch).
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0,
                               handler_cancellation=True)
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
        tune_garbage_collector()
        await stop.wait()
    finally:
        await hs.close()


def tune_garbage_collector() -> None:
    """Fewer, cheaper full collections for a long-running server.

    Everything allocated by startup (modules, config, compiled rules, routes) lives as
    long as the process: `gc.freeze()` moves it out of the collector's sight, so a full
    collection no longer walks it. The raised generation-0 threshold trades a little
    memory for far fewer collections; without both, 60-90 ms full collections were most
    of the fan-out p99 in the benchmark (docs/benchmarks.md). Reference counting still
    frees almost everything at once; only cycles wait for the collector.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
