"""Device management: listing, renaming and deleting a user's devices.

Spec: https://spec.matrix.org/v1.19/client-server-api/#device-management
"""

from __future__ import annotations

import secrets
import string

from homeserver.accounts.tokens import AccessTokens
from homeserver.accounts.uiaa import InteractiveAuth, UiaaResult
from homeserver.errors import NotFound
from homeserver.storage.database import Database
from homeserver.storage.devices import DeviceRow, DeviceStore

_DEVICE_ID_ALPHABET = string.ascii_uppercase
MAX_DEVICE_ID_LENGTH = 255
MAX_DISPLAY_NAME_LENGTH = 512


def new_device_id() -> str:
    return "".join(secrets.choice(_DEVICE_ID_ALPHABET) for _ in range(10))


class Devices:
    def __init__(self, db: Database, store: DeviceStore, tokens: AccessTokens,
                 uiaa: InteractiveAuth):
        self._db = db
        self._store = store
        self._tokens = tokens
        self._uiaa = uiaa

    async def all_for_user(self, user_id: str) -> list[DeviceRow]:
        return await self._store.list_for_user(self._db, user_id)

    async def get(self, user_id: str, device_id: str) -> DeviceRow:
        device = await self._store.get(self._db, user_id, device_id)
        if device is None:
            raise NotFound("Unknown device")
        return device

    async def rename(self, user_id: str, device_id: str, display_name: str | None) -> None:
        async with self._db.transaction() as conn:
            if not await self._store.set_display_name(conn, user_id, device_id, display_name):
                raise NotFound("Unknown device")

    async def delete(self, user_id: str, device_ids: list[str], *,
                     uiaa_result: UiaaResult | None = None) -> None:
        """Delete devices and revoke their tokens; unknown IDs are ignored (spec: 200)."""
        await self._tokens.revoke_devices(user_id, device_ids, delete_devices=True)
        if uiaa_result is not None:
            async with self._db.transaction() as conn:
                await self._uiaa.finish(conn, uiaa_result)
