"""Stored filters (POST/GET /user/{userId}/filter).

Spec: https://spec.matrix.org/v1.19/client-server-api/#filtering
"""

from __future__ import annotations

import hashlib

from homeserver.storage import streams
from homeserver.storage.database import Connection, Database

SELECT_BY_HASH = "SELECT filter_id FROM user_filters WHERE user_id = $1 AND filter_hash = $2"
INSERT = """
INSERT INTO user_filters (user_id, filter_id, filter_hash, filter_json) VALUES ($1, $2, $3, $4)
"""
SELECT_JSON = "SELECT filter_json FROM user_filters WHERE user_id = $1 AND filter_id = $2"

# IDs come from a counter in stream_positions (not a sync stream; tokens ignore it). Its
# row stays locked until commit, which also serialises uploads: the second look-up by
# hash below then sees an identical filter committed while we waited.
ID_COUNTER = "filter_ids"


class FilterStore:
    async def add(self, conn: Connection, user_id: str, filter_json: str) -> int:
        """Store `filter_json` (canonical JSON) for the user; returns its ID, reusing the
        ID of an identical filter stored before."""
        digest = hashlib.sha256(filter_json.encode()).hexdigest()
        existing = await conn.fetchval(SELECT_BY_HASH, user_id, digest)
        if existing is not None:
            return int(existing)
        filter_id = await streams.next_position(conn, ID_COUNTER)
        existing = await conn.fetchval(SELECT_BY_HASH, user_id, digest)
        if existing is not None:
            return int(existing)
        await conn.execute(INSERT, user_id, filter_id, digest, filter_json)
        return filter_id

    async def get(self, db: Database | Connection, user_id: str, filter_id: int) -> str | None:
        value = await db.fetchval(SELECT_JSON, user_id, filter_id)
        return None if value is None else str(value)
