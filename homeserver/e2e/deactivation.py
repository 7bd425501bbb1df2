"""Account deactivation, E2EE side: the account's keys, signatures, key backups, pending
to-device messages and dehydrated device are deleted in the deactivation's transaction,
and the user's contacts hear that the device list changed, so that they re-download it,
find no devices and stop encrypting to the account.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3accountdeactivate
only says the account can no longer log in; keeping its keys would let others keep
encrypting to a dead account (Synapse too drops the devices, their keys and the
key backups on deactivation).
"""

from __future__ import annotations

from homeserver.e2e.device_lists import DeviceLists
from homeserver.storage.database import Connection
from homeserver.storage.e2e_deactivation import E2eDeactivationStore


class E2eDeactivation:
    def __init__(self, store: E2eDeactivationStore, device_lists: DeviceLists):
        self._store = store
        self._device_lists = device_lists

    async def on_deactivate(self, conn: Connection, user_id: str) -> None:
        """A writer of the deactivation transaction."""
        await self._store.delete_user_data(conn, user_id)
        await self._device_lists.mark_changed(conn, [user_id])

    async def after_deactivate(self, user_id: str) -> None:
        """After the commit: wake the syncs of the user's contacts."""
        await self._device_lists.notify_changed([user_id],
                                                await self._device_lists.current_position())
