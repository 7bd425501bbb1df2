"""Access and refresh tokens, stored as sha256 hashes and looked up by hash.

Callers hash with `token_hash()`; the plain token never reaches the database.
"""

from __future__ import annotations

import hashlib

import attrs

from homeserver.storage.database import Connection, Database, Row


def token_hash(token: str) -> str:
    """sha256 is enough here: tokens are 256-bit random, so no stretching is needed."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@attrs.frozen
class AccessTokenRow:
    id: int
    user_id: str
    device_id: str
    created_ts: int
    expires_ts: int | None
    refresh_token_id: int | None
    is_guest: bool
    is_admin: bool
    deactivated: bool


@attrs.frozen
class RefreshTokenRow:
    id: int
    user_id: str
    device_id: str
    next_token_id: int | None


def _access(row: Row) -> AccessTokenRow:
    return AccessTokenRow(
        id=int(row["id"]), user_id=row["user_id"], device_id=row["device_id"],
        created_ts=int(row["created_ts"]),
        expires_ts=int(row["expires_ts"]) if row["expires_ts"] is not None else None,
        refresh_token_id=int(row["refresh_token_id"]) if row["refresh_token_id"] is not None else None,
        is_guest=bool(row["is_guest"]), is_admin=bool(row["is_admin"]),
        deactivated=bool(row["deactivated"]))


INSERT_ACCESS = """
INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_token_id)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
"""
# Joined with users so one query answers "who is this and may they still act".
SELECT_ACCESS = """
SELECT t.id, t.user_id, t.device_id, t.created_ts, t.expires_ts, t.refresh_token_id,
       u.is_guest, u.is_admin, u.deactivated
FROM access_tokens t JOIN users u ON u.user_id = t.user_id
WHERE t.token_hash = $1
"""
DELETE_ACCESS_BY_ID = "DELETE FROM access_tokens WHERE id = $1"
DELETE_ACCESS_FOR_DEVICE = "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2"
DELETE_ACCESS_FOR_USER = "DELETE FROM access_tokens WHERE user_id = $1"
DELETE_ACCESS_FOR_USER_EXCEPT_DEVICE = """
DELETE FROM access_tokens WHERE user_id = $1 AND device_id <> $2
"""
DELETE_ACCESS_FOR_REFRESH = "DELETE FROM access_tokens WHERE refresh_token_id = $1"

INSERT_REFRESH = """
INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts)
VALUES ($1, $2, $3, $4) RETURNING id
"""
SELECT_REFRESH = """
SELECT id, user_id, device_id, next_token_id FROM refresh_tokens WHERE token_hash = $1
"""
SET_REFRESH_NEXT = "UPDATE refresh_tokens SET next_token_id = $2 WHERE id = $1"
DELETE_REFRESH_BY_ID = "DELETE FROM refresh_tokens WHERE id = $1"
DELETE_REFRESH_PREDECESSORS = "DELETE FROM refresh_tokens WHERE next_token_id = $1"
DELETE_REFRESH_FOR_DEVICE = "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2"
DELETE_REFRESH_FOR_USER = "DELETE FROM refresh_tokens WHERE user_id = $1"
DELETE_REFRESH_FOR_USER_EXCEPT_DEVICE = """
DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id <> $2
"""


class AccessTokenStore:
    async def add_access(self, conn: Connection, hashed: str, user_id: str, device_id: str, *,
                         created_ts: int, expires_ts: int | None,
                         refresh_token_id: int | None) -> int:
        return int(await conn.fetchval(INSERT_ACCESS, hashed, user_id, device_id, created_ts,
                                       expires_ts, refresh_token_id))

    async def get_access(self, db: Database | Connection, hashed: str) -> AccessTokenRow | None:
        row = await db.fetchrow(SELECT_ACCESS, hashed)
        return _access(row) if row is not None else None

    async def delete_access(self, conn: Connection, token_id: int) -> None:
        await conn.execute(DELETE_ACCESS_BY_ID, token_id)

    async def delete_for_device(self, conn: Connection, user_id: str, device_id: str) -> None:
        await conn.execute(DELETE_ACCESS_FOR_DEVICE, user_id, device_id)
        await conn.execute(DELETE_REFRESH_FOR_DEVICE, user_id, device_id)

    async def delete_for_user(self, conn: Connection, user_id: str,
                              except_device: str | None = None) -> None:
        if except_device is None:
            await conn.execute(DELETE_ACCESS_FOR_USER, user_id)
            await conn.execute(DELETE_REFRESH_FOR_USER, user_id)
        else:
            await conn.execute(DELETE_ACCESS_FOR_USER_EXCEPT_DEVICE, user_id, except_device)
            await conn.execute(DELETE_REFRESH_FOR_USER_EXCEPT_DEVICE, user_id, except_device)

    async def delete_access_for_refresh(self, conn: Connection, refresh_id: int) -> None:
        await conn.execute(DELETE_ACCESS_FOR_REFRESH, refresh_id)

    async def add_refresh(self, conn: Connection, hashed: str, user_id: str, device_id: str, *,
                          created_ts: int) -> int:
        return int(await conn.fetchval(INSERT_REFRESH, hashed, user_id, device_id, created_ts))

    async def get_refresh(self, db: Database | Connection, hashed: str) -> RefreshTokenRow | None:
        row = await db.fetchrow(SELECT_REFRESH, hashed)
        if row is None:
            return None
        nxt = row["next_token_id"]
        return RefreshTokenRow(id=int(row["id"]), user_id=row["user_id"], device_id=row["device_id"],
                               next_token_id=int(nxt) if nxt is not None else None)

    async def set_refresh_next(self, conn: Connection, refresh_id: int, next_id: int) -> None:
        await conn.execute(SET_REFRESH_NEXT, refresh_id, next_id)

    async def delete_refresh(self, conn: Connection, refresh_id: int) -> None:
        """Delete a refresh token and the access tokens issued with it."""
        await conn.execute(DELETE_ACCESS_FOR_REFRESH, refresh_id)
        await conn.execute(DELETE_REFRESH_BY_ID, refresh_id)

    async def delete_refresh_predecessors(self, conn: Connection, refresh_id: int) -> int:
        """Retire the token(s) that `refresh_id` replaced, now that the successor is in use."""
        return await conn.execute(DELETE_REFRESH_PREDECESSORS, refresh_id)
