"""Deleting every E2EE row of a deactivated account, across the E2EE tables.

Device-bound rows (device keys, one-time and fallback keys, to-device messages and
transaction IDs, the dehydrated device) would also go when the devices are deleted;
deleting them here too puts them in the deactivation's own transaction.
"""

from __future__ import annotations

from homeserver.storage.database import Connection

DELETE_BY_USER = [
    "DELETE FROM e2e_device_keys WHERE user_id = $1",
    "DELETE FROM e2e_one_time_keys WHERE user_id = $1",
    "DELETE FROM e2e_fallback_keys WHERE user_id = $1",
    "DELETE FROM e2e_cross_signing_keys WHERE user_id = $1",
    # Signatures over the user's keys, and those the user made over other users' keys
    # (who the user verified is the user's data, and the signing key is gone).
    "DELETE FROM e2e_signatures WHERE target_user_id = $1",
    "DELETE FROM e2e_signatures WHERE signer_user_id = $1",
    "DELETE FROM room_key_backup_keys WHERE user_id = $1",
    # Backup version numbers come from a server-wide counter, so dropping the rows
    # cannot lead to a number being handed out twice.
    "DELETE FROM room_key_backup_versions WHERE user_id = $1",
    "DELETE FROM to_device_messages WHERE user_id = $1",
    "DELETE FROM to_device_txns WHERE user_id = $1",
    "DELETE FROM dehydrated_devices WHERE user_id = $1",
]


class E2eDeactivationStore:
    async def delete_user_data(self, conn: Connection, user_id: str) -> None:
        for sql in DELETE_BY_USER:
            await conn.execute(sql, user_id)
