"""Registration tokens for the `m.login.registration_token` UIAA stage.

Spec: https://spec.matrix.org/v1.19/client-server-api/#token-authenticated-registration
A token is usable while `pending + completed < uses_allowed` (NULL: unlimited) and
before `expiry_time` (NULL: never). `pending` counts sessions that passed the stage but
have not registered yet, so that the last use cannot be handed out twice.
"""

from __future__ import annotations

import attrs

from homeserver.storage.database import Connection, Database, Row


@attrs.frozen
class RegistrationTokenRow:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None


def _token(row: Row) -> RegistrationTokenRow:
    uses, expiry = row["uses_allowed"], row["expiry_time"]
    return RegistrationTokenRow(token=row["token"], uses_allowed=int(uses) if uses is not None else None,
                                pending=int(row["pending"]), completed=int(row["completed"]),
                                expiry_time=int(expiry) if expiry is not None else None)


_COLUMNS = "token, uses_allowed, pending, completed, expiry_time"
INSERT_TOKEN = f"""
INSERT INTO registration_tokens ({_COLUMNS}) VALUES ($1, $2, 0, 0, $3)
ON CONFLICT (token) DO NOTHING
"""
SELECT_TOKEN = f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = $1"
SELECT_ALL = f"SELECT {_COLUMNS} FROM registration_tokens ORDER BY token"
DELETE_TOKEN = "DELETE FROM registration_tokens WHERE token = $1"
# The condition is in the UPDATE itself so two concurrent registrations cannot both take
# the last use.
RESERVE = """
UPDATE registration_tokens SET pending = pending + 1
WHERE token = $1
  AND (uses_allowed IS NULL OR pending + completed < uses_allowed)
  AND (expiry_time IS NULL OR expiry_time > $2)
"""
COMPLETE = """
UPDATE registration_tokens
SET pending = CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END, completed = completed + 1
WHERE token = $1
"""
RELEASE = """
UPDATE registration_tokens SET pending = pending - 1 WHERE token = $1 AND pending > 0
"""


class RegistrationTokenStore:
    async def create(self, conn: Connection, token: str, *, uses_allowed: int | None,
                     expiry_time: int | None) -> bool:
        return await conn.execute(INSERT_TOKEN, token, uses_allowed, expiry_time) == 1

    async def get(self, db: Database | Connection, token: str) -> RegistrationTokenRow | None:
        row = await db.fetchrow(SELECT_TOKEN, token)
        return _token(row) if row is not None else None

    async def list_all(self, db: Database | Connection) -> list[RegistrationTokenRow]:
        return [_token(r) for r in await db.fetch(SELECT_ALL)]

    async def delete(self, conn: Connection, token: str) -> bool:
        return await conn.execute(DELETE_TOKEN, token) == 1

    async def reserve(self, conn: Connection, token: str, *, now_ms: int) -> bool:
        """Count one pending use if the token is still valid; False if it is not."""
        return await conn.execute(RESERVE, token, now_ms) == 1

    async def complete(self, conn: Connection, token: str) -> None:
        await conn.execute(COMPLETE, token)

    async def release(self, conn: Connection, token: str) -> None:
        await conn.execute(RELEASE, token)
