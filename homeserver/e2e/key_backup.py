"""Server-side key backup: versions and the megolm session keys stored in them.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups
The server cannot read the keys; it keeps, per session, the copy most useful to the
user, by the spec's rule: a verified key beats an unverified one, then the one that
decrypts from an earlier message index, then the one forwarded fewer times. The rule is
applied by the store's upsert itself (KeyBackupStore.put_key), so concurrent uploads of
one session cannot undo it.
"""

from __future__ import annotations

from typing import Any

from homeserver.e2e.signed_json import JsonDict, canonical, loads
from homeserver.errors import (
    BadJson,
    InvalidParam,
    MissingParam,
    NotFound,
    WrongRoomKeysVersion,
)
from homeserver.storage.database import Connection, Database
from homeserver.storage.key_backup import BackupKeyRow, BackupVersionRow, KeyBackupStore

MEGOLM_BACKUP_V1 = "m.megolm_backup.v1.curve25519-aes-sha2"
ALGORITHMS = frozenset({MEGOLM_BACKUP_V1})
# Versions are numbers in our storage but opaque strings to clients.
_MAX_VERSION_DIGITS = 18

Sessions = dict[str, dict[str, JsonDict]]  # room -> session -> KeyBackupData


def parse_version(raw: Any) -> int | None:
    """A version string as we number them, or None when it cannot be one of ours."""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= _MAX_VERSION_DIGITS:
        return int(raw)
    return None


class KeyBackup:
    def __init__(self, db: Database, store: KeyBackupStore):
        self._db = db
        self._store = store

    async def create_version(self, user_id: str, algorithm: Any, auth_data: Any) -> str:
        _check_version_body(algorithm, auth_data)
        async with self._db.transaction() as conn:
            version = await self._store.create_version(conn, user_id, algorithm,
                                                       canonical(auth_data))
        return str(version)

    async def get_version(self, user_id: str, raw_version: str | None) -> JsonDict:
        """GET /room_keys/version[/{version}]: the latest when `raw_version` is None."""
        async with self._db.connection() as conn:
            row = await self._live_version(conn, user_id, raw_version)
            state = await self._etag_and_count(conn, user_id, row.version)
        return {"algorithm": row.algorithm, "auth_data": loads(row.auth_data), **state,
                "version": str(row.version)}

    async def update_version(self, user_id: str, raw_version: str, body: JsonDict) -> None:
        algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
        _check_version_body(algorithm, auth_data)
        if "version" in body and body["version"] != raw_version:
            raise InvalidParam("'version' in the body does not match the path")
        async with self._db.transaction() as conn:
            row = await self._live_version(conn, user_id, raw_version)
            if algorithm != row.algorithm:
                raise InvalidParam("A backup's algorithm cannot change")
            await self._store.set_auth_data(conn, user_id, row.version, canonical(auth_data))

    async def delete_version(self, user_id: str, raw_version: str) -> None:
        """Deleting an already deleted version succeeds (spec); an unknown one is 404."""
        version = parse_version(raw_version)
        async with self._db.transaction() as conn:
            row = None if version is None else await self._store.get_version(conn, user_id, version)
            if row is None:
                raise NotFound("Unknown backup version")
            if not row.deleted:
                await self._store.delete_version(conn, user_id, row.version)

    async def _live_version(self, conn: Connection, user_id: str,
                            raw_version: str | None) -> BackupVersionRow:
        if raw_version is None:
            row = await self._store.latest_version(conn, user_id)
            if row is None:
                raise NotFound("No current backup version")
            return row
        version = parse_version(raw_version)
        row = None if version is None else await self._store.get_version(conn, user_id, version)
        if row is None or row.deleted:
            raise NotFound("Unknown backup version")
        return row

    async def put_keys(self, user_id: str, raw_version: str | None, sessions: Sessions) -> JsonDict:
        """PUT /room_keys/keys[/{roomId}[/{sessionId}]]: only into the current version."""
        keys = [_key_row(room_id, session_id, data) for room_id, by_session in sessions.items()
                for session_id, data in by_session.items()]
        async with self._db.transaction() as conn:
            version = await self._current_for_write(conn, user_id, raw_version)
            changed = False
            for key in keys:
                if await self._store.put_key(conn, user_id, version.version, key):
                    changed = True
            if changed:
                await self._store.bump_etag(conn, user_id, version.version)
            return await self._etag_and_count(conn, user_id, version.version)

    async def delete_keys(self, user_id: str, raw_version: str | None, *,
                          room_id: str | None = None, session_id: str | None = None) -> JsonDict:
        async with self._db.transaction() as conn:
            version = await self._current_for_write(conn, user_id, raw_version)
            deleted = await self._store.delete_keys(conn, user_id, version.version,
                                                    room_id=room_id, session_id=session_id)
            if deleted:
                await self._store.bump_etag(conn, user_id, version.version)
            return await self._etag_and_count(conn, user_id, version.version)

    async def get_keys(self, user_id: str, raw_version: str | None, *,
                       room_id: str | None = None, session_id: str | None = None) -> JsonDict:
        """The whole backup ({rooms}), one room ({sessions}) or one session's key."""
        async with self._db.connection() as conn:
            version = await self._live_version(conn, user_id, _required(raw_version))
            v = version.version
            if room_id is None:
                rooms: dict[str, Any] = {}
                for key in await self._store.all_keys(conn, user_id, v):
                    rooms.setdefault(key.room_id, {"sessions": {}})["sessions"][key.session_id] = \
                        _key_json(key)
                return {"rooms": rooms}
            if session_id is None:
                return {"sessions": {k.session_id: _key_json(k)
                                     for k in await self._store.room_keys(conn, user_id, v, room_id)}}
            found = await self._store.get_key(conn, user_id, v, room_id, session_id)
            if found is None:
                raise NotFound("No room key found for this session")
            return _key_json(found)

    async def _current_for_write(self, conn: Connection, user_id: str,
                                 raw_version: str | None) -> BackupVersionRow:
        """Writes go to the current (latest) version only: a client still writing to an
        old one has missed a new backup and must learn `current_version`. The version is
        locked before it is checked, so it cannot be deleted under the write."""
        version = parse_version(_required(raw_version))
        if version is not None:
            await self._store.lock_version(conn, user_id, version)
        current = await self._store.latest_version(conn, user_id)
        if current is None or version is None:
            raise NotFound("Unknown backup version")
        if version != current.version:
            row = await self._store.get_version(conn, user_id, version)
            if row is None:
                raise NotFound("Unknown backup version")
            raise WrongRoomKeysVersion(str(current.version))
        return current

    async def _etag_and_count(self, conn: Connection, user_id: str, version: int) -> JsonDict:
        state = await self._store.etag_and_count(conn, user_id, version)
        assert state is not None
        return {"etag": str(state[0]), "count": state[1]}


def _required(raw_version: str | None) -> str:
    if raw_version is None:
        raise MissingParam("Missing 'version' query parameter")
    return raw_version


def _check_version_body(algorithm: Any, auth_data: Any) -> None:
    if not isinstance(algorithm, str):
        raise BadJson("'algorithm' must be a string")
    if algorithm not in ALGORITHMS:
        raise InvalidParam(f"Unsupported backup algorithm {algorithm!r}")
    if not isinstance(auth_data, dict):
        raise BadJson("'auth_data' must be an object")


def _key_row(room_id: str, session_id: str, data: Any) -> BackupKeyRow:
    if not isinstance(data, dict):
        raise BadJson("Each session's key data must be an object")
    fmi, fwd, verified = (data.get("first_message_index"), data.get("forwarded_count"),
                          data.get("is_verified"))
    session_data = data.get("session_data")
    if (not isinstance(fmi, int) or not _is_count(fmi) or not isinstance(fwd, int)
            or not _is_count(fwd) or not isinstance(verified, bool)
            or not isinstance(session_data, dict)):
        raise BadJson("Key data needs first_message_index and forwarded_count (non-negative "
                      "integers), is_verified (boolean) and session_data (object)")
    return BackupKeyRow(room_id, session_id, fmi, fwd, verified, canonical(session_data))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def _key_json(key: BackupKeyRow) -> JsonDict:
    return {"first_message_index": key.first_message_index,
            "forwarded_count": key.forwarded_count, "is_verified": key.is_verified,
            "session_data": loads(key.session_data)}
