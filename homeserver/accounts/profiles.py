"""User profiles: displayname, avatar_url, m.tz and custom fields.

Spec: https://spec.matrix.org/v1.19/client-server-api/#profiles
Only local users' profiles are known until federation profile queries exist.
"""

from __future__ import annotations

import json
import re
from typing import Any

from homeserver.accounts.requester import Requester
from homeserver.errors import (
    BadJson,
    Forbidden,
    InvalidParam,
    KeyTooLarge,
    NotFound,
    ProfileTooLarge,
)
from homeserver.storage.database import Database
from homeserver.storage.profiles import ProfileStore
from homeserver.storage.users import UserStore
from homeserver.types import UserID

# keyName grammar from the spec's path parameter pattern.
_KEY = re.compile(r"^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")
MAX_KEY_BYTES = 255
MAX_PROFILE_BYTES = 64 * 1024
MAX_DISPLAYNAME_LENGTH = 256
# These two are typed strings; a JSON null for them means "clear" rather than a stored
# null, which would break the string type GET /profile promises.
_STRING_FIELDS = ("displayname", "avatar_url", "m.tz")


def check_key(key: str) -> None:
    if len(key.encode()) > MAX_KEY_BYTES:
        raise KeyTooLarge(f"Profile keys are limited to {MAX_KEY_BYTES} bytes")
    if not _KEY.match(key):
        raise InvalidParam("Invalid profile key")


class Profiles:
    def __init__(self, db: Database, store: ProfileStore, users: UserStore, *, server_name: str):
        self._db = db
        self._store = store
        self._users = users
        self._server_name = server_name

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        await self._require_local_user(user_id)
        return await self._store.get(self._db, user_id)

    async def get_field(self, user_id: str, key: str) -> Any:
        check_key(key)
        await self._require_local_user(user_id)
        found, value = await self._store.get_field(self._db, user_id, key)
        if not found:
            raise NotFound("Profile field not found")
        return value

    async def set_field(self, requester: Requester, user_id: str, key: str, value: Any) -> None:
        check_key(key)
        self._check_own(requester, user_id)
        if value is None and key in _STRING_FIELDS:
            await self.delete_field(requester, user_id, key)
            return
        _check_value(key, value)
        async with self._db.transaction() as conn:
            profile = await self._store.get(conn, user_id)
            profile[key] = value
            if len(json.dumps(profile, ensure_ascii=False).encode()) > MAX_PROFILE_BYTES:
                raise ProfileTooLarge("Profile would exceed 64 KiB")
            await self._store.set_field(conn, user_id, key, value)

    async def delete_field(self, requester: Requester, user_id: str, key: str) -> None:
        check_key(key)
        self._check_own(requester, user_id)
        async with self._db.transaction() as conn:
            await self._store.delete_field(conn, user_id, key)

    def _check_own(self, requester: Requester, user_id: str) -> None:
        if requester.user_id != user_id:
            raise Forbidden("You may only change your own profile")

    async def _require_local_user(self, user_id: str) -> None:
        parsed = UserID.parse(user_id)
        if parsed.server_name != self._server_name or not await self._users.exists(self._db, user_id):
            raise NotFound("Profile not found")


def _check_value(key: str, value: Any) -> None:
    if key in _STRING_FIELDS and not isinstance(value, str):
        raise BadJson(f"'{key}' must be a string")
    if key == "displayname" and len(value) > MAX_DISPLAYNAME_LENGTH:
        raise BadJson(f"'displayname' is limited to {MAX_DISPLAYNAME_LENGTH} characters")
    if key == "avatar_url" and value and not value.startswith("mxc://"):
        raise InvalidParam("'avatar_url' must be an mxc:// URI")
