"""Access tokens: issuing, authenticating, refreshing and revoking them.

Spec: https://spec.matrix.org/v1.19/client-server-api/#client-authentication
Tokens are `secrets.token_urlsafe(32)` (256 bits) and stored as sha256 hashes. Lookups
go through a bounded LRU cache owned by this class; every function here that revokes
tokens also invalidates the cache, and a generation counter keeps a lookup that raced
with a revocation from re-caching the revoked token.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import attrs

from homeserver.accounts.requester import Requester
from homeserver.clock import Clock
from homeserver.errors import UnknownToken
from homeserver.storage.access_tokens import AccessTokenStore, token_hash
from homeserver.storage.database import Connection, Database
from homeserver.storage.devices import DeviceStore

# How often the device's last_seen_ts is written while a token is in steady use; the
# spec allows it to be "a few minutes out of date, for efficiency reasons".
LAST_SEEN_INTERVAL_MS = 5 * 60 * 1000


@attrs.frozen
class IssuedTokens:
    access_token: str
    token_id: int
    refresh_token: str | None = None
    refresh_token_id: int | None = None
    expires_in_ms: int | None = None


@attrs.define
class _Entry:
    requester: Requester
    expires_ts: int | None
    last_seen_write: int


def new_token() -> str:
    return secrets.token_urlsafe(32)


class AccessTokens:
    def __init__(self, db: Database, store: AccessTokenStore, devices: DeviceStore, clock: Clock,
                 *, access_token_lifetime_ms: int, cache_size: int = 10_000):
        self._db = db
        self._store = store
        self._devices = devices
        self._clock = clock
        self._lifetime_ms = access_token_lifetime_ms
        self._cache_size = cache_size
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._generation = 0
        # Run after the commit that deleted devices, with (user_id, device_ids): E2EE must
        # tell the user's contacts that the device list changed.
        self.on_devices_deleted: list[Callable[[str, list[str]], Awaitable[None]]] = []

    async def issue(self, conn: Connection, user_id: str, device_id: str, *,
                    with_refresh: bool) -> IssuedTokens:
        """New tokens for an existing device, inside the caller's transaction.

        With a refresh token the access token expires (spec: refresh tokens, v1.3);
        without one it lives until revoked."""
        now = self._clock.time_ms()
        refresh_token = refresh_id = expires_ts = None
        if with_refresh:
            refresh_token = new_token()
            refresh_id = await self._store.add_refresh(conn, token_hash(refresh_token), user_id,
                                                       device_id, created_ts=now)
            expires_ts = now + self._lifetime_ms
        access_token = new_token()
        token_id = await self._store.add_access(conn, token_hash(access_token), user_id, device_id,
                                                created_ts=now, expires_ts=expires_ts,
                                                refresh_token_id=refresh_id)
        return IssuedTokens(access_token=access_token, token_id=token_id,
                            refresh_token=refresh_token, refresh_token_id=refresh_id,
                            expires_in_ms=self._lifetime_ms if with_refresh else None)

    async def authenticate(self, access_token: str) -> Requester:
        """The requester behind a token; UnknownToken (soft_logout if merely expired)."""
        hashed = token_hash(access_token)
        now = self._clock.time_ms()
        entry = self._cache.get(hashed)
        if entry is None:
            entry = await self._load(hashed, now)
        else:
            self._cache.move_to_end(hashed)
        if entry.expires_ts is not None and entry.expires_ts <= now:
            raise UnknownToken("Access token has expired", soft_logout=True)
        if now - entry.last_seen_write >= LAST_SEEN_INTERVAL_MS:
            entry.last_seen_write = now
            req = entry.requester
            async with self._db.transaction() as conn:
                await self._devices.touch(conn, req.user_id, req.device_id or "", now_ms=now, ip=None)
        return entry.requester

    async def _load(self, hashed: str, now: int) -> _Entry:
        generation = self._generation
        row = await self._store.get_access(self._db, hashed)
        if row is None or row.deactivated:
            raise UnknownToken("Unknown access token")
        if row.refresh_token_id is not None and (row.expires_ts is None or row.expires_ts > now):
            # First use of a refreshed token: the refresh token it replaced is now spent.
            async with self._db.transaction() as conn:
                await self._store.delete_refresh_predecessors(conn, row.refresh_token_id)
        requester = Requester(user_id=row.user_id, device_id=row.device_id, token_id=row.id,
                              is_guest=row.is_guest, is_admin=row.is_admin)
        # last_seen_write=0 makes the first authenticated request record the device as seen.
        entry = _Entry(requester, row.expires_ts, last_seen_write=0)
        if generation == self._generation:
            self._cache[hashed] = entry
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return entry

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """Exchange a refresh token (spec: POST /refresh)."""
        row = await self._store.get_refresh(self._db, token_hash(refresh_token))
        if row is None:
            raise UnknownToken("Unknown refresh token")
        async with self._db.transaction() as conn:
            if row.next_token_id is not None:
                # The successor was never used: the client lost it. Replace it.
                await self._store.delete_refresh(conn, row.next_token_id)
            await self._store.delete_refresh_predecessors(conn, row.id)
            issued = await self.issue(conn, row.user_id, row.device_id, with_refresh=True)
            assert issued.refresh_token_id is not None
            await self._store.set_refresh_next(conn, row.id, issued.refresh_token_id)
            # The old access token goes now rather than at its expiry.
            await self._store.delete_access_for_refresh(conn, row.id)
        self._invalidate(lambda r: r.user_id == row.user_id and r.device_id == row.device_id
                         and r.token_id != issued.token_id)
        return issued

    async def revoke_token(self, token_id: int) -> None:
        async with self._db.transaction() as conn:
            await self._store.delete_access(conn, token_id)
        self._invalidate(lambda r: r.token_id == token_id)

    async def revoke_devices(self, user_id: str, device_ids: list[str], *,
                             delete_devices: bool) -> None:
        """Revoke every token of these devices, and delete the devices if asked."""
        async with self._db.transaction() as conn:
            for device_id in device_ids:
                await self._store.delete_for_device(conn, user_id, device_id)
            if delete_devices:
                await self._devices.delete(conn, user_id, device_ids)
        wanted = set(device_ids)
        self._invalidate(lambda r: r.user_id == user_id and r.device_id in wanted)
        if delete_devices:
            await self._devices_deleted(user_id, device_ids)

    async def revoke_all(self, user_id: str, *, except_device: str | None = None,
                         delete_devices: bool) -> None:
        """Revoke the user's tokens (all but `except_device`'s), deleting devices if asked."""
        async with self._db.transaction() as conn:
            others = [d.device_id for d in await self._devices.list_for_user(conn, user_id)
                      if d.device_id != except_device]
            await self._store.delete_for_user(conn, user_id, except_device)
            if delete_devices:
                await self._devices.delete(conn, user_id, others)
        self._invalidate(lambda r: r.user_id == user_id and r.device_id != except_device)
        if delete_devices:
            await self._devices_deleted(user_id, others)

    async def _devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        for callback in self.on_devices_deleted:
            await callback(user_id, device_ids)

    def _invalidate(self, predicate: Callable[[Requester], bool]) -> None:
        # Runs after the commit; the generation bump stops an in-flight _load that read
        # the rows before the commit from caching what it read.
        self._generation += 1
        for key in [k for k, e in self._cache.items() if predicate(e.requester)]:
            del self._cache[key]
