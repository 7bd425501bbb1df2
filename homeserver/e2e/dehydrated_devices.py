"""Dehydrated devices (MSC3814, unstable prefix `org.matrix.msc3814.v1`).

MSC: https://github.com/matrix-org/matrix-spec-proposals/pull/3814
A dehydrated device is kept on the server for a user who may have no client running: it
publishes keys, takes one-time key claims and receives room keys by to-device message
like any other device. A later client decrypts `device_data` (with a key from secret
storage), reads the device's to-device messages and so gets the room keys it missed.

The device is an ordinary `devices` row without an access token, so /keys/query,
/keys/claim, /sendToDevice and the device-list stream treat it like any device, and the
usual device endpoints can delete it (the MSC allows DELETE /devices/{id},
/delete_devices and /logout/all). It is not a session: a login may not take over its ID,
since that would hand its identity keys to a client that does not hold them.

Reading its messages deletes nothing (MSC3814, since 2023: the server "should *not*
delete" them): a rehydration that dies half-way can start again from another client.
They go with the device when it is replaced or deleted.
"""

from __future__ import annotations

from typing import Any

import attrs

from homeserver.clock import Clock
from homeserver.e2e.device_keys import DeviceKeys
from homeserver.e2e.device_lists import DeviceLists
from homeserver.e2e.signed_json import JsonDict, canonical, loads
from homeserver.e2e.to_device import ToDevice
from homeserver.errors import Forbidden, InvalidParam, NotFound
from homeserver.storage.database import Database
from homeserver.storage.dehydrated_devices import DehydratedDeviceStore
from homeserver.storage.devices import DeviceStore

# Messages per /events batch unless the client asks for fewer (Synapse's default too).
DEFAULT_BATCH = 100
MAX_BATCH = 1000
_MAX_TOKEN_DIGITS = 18


@attrs.frozen
class DehydratedDevice:
    device_id: str
    device_data: JsonDict


@attrs.frozen
class EventsBatch:
    events: list[JsonDict]
    next_batch: str
    # More messages may follow: the client must ask again with next_batch.
    limited: bool


def parse_batch_token(raw: Any) -> int:
    """A `next_batch` we handed out: a to-device stream position."""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= _MAX_TOKEN_DIGITS:
        return int(raw)
    raise InvalidParam("Unknown next_batch token")


class DehydratedDevices:
    def __init__(self, db: Database, store: DehydratedDeviceStore, devices: DeviceStore,
                 device_keys: DeviceKeys, device_lists: DeviceLists, to_device: ToDevice,
                 clock: Clock):
        self._db = db
        self._store = store
        self._devices = devices
        self._device_keys = device_keys
        self._device_lists = device_lists
        self._to_device = to_device
        self._clock = clock

    async def get(self, user_id: str) -> DehydratedDevice:
        """GET /dehydrated_device"""
        row = await self._store.for_user(self._db, user_id)
        if row is None:
            raise NotFound("No dehydrated device available")
        return DehydratedDevice(row.device_id, loads(row.device_data))

    async def put(self, user_id: str, device_id: str, device_data: JsonDict,
                  display_name: str | None, keys: JsonDict) -> None:
        """PUT /dehydrated_device: replaces the user's dehydrated device, if any, and
        uploads the new one's keys through the checks of /keys/upload, all in one
        transaction: keys that fail a check leave the old device in place."""
        now = self._clock.time_ms()
        async with self._db.transaction() as conn:
            await self._store.lock_user(conn, user_id)
            old = await self._store.for_user(conn, user_id)
            replacing_itself = old is not None and old.device_id == device_id
            if not replacing_itself and await self._devices.get(conn, user_id, device_id):
                # Turning a live session into the dehydrated device would overwrite the
                # keys its client holds.
                raise InvalidParam("This device ID is in use by another of your devices")
            if old is not None:
                # Its keys, one-time keys and pending messages go by cascade.
                await self._devices.delete(conn, user_id, [old.device_id])
            await self._devices.upsert(conn, user_id, device_id, display_name=display_name,
                                       now_ms=now, ip=None)
            await self._store.set(conn, user_id, device_id, canonical(device_data), now_ms=now)
            await self._device_keys.upload_in(conn, user_id, device_id, keys)
            position = await self._device_lists.mark_changed(conn, [user_id])
        await self._device_lists.notify_changed([user_id], position)

    async def delete(self, user_id: str) -> str:
        """DELETE /dehydrated_device; returns the deleted device's ID."""
        async with self._db.transaction() as conn:
            await self._store.lock_user(conn, user_id)
            row = await self._store.for_user(conn, user_id)
            if row is None:
                raise NotFound("No dehydrated device available")
            await self._devices.delete(conn, user_id, [row.device_id])
            position = await self._device_lists.mark_changed(conn, [user_id])
        await self._device_lists.notify_changed([user_id], position)
        return row.device_id

    async def events(self, user_id: str, device_id: str, since: int,
                     limit: int = DEFAULT_BATCH) -> EventsBatch:
        """The dehydrated device's to-device messages after position `since`, oldest
        first; only the requesting user's current dehydrated device."""
        row = await self._store.for_user(self._db, user_id)
        if row is None or row.device_id != device_id:
            raise Forbidden("You may only fetch messages for your dehydrated device")
        events, position = await self._to_device.to_device_since(user_id, device_id, since,
                                                                  limit)
        return EventsBatch(events, str(position), limited=len(events) >= limit)

    async def check_login_device(self, user_id: str, device_id: str) -> None:
        """A login hook: refuse a login that names the dehydrated device's ID."""
        if await self._store.is_dehydrated(self._db, user_id, device_id):
            raise InvalidParam("This device ID belongs to your dehydrated device; "
                               "log in with another device ID")
