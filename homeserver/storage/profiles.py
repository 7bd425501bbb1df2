"""Profile fields (displayname, avatar_url, m.tz, custom keys), one row per field.

Values are stored as canonical JSON text: custom fields may hold any JSON value.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.database import Connection, Database

SELECT_PROFILE = "SELECT field, value FROM profiles WHERE user_id = $1 ORDER BY field"
SELECT_FIELD = "SELECT value FROM profiles WHERE user_id = $1 AND field = $2"
UPSERT_FIELD = """
INSERT INTO profiles (user_id, field, value) VALUES ($1, $2, $3)
ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value
"""
DELETE_FIELD = "DELETE FROM profiles WHERE user_id = $1 AND field = $2"
DELETE_PROFILE = "DELETE FROM profiles WHERE user_id = $1"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class ProfileStore:
    async def get(self, db: Database | Connection, user_id: str) -> dict[str, Any]:
        return {r["field"]: json.loads(r["value"]) for r in await db.fetch(SELECT_PROFILE, user_id)}

    async def get_field(self, db: Database | Connection, user_id: str, field: str) -> tuple[bool, Any]:
        """(found, value): a stored JSON null is distinct from a missing field."""
        raw = await db.fetchval(SELECT_FIELD, user_id, field)
        return (False, None) if raw is None else (True, json.loads(raw))

    async def set_field(self, conn: Connection, user_id: str, field: str, value: Any) -> None:
        await conn.execute(UPSERT_FIELD, user_id, field, _dump(value))

    async def delete_field(self, conn: Connection, user_id: str, field: str) -> None:
        await conn.execute(DELETE_FIELD, user_id, field)

    async def delete_all(self, conn: Connection, user_id: str) -> None:
        await conn.execute(DELETE_PROFILE, user_id)
