"""The end-to-end encryption parts of a sync: to-device messages, device-list changes,
one-time key counts and unused fallback key types.

Spec: https://spec.matrix.org/v1.19/client-server-api/#extensions-to-sync (to-device) and
https://spec.matrix.org/v1.19/client-server-api/#e2e-extensions-to-sync .

To-device messages are read for (since, current] of the "to_device" stream, at most
TO_DEVICE_LIMIT per sync; the position for `next_batch` is the one `to_device_since`
returns, which is `current` unless the limit cut the list short. Keeping `since`'s
position instead on an empty read would leave the token behind every notification the
user ever had, and a long-poll would be woken again at once, forever.

A device's messages are deleted when it syncs with a `since` past them (`acknowledge`):
until then a response lost on the way is simply sent again. The position each device was
last acknowledged up to is remembered (bounded LRU), so the syncs that follow with the
same `since`, nearly all of them, cost no write: no message can appear at or below a
position once it has been read as committed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

from homeserver.storage.sync_batch_reads import DeviceKeyCounts
from homeserver.sync.sync_result import E2eSection, SyncRequest
from homeserver.sync.tokens import DEVICE_LISTS, TO_DEVICE, SyncToken

JsonDict = dict[str, Any]

# Synapse sends at most 100 per sync too; a client catching up gets the rest at once
# on its next sync, because a non-empty result is never held back.
TO_DEVICE_LIMIT = 100
ACKED_MEMO_SIZE = 50_000
SIGNED_CURVE25519 = "signed_curve25519"


class ToDeviceInbox(Protocol):
    async def to_device_since(self, user_id: str, device_id: str, since_pos: int, limit: int,
                              to_pos: int | None = None) -> tuple[list[JsonDict], int]: ...

    async def ack_to_device(self, user_id: str, device_id: str, up_to_pos: int) -> int: ...


class DeviceListChanges(Protocol):
    async def device_list_changes(self, user_id: str, since_pos: int,
                                  to_pos: int) -> tuple[set[str], set[str]]: ...


class KeyCounts(Protocol):
    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]: ...

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]: ...


class E2eSync:
    def __init__(self, inbox: ToDeviceInbox, device_lists: DeviceListChanges, keys: KeyCounts):
        self._inbox = inbox
        self._device_lists = device_lists
        self._keys = keys
        # (user, device) -> position up to which its messages are already deleted.
        self._acked: OrderedDict[tuple[str, str], int] = OrderedDict()

    async def acknowledge(self, request: SyncRequest, since: SyncToken | None) -> None:
        """The device synced with `since`: it holds every message up to that position."""
        if since is None or request.device_id is None or since[TO_DEVICE] <= 0:
            return
        key = (request.user_id, request.device_id)
        position = since[TO_DEVICE]
        if self._acked.get(key, 0) >= position:
            self._acked.move_to_end(key)
            return
        await self._inbox.ack_to_device(request.user_id, request.device_id, position)
        if position > self._acked.get(key, 0):
            self._acked[key] = position
            self._acked.move_to_end(key)
            if len(self._acked) > ACKED_MEMO_SIZE:
                self._acked.popitem(last=False)

    async def read(self, request: SyncRequest, since: SyncToken | None, current: SyncToken,
                   keys: DeviceKeyCounts | None = None) -> tuple[E2eSection, SyncToken]:
        """The section for (since, current] and `current` with the to-device position
        the next sync must start from. `keys`: the device's key counts when the caller
        has read them already (batched with other syncs'), else they are read here."""
        user_id, device_id = request.user_id, request.device_id
        changed: set[str] = set()
        left: set[str] = set()
        # Initial sync: the client downloads the keys of everyone it tracks anyway.
        if since is not None:
            changed, left = await self._device_lists.device_list_changes(
                user_id, since[DEVICE_LISTS], current[DEVICE_LISTS])
        if device_id is None:
            return E2eSection(changed=sorted(changed), left=sorted(left)), current
        start = 0 if since is None else since[TO_DEVICE]
        messages: list[JsonDict] = []
        next_pos = max(start, current[TO_DEVICE])
        if current[TO_DEVICE] > start:  # else there is nothing new to read
            messages, next_pos = await self._inbox.to_device_since(
                user_id, device_id, start, TO_DEVICE_LIMIT, to_pos=current[TO_DEVICE])
        if keys is not None:
            # signed_curve25519 is always present (spec; as DeviceKeys reports it).
            one_time = {SIGNED_CURVE25519: 0, **keys.one_time_keys}
            fallback = list(keys.unused_fallback_types)
        else:
            one_time = await self._keys.one_time_key_counts(user_id, device_id)
            fallback = await self._keys.unused_fallback_key_types(user_id, device_id)
        section = E2eSection(to_device=messages, changed=sorted(changed), left=sorted(left),
                             one_time_keys_count=one_time, unused_fallback_key_types=fallback)
        return section, current if next_pos == current[TO_DEVICE] else current.copy_with(
            TO_DEVICE, next_pos)
