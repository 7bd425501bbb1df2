"""User-interactive auth sessions: which stages a client completed for one operation."""

from __future__ import annotations

import json
from typing import Any

import attrs

from homeserver.storage.database import Connection, Database


@attrs.frozen
class UiaaSessionRow:
    session_id: str
    operation: str
    user_id: str | None
    op_digest: str
    # stage type -> the stage's result (e.g. the authenticated user ID, the token used)
    completed: dict[str, Any]
    created_ts: int


INSERT_SESSION = """
INSERT INTO uiaa_sessions (session_id, operation, user_id, op_digest, completed, created_ts)
VALUES ($1, $2, $3, $4, '{}', $5)
"""
SELECT_SESSION = """
SELECT session_id, operation, user_id, op_digest, completed, created_ts
FROM uiaa_sessions WHERE session_id = $1
"""
UPDATE_COMPLETED = "UPDATE uiaa_sessions SET completed = $2 WHERE session_id = $1"
DELETE_SESSION = "DELETE FROM uiaa_sessions WHERE session_id = $1"
SELECT_EXPIRED = """
SELECT session_id, operation, user_id, op_digest, completed, created_ts
FROM uiaa_sessions WHERE created_ts < $1
"""
DELETE_EXPIRED = "DELETE FROM uiaa_sessions WHERE created_ts < $1"


def _session(row: Any) -> UiaaSessionRow:
    return UiaaSessionRow(session_id=row["session_id"], operation=row["operation"],
                          user_id=row["user_id"], op_digest=row["op_digest"],
                          completed=json.loads(row["completed"]), created_ts=int(row["created_ts"]))


class UiaaSessionStore:
    async def create(self, conn: Connection, session_id: str, *, operation: str,
                     user_id: str | None, op_digest: str, created_ts: int) -> None:
        await conn.execute(INSERT_SESSION, session_id, operation, user_id, op_digest, created_ts)

    async def get(self, db: Database | Connection, session_id: str) -> UiaaSessionRow | None:
        row = await db.fetchrow(SELECT_SESSION, session_id)
        return _session(row) if row is not None else None

    async def set_completed(self, conn: Connection, session_id: str,
                            completed: dict[str, Any]) -> None:
        await conn.execute(UPDATE_COMPLETED, session_id, json.dumps(completed, sort_keys=True))

    async def delete(self, conn: Connection, session_id: str) -> None:
        await conn.execute(DELETE_SESSION, session_id)

    async def pop_expired(self, conn: Connection, before_ts: int) -> list[UiaaSessionRow]:
        """Delete sessions created before `before_ts`, returning them (to release tokens)."""
        rows = [_session(r) for r in await conn.fetch(SELECT_EXPIRED, before_ts)]
        if rows:
            await conn.execute(DELETE_EXPIRED, before_ts)
        return rows
