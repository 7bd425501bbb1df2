"""User accounts: the `users` table."""

from __future__ import annotations

import attrs

from homeserver.storage.database import Connection, Database, Row


@attrs.frozen
class UserRow:
    user_id: str
    password_hash: str | None
    created_ts: int
    is_admin: bool
    is_guest: bool
    deactivated: bool


def _user(row: Row) -> UserRow:
    return UserRow(user_id=row["user_id"], password_hash=row["password_hash"],
                   created_ts=int(row["created_ts"]), is_admin=bool(row["is_admin"]),
                   is_guest=bool(row["is_guest"]), deactivated=bool(row["deactivated"]))


INSERT_USER = """
INSERT INTO users (user_id, password_hash, created_ts, is_admin, is_guest, deactivated)
VALUES ($1, $2, $3, $4, $5, 0)
ON CONFLICT (user_id) DO NOTHING
"""
SELECT_USER = """
SELECT user_id, password_hash, created_ts, is_admin, is_guest, deactivated
FROM users WHERE user_id = $1
"""
USER_EXISTS = "SELECT 1 FROM users WHERE user_id = $1"
UPDATE_PASSWORD = "UPDATE users SET password_hash = $2 WHERE user_id = $1"
DEACTIVATE = "UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = $1"
SET_ADMIN = "UPDATE users SET is_admin = $2 WHERE user_id = $1"
COUNT_USERS = "SELECT COUNT(*) FROM users"


class UserStore:
    async def create(self, conn: Connection, user_id: str, password_hash: str | None, *,
                     created_ts: int, is_admin: bool = False, is_guest: bool = False) -> bool:
        """Insert a user; False when the ID is already taken (even by a deactivated one)."""
        n = await conn.execute(INSERT_USER, user_id, password_hash, created_ts,
                               int(is_admin), int(is_guest))
        return n == 1

    async def get(self, db: Database | Connection, user_id: str) -> UserRow | None:
        row = await db.fetchrow(SELECT_USER, user_id)
        return _user(row) if row is not None else None

    async def exists(self, db: Database | Connection, user_id: str) -> bool:
        return await db.fetchval(USER_EXISTS, user_id) is not None

    async def set_password_hash(self, conn: Connection, user_id: str, password_hash: str) -> None:
        await conn.execute(UPDATE_PASSWORD, user_id, password_hash)

    async def deactivate(self, conn: Connection, user_id: str) -> None:
        """Mark the account deactivated and forget its password; the ID is never reused."""
        await conn.execute(DEACTIVATE, user_id)

    async def set_admin(self, conn: Connection, user_id: str, is_admin: bool) -> None:
        await conn.execute(SET_ADMIN, user_id, int(is_admin))

    async def count(self, db: Database | Connection) -> int:
        return int(await db.fetchval(COUNT_USERS))
