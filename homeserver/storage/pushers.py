"""Pushers (POST /pushers/set). Spec: https://spec.matrix.org/v1.19/client-server-api/#push-notifications"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import attrs

from homeserver.storage.batch import fetch_for_ids
from homeserver.storage.database import Connection, Database


@attrs.frozen
class PusherRow:
    user_id: str
    app_id: str
    pushkey: str
    kind: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]
    device_id: str | None
    created_ts: int


_COLUMNS = """user_id, app_id, pushkey, kind, app_display_name, device_display_name,
profile_tag, lang, data, access_token_device, created_ts"""
UPSERT = f"""
INSERT INTO pushers ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET
    kind = excluded.kind, app_display_name = excluded.app_display_name,
    device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag,
    lang = excluded.lang, data = excluded.data, access_token_device = excluded.access_token_device
"""
DELETE_ONE = "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3"
DELETE_OTHER_USERS = "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3"
SELECT_FOR_USER = f"SELECT {_COLUMNS} FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey"
SELECT_USERS_WITH_PUSHERS_PG = "SELECT DISTINCT user_id FROM pushers WHERE user_id = ANY($1::text[])"
SELECT_USERS_WITH_PUSHERS_SQLITE = """
SELECT DISTINCT user_id FROM pushers WHERE user_id IN (SELECT value FROM json_each($1))
"""


def _row(r: Any) -> PusherRow:
    return PusherRow(r["user_id"], r["app_id"], r["pushkey"], r["kind"], r["app_display_name"],
                     r["device_display_name"], r["profile_tag"], r["lang"], json.loads(r["data"]),
                     r["access_token_device"], int(r["created_ts"]))


class PusherStore:
    async def upsert(self, conn: Connection, p: PusherRow) -> None:
        await conn.execute(UPSERT, p.user_id, p.app_id, p.pushkey, p.kind, p.app_display_name,
                           p.device_display_name, p.profile_tag, p.lang,
                           json.dumps(p.data, separators=(",", ":"), sort_keys=True),
                           p.device_id, p.created_ts)

    async def delete(self, conn: Connection, user_id: str, app_id: str, pushkey: str) -> None:
        await conn.execute(DELETE_ONE, user_id, app_id, pushkey)

    async def delete_for_other_users(self, conn: Connection, app_id: str, pushkey: str,
                                     user_id: str) -> None:
        await conn.execute(DELETE_OTHER_USERS, app_id, pushkey, user_id)

    async def for_user(self, db: Database | Connection, user_id: str) -> list[PusherRow]:
        return [_row(r) for r in await db.fetch(SELECT_FOR_USER, user_id)]


async def users_with_pushers(conn: Connection, user_ids: Collection[str]) -> set[str]:
    """Which of `user_ids` have at least one pusher."""
    return {r["user_id"] for r in await fetch_for_ids(
        conn, SELECT_USERS_WITH_PUSHERS_PG, SELECT_USERS_WITH_PUSHERS_SQLITE, sorted(user_ids))}
