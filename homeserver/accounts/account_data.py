"""Client config: global and per-room account data.

Spec: https://spec.matrix.org/v1.19/client-server-api/#client-config
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.accounts.requester import Requester
from homeserver.errors import Forbidden, InvalidParam, NotFound, ServerManagedType
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Database
from homeserver.types import RoomID

# Types the server writes itself (read markers, push rules); clients use their own APIs.
SERVER_MANAGED_TYPES = frozenset({"m.fully_read", "m.push_rules"})
MAX_TYPE_BYTES = 255

# Called after commit with (user_id, stream_id), e.g. to wake the user's /sync.
ChangeListener = Callable[[str, int], None]


class AccountData:
    def __init__(self, db: Database, store: AccountDataStore,
                 on_change: ChangeListener | None = None):
        self._db = db
        self._store = store
        self._on_change = on_change

    async def set(self, requester: Requester, user_id: str, type_: str, content: dict[str, Any],
                  room_id: str | None = None) -> int:
        self._check(requester, user_id, type_, room_id)
        if type_ in SERVER_MANAGED_TYPES:
            raise ServerManagedType(f"Cannot set {type_} through this API")
        async with self._db.transaction() as conn:
            if room_id is None:
                stream_id = await self._store.put_global(conn, user_id, type_, content)
            else:
                stream_id = await self._store.put_room(conn, user_id, room_id, type_, content)
        if self._on_change is not None:
            self._on_change(user_id, stream_id)
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

    @staticmethod
    def _check(requester: Requester, user_id: str, type_: str, room_id: str | None) -> None:
        if requester.user_id != user_id:
            raise Forbidden("Cannot access account data for other users")
        if room_id is not None:
            RoomID.parse(room_id)
        if not type_ or len(type_.encode()) > MAX_TYPE_BYTES:
            raise InvalidParam("Invalid account data type")
