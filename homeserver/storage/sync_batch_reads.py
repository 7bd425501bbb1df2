"""Read-only batched reads of per-user values /sync shows, for the syncs one stream move
wakes together: unread notification counts of many users, key counts of many devices.

Each answers for every user or device of a batch in one statement, with the same rows
the single-user reads return (`NotificationStore.counts`, `E2eKeyStore.one_time_key_counts`
and `unused_fallback_key_types`). The tables belong to push and E2EE; nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from homeserver.storage.batch import fetch_for_ids, is_postgres
from homeserver.storage.database import Connection

# room -> thread -> (notifications, highlights)
RoomThreadCounts = dict[str, dict[str, tuple[int, int]]]

_UNREAD_COUNTS = """
SELECT user_id, room_id, thread_id, notif_count, highlight_count FROM notification_counts
WHERE user_id {} AND (notif_count > 0 OR highlight_count > 0)
"""
UNREAD_COUNTS_PG = _UNREAD_COUNTS.format("= ANY($1::text[])")
UNREAD_COUNTS_SQLITE = _UNREAD_COUNTS.format("IN (SELECT value FROM json_each($1))")

# Devices travel as two parallel arrays (PostgreSQL) or one JSON array of pairs (SQLite);
# either way each device is one lookup on the tables' (user_id, device_id, ...) keys.
# `fallback` 0: a one-time-key count per algorithm; 1: an unused fallback key's algorithm.
KEY_COUNTS_PG = """
SELECT k.user_id, k.device_id, k.algorithm, COUNT(*) AS n, 0 AS fallback
FROM unnest($1::text[], $2::text[]) AS d (user_id, device_id)
JOIN e2e_one_time_keys k ON k.user_id = d.user_id AND k.device_id = d.device_id
GROUP BY k.user_id, k.device_id, k.algorithm
UNION ALL
SELECT f.user_id, f.device_id, f.algorithm, 0, 1
FROM unnest($1::text[], $2::text[]) AS d (user_id, device_id)
JOIN e2e_fallback_keys f ON f.user_id = d.user_id AND f.device_id = d.device_id
WHERE f.used = 0
"""
KEY_COUNTS_SQLITE = """
SELECT k.user_id, k.device_id, k.algorithm, COUNT(*) AS n, 0 AS fallback
FROM json_each($1) AS d
JOIN e2e_one_time_keys k ON k.user_id = json_extract(d.value, '$[0]')
                         AND k.device_id = json_extract(d.value, '$[1]')
GROUP BY k.user_id, k.device_id, k.algorithm
UNION ALL
SELECT f.user_id, f.device_id, f.algorithm, 0, 1
FROM json_each($1) AS d
JOIN e2e_fallback_keys f ON f.user_id = json_extract(d.value, '$[0]')
                         AND f.device_id = json_extract(d.value, '$[1]')
WHERE f.used = 0
"""


@attrs.frozen
class DeviceKeyCounts:
    """A device's one-time keys left per algorithm (algorithms with none are absent) and
    the algorithms of its unused fallback keys, sorted."""

    one_time_keys: dict[str, int]
    unused_fallback_types: list[str]


async def unread_counts_of_users(conn: Connection,
                                 user_ids: Sequence[str]) -> dict[str, RoomThreadCounts]:
    """user -> room -> thread -> (notifications, highlights), non-zero counts only; every
    user asked for is present."""
    users = list(dict.fromkeys(user_ids))
    out: dict[str, RoomThreadCounts] = {u: {} for u in users}
    for r in await fetch_for_ids(conn, UNREAD_COUNTS_PG, UNREAD_COUNTS_SQLITE, users):
        out[r["user_id"]].setdefault(r["room_id"], {})[r["thread_id"]] = (
            int(r["notif_count"]), int(r["highlight_count"]))
    return out


async def key_counts_of_devices(conn: Connection, devices: Sequence[tuple[str, str]]
                                ) -> dict[tuple[str, str], DeviceKeyCounts]:
    """(user, device) -> its key counts; every device asked for is present."""
    pairs = list(dict.fromkeys(devices))
    if not pairs:
        return {}
    if is_postgres(conn):
        rows = await conn.fetch(KEY_COUNTS_PG, [u for u, _ in pairs], [d for _, d in pairs])
    else:
        rows = await conn.fetch(KEY_COUNTS_SQLITE, json.dumps(pairs))
    one_time: dict[tuple[str, str], dict[str, int]] = {p: {} for p in pairs}
    fallback: dict[tuple[str, str], list[str]] = {p: [] for p in pairs}
    for r in rows:
        key = (r["user_id"], r["device_id"])
        if r["fallback"]:
            fallback[key].append(r["algorithm"])
        else:
            one_time[key][r["algorithm"]] = int(r["n"])
    return {p: DeviceKeyCounts(one_time[p], sorted(fallback[p])) for p in pairs}
