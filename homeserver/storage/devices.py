"""Devices: one row per (user, device ID), the unit that access tokens and keys hang off."""

from __future__ import annotations

import attrs

from homeserver.storage.database import Connection, Database, Row


@attrs.frozen
class DeviceRow:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None
    created_ts: int


def _device(row: Row) -> DeviceRow:
    seen = row["last_seen_ts"]
    return DeviceRow(user_id=row["user_id"], device_id=row["device_id"],
                     display_name=row["display_name"],
                     last_seen_ts=int(seen) if seen is not None else None,
                     last_seen_ip=row["last_seen_ip"], created_ts=int(row["created_ts"]))


_COLUMNS = "user_id, device_id, display_name, last_seen_ts, last_seen_ip, created_ts"
# An existing device keeps its display name: the spec ignores
# initial_device_display_name when the device already exists.
UPSERT_DEVICE = """
INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip, created_ts)
VALUES ($1, $2, $3, $4, $5, $4)
ON CONFLICT (user_id, device_id) DO UPDATE
SET last_seen_ts = excluded.last_seen_ts,
    last_seen_ip = COALESCE(excluded.last_seen_ip, devices.last_seen_ip)
"""
SELECT_DEVICE = f"SELECT {_COLUMNS} FROM devices WHERE user_id = $1 AND device_id = $2"
SELECT_USER_DEVICES = f"SELECT {_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY device_id"
UPDATE_DISPLAY_NAME = "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2"
UPDATE_LAST_SEEN = """
UPDATE devices SET last_seen_ts = $3, last_seen_ip = COALESCE($4, last_seen_ip)
WHERE user_id = $1 AND device_id = $2
"""
DELETE_DEVICE = "DELETE FROM devices WHERE user_id = $1 AND device_id = $2"
DELETE_USER_DEVICES = "DELETE FROM devices WHERE user_id = $1"


class DeviceStore:
    async def upsert(self, conn: Connection, user_id: str, device_id: str, *,
                     display_name: str | None, now_ms: int, ip: str | None) -> None:
        await conn.execute(UPSERT_DEVICE, user_id, device_id, display_name, now_ms, ip)

    async def get(self, db: Database | Connection, user_id: str, device_id: str) -> DeviceRow | None:
        row = await db.fetchrow(SELECT_DEVICE, user_id, device_id)
        return _device(row) if row is not None else None

    async def list_for_user(self, db: Database | Connection, user_id: str) -> list[DeviceRow]:
        return [_device(r) for r in await db.fetch(SELECT_USER_DEVICES, user_id)]

    async def set_display_name(self, conn: Connection, user_id: str, device_id: str,
                               display_name: str | None) -> bool:
        return await conn.execute(UPDATE_DISPLAY_NAME, user_id, device_id, display_name) == 1

    async def touch(self, conn: Connection, user_id: str, device_id: str, *, now_ms: int,
                    ip: str | None) -> None:
        await conn.execute(UPDATE_LAST_SEEN, user_id, device_id, now_ms, ip)

    async def delete(self, conn: Connection, user_id: str, device_ids: list[str]) -> None:
        if device_ids:
            await conn.executemany(DELETE_DEVICE, [(user_id, d) for d in device_ids])

    async def delete_all(self, conn: Connection, user_id: str) -> None:
        await conn.execute(DELETE_USER_DEVICES, user_id)
