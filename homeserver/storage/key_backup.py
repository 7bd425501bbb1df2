"""Server-side key backup: versions (`room_key_backup_versions`) and the session keys in
them (`room_key_backup_keys`). Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups
"""

from __future__ import annotations

import attrs

from homeserver.storage.batch import is_postgres
from homeserver.storage.database import Connection, Database, Row
from homeserver.storage.streams import next_position

VERSION_COUNTER = "room_key_backup_versions"


@attrs.frozen
class BackupVersionRow:
    version: int
    algorithm: str
    auth_data: str  # canonical JSON
    etag: int
    deleted: bool


@attrs.frozen
class BackupKeyRow:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: str  # canonical JSON


_VERSION_COLUMNS = "version, algorithm, auth_data, etag, deleted"
SELECT_LATEST = f"""
SELECT {_VERSION_COLUMNS} FROM room_key_backup_versions
WHERE user_id = $1 AND deleted = 0 ORDER BY version DESC LIMIT 1
"""
SELECT_VERSION = f"""
SELECT {_VERSION_COLUMNS} FROM room_key_backup_versions WHERE user_id = $1 AND version = $2
"""
INSERT_VERSION = """
INSERT INTO room_key_backup_versions (user_id, version, algorithm, auth_data, etag, deleted)
VALUES ($1, $2, $3, $4, 0, 0)
"""
UPDATE_AUTH_DATA = """
UPDATE room_key_backup_versions SET auth_data = $3
WHERE user_id = $1 AND version = $2 AND deleted = 0
"""
MARK_DELETED = "UPDATE room_key_backup_versions SET deleted = 1 WHERE user_id = $1 AND version = $2"
# Taken first by every writer of a version's keys: concurrent uploads and deletions of
# several keys each would otherwise lock key rows in different orders and deadlock.
# SQLite has one writer already.
LOCK_VERSION_PG = """
SELECT 1 FROM room_key_backup_versions WHERE user_id = $1 AND version = $2 FOR UPDATE
"""
BUMP_ETAG = "UPDATE room_key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2"
# One statement, so one snapshot: an etag always comes with the count of the keys it names.
SELECT_ETAG_AND_COUNT = """
SELECT v.etag, (SELECT COUNT(*) FROM room_key_backup_keys k
                WHERE k.user_id = v.user_id AND k.version = v.version) AS count
FROM room_key_backup_versions v WHERE v.user_id = $1 AND v.version = $2
"""

_KEY_COLUMNS = "room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"
SELECT_KEY = f"""
SELECT {_KEY_COLUMNS} FROM room_key_backup_keys
WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4
"""
SELECT_ROOM_KEYS = f"""
SELECT {_KEY_COLUMNS} FROM room_key_backup_keys
WHERE user_id = $1 AND version = $2 AND room_id = $3 ORDER BY session_id
"""
SELECT_ALL_KEYS = f"""
SELECT {_KEY_COLUMNS} FROM room_key_backup_keys
WHERE user_id = $1 AND version = $2 ORDER BY room_id, session_id
"""
# The spec's replacement rule in the upsert itself: the WHERE is evaluated against the
# stored row once the upsert holds it, so two uploads of one session cannot both see
# "nothing better stored" and the later overwrite the better key. Ties keep the stored key.
UPSERT_KEY_IF_BETTER = """
INSERT INTO room_key_backup_keys AS stored (user_id, version, room_id, session_id,
                                            first_message_index, forwarded_count, is_verified,
                                            session_data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE
SET first_message_index = excluded.first_message_index,
    forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified,
    session_data = excluded.session_data
WHERE excluded.is_verified > stored.is_verified
   OR (excluded.is_verified = stored.is_verified
       AND (excluded.first_message_index < stored.first_message_index
            OR (excluded.first_message_index = stored.first_message_index
                AND excluded.forwarded_count < stored.forwarded_count)))
"""
DELETE_ALL_KEYS = "DELETE FROM room_key_backup_keys WHERE user_id = $1 AND version = $2"
DELETE_ROOM_KEYS = """
DELETE FROM room_key_backup_keys WHERE user_id = $1 AND version = $2 AND room_id = $3
"""
DELETE_SESSION_KEY = """
DELETE FROM room_key_backup_keys
WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4
"""


def _version(r: Row) -> BackupVersionRow:
    return BackupVersionRow(int(r["version"]), r["algorithm"], r["auth_data"], int(r["etag"]),
                            bool(r["deleted"]))


def _key(r: Row) -> BackupKeyRow:
    return BackupKeyRow(r["room_id"], r["session_id"], int(r["first_message_index"]),
                        int(r["forwarded_count"]), bool(r["is_verified"]), r["session_data"])


class KeyBackupStore:
    async def latest_version(self, db: Database | Connection,
                             user_id: str) -> BackupVersionRow | None:
        r = await db.fetchrow(SELECT_LATEST, user_id)
        return None if r is None else _version(r)

    async def get_version(self, db: Database | Connection, user_id: str,
                          version: int) -> BackupVersionRow | None:
        r = await db.fetchrow(SELECT_VERSION, user_id, version)
        return None if r is None else _version(r)

    async def create_version(self, conn: Connection, user_id: str, algorithm: str,
                             auth_data: str) -> int:
        # Numbered from a server-wide counter: concurrent creations never collide, and a
        # deleted version's number is never handed out again.
        version = await next_position(conn, VERSION_COUNTER)
        await conn.execute(INSERT_VERSION, user_id, version, algorithm, auth_data)
        return version

    async def set_auth_data(self, conn: Connection, user_id: str, version: int,
                            auth_data: str) -> None:
        await conn.execute(UPDATE_AUTH_DATA, user_id, version, auth_data)

    async def delete_version(self, conn: Connection, user_id: str, version: int) -> None:
        # The version row first, as every writer of its keys locks it (LOCK_VERSION_PG).
        await conn.execute(MARK_DELETED, user_id, version)
        await conn.execute(DELETE_ALL_KEYS, user_id, version)

    async def lock_version(self, conn: Connection, user_id: str, version: int) -> None:
        """Serialises writers of one version's keys; held until the transaction ends."""
        if is_postgres(conn):
            await conn.fetchval(LOCK_VERSION_PG, user_id, version)

    async def bump_etag(self, conn: Connection, user_id: str, version: int) -> None:
        await conn.execute(BUMP_ETAG, user_id, version)

    async def etag_and_count(self, db: Database | Connection, user_id: str,
                             version: int) -> tuple[int, int] | None:
        r = await db.fetchrow(SELECT_ETAG_AND_COUNT, user_id, version)
        return None if r is None else (int(r["etag"]), int(r["count"]))

    async def get_key(self, db: Database | Connection, user_id: str, version: int,
                      room_id: str, session_id: str) -> BackupKeyRow | None:
        r = await db.fetchrow(SELECT_KEY, user_id, version, room_id, session_id)
        return None if r is None else _key(r)

    async def room_keys(self, db: Database | Connection, user_id: str, version: int,
                        room_id: str) -> list[BackupKeyRow]:
        return [_key(r) for r in await db.fetch(SELECT_ROOM_KEYS, user_id, version, room_id)]

    async def all_keys(self, db: Database | Connection, user_id: str,
                       version: int) -> list[BackupKeyRow]:
        return [_key(r) for r in await db.fetch(SELECT_ALL_KEYS, user_id, version)]

    async def put_key(self, conn: Connection, user_id: str, version: int,
                      key: BackupKeyRow) -> bool:
        """Store `key` unless the stored copy of its session is as good; whether it was."""
        return await conn.execute(UPSERT_KEY_IF_BETTER, user_id, version, key.room_id,
                                  key.session_id, key.first_message_index, key.forwarded_count,
                                  int(key.is_verified), key.session_data) > 0

    async def delete_keys(self, conn: Connection, user_id: str, version: int, *,
                          room_id: str | None = None, session_id: str | None = None) -> int:
        if room_id is None:
            return await conn.execute(DELETE_ALL_KEYS, user_id, version)
        if session_id is None:
            return await conn.execute(DELETE_ROOM_KEYS, user_id, version, room_id)
        return await conn.execute(DELETE_SESSION_KEY, user_id, version, room_id, session_id)
