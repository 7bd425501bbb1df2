"""Client config: global and per-room account data, and the ignore list built on it.

Spec: https://spec.matrix.org/v1.19/client-server-api/#client-config and
#ignoring-users .
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from homeserver.accounts.requester import Requester
from homeserver.errors import BadJson, Forbidden, InvalidParam, NotFound, ServerManagedType
from homeserver.rooms.locks import RoomLocks
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Database
from homeserver.types import RoomID, UserID

# Types the server writes itself (read markers, push rules); clients use their own APIs.
SERVER_MANAGED_TYPES = frozenset({"m.fully_read", "m.push_rules"})
MAX_TYPE_BYTES = 255
IGNORED_USER_LIST = "m.ignored_user_list"
IGNORED_CACHE_SIZE = 10_000

# Called after commit with (user_id, stream_id), e.g. to wake the user's /sync.
ChangeListener = Callable[[str, int], None]
# Given the stored content (None if there is none), returns the content to store, or
# None to leave it unchanged.
Updater = Callable[[dict[str, Any] | None], "dict[str, Any] | None"]


def check_ignored_user_list(content: dict[str, Any]) -> None:
    """`ignored_users` must map user IDs to objects (spec: m.ignored_user_list)."""
    ignored = content.get("ignored_users")
    if not isinstance(ignored, dict):
        raise BadJson("'ignored_users' must be an object")
    for user_id, value in ignored.items():
        try:
            UserID.parse(user_id)
        except InvalidParam:
            raise BadJson(f"'ignored_users' has an invalid user ID: {user_id!r}") from None
        if not isinstance(value, dict):
            raise BadJson(f"'ignored_users' entry for {user_id} must be an object")


class AccountData:
    def __init__(self, db: Database, store: AccountDataStore,
                 on_change: ChangeListener | None = None, *,
                 ignored_cache_size: int = IGNORED_CACHE_SIZE):
        self._db = db
        self._store = store
        self._on_change = on_change
        # user_id -> the users they ignore; read on every /sync and /messages page.
        self._ignored: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._ignored_cache_size = ignored_cache_size
        # Bumped by every write of an ignore list, so a read that raced a write does not
        # put the old list back into the cache.
        self._ignored_generation = 0
        # Read-modify-write updates (tags) of one user queue up instead of losing a change.
        self._update_locks = RoomLocks()

    async def set(self, requester: Requester, user_id: str, type_: str, content: dict[str, Any],
                  room_id: str | None = None) -> int:
        self._check(requester, user_id, type_, room_id)
        if type_ in SERVER_MANAGED_TYPES:
            raise ServerManagedType(f"Cannot set {type_} through this API")
        if type_ == IGNORED_USER_LIST and room_id is None:
            check_ignored_user_list(content)
        async with self._db.transaction() as conn:
            if room_id is None:
                stream_id = await self._store.put_global(conn, user_id, type_, content)
            else:
                stream_id = await self._store.put_room(conn, user_id, room_id, type_, content)
        self._written(user_id, type_, room_id, stream_id)
        return stream_id

    async def get(self, requester: Requester, user_id: str, type_: str,
                  room_id: str | None = None) -> dict[str, Any]:
        self._check(requester, user_id, type_, room_id)
        if room_id is None:
            content = await self._store.get_global(self._db, user_id, type_)
        else:
            content = await self._store.get_room(self._db, user_id, room_id, type_)
        if content is None:
            raise NotFound("Account data not found")
        return content

    async def update_room(self, requester: Requester, user_id: str, room_id: str, type_: str,
                          updater: Updater) -> int | None:
        """Read, change and write one room's account data (e.g. one tag of m.tag) without
        losing a concurrent change; returns the new stream position, None if unchanged."""
        self._check(requester, user_id, type_, room_id)
        if type_ in SERVER_MANAGED_TYPES:
            raise ServerManagedType(f"Cannot set {type_} through this API")
        async with self._update_locks.hold(user_id):
            async with self._db.transaction() as conn:
                content = updater(await self._store.get_room(conn, user_id, room_id, type_))
                if content is None:
                    return None
                stream_id = await self._store.put_room(conn, user_id, room_id, type_, content)
        self._written(user_id, type_, room_id, stream_id)
        return stream_id

    async def ignored_users(self, user_id: str) -> frozenset[str]:
        """The users `user_id` ignores (never themselves): their events and invites are
        left out of that user's /sync and /messages. Spec: #ignoring-users."""
        cached = self._ignored.get(user_id)
        if cached is not None:
            self._ignored.move_to_end(user_id)
            return cached
        generation = self._ignored_generation
        content = await self._store.get_global(self._db, user_id, IGNORED_USER_LIST)
        ignored = content.get("ignored_users") if content is not None else None
        users = frozenset(u for u in ignored if isinstance(u, str) and u != user_id) \
            if isinstance(ignored, dict) else frozenset()
        if generation == self._ignored_generation:
            self._ignored[user_id] = users
            if len(self._ignored) > self._ignored_cache_size:
                self._ignored.popitem(last=False)
        return users

    def _written(self, user_id: str, type_: str, room_id: str | None, stream_id: int) -> None:
        if type_ == IGNORED_USER_LIST and room_id is None:
            self._ignored_generation += 1
            self._ignored.pop(user_id, None)
        if self._on_change is not None:
            self._on_change(user_id, stream_id)

    @staticmethod
    def _check(requester: Requester, user_id: str, type_: str, room_id: str | None) -> None:
        if requester.user_id != user_id:
            raise Forbidden("Cannot access account data for other users")
        if room_id is not None:
            RoomID.parse(room_id)
        if not type_ or len(type_.encode()) > MAX_TYPE_BYTES:
            raise InvalidParam("Invalid account data type")
