"""Read-only batched reads of per-user values /sync needs, for the syncs one stream move
wakes together: the users' memberships, their unread notification counts and their
devices' key counts, in one statement for every user and device of a batch.

Each kind has the rows its single-user read returns (`MembershipStore.rooms_for_user`,
`NotificationStore.counts`, `E2eKeyStore.one_time_key_counts` and
`unused_fallback_key_types`). The tables belong to rooms, push and E2EE; nothing here
writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from homeserver.storage.batch import is_postgres
from homeserver.storage.database import Connection
from homeserver.storage.memberships import Membership

# room -> thread -> (notifications, highlights)
RoomThreadCounts = dict[str, dict[str, tuple[int, int]]]

# One round trip for every sync woken together. `kind` tells the rows apart: 3 a current
# membership (a: room, b: membership, c: event, d: sender, n: stream ordering, h:
# forgotten; oldest first), 0 a non-zero unread count (a: room, b: thread, n/h: the
# counts), 1 a one-time key count (a: device, b: algorithm, n), 2 an unused fallback key
# (a: device, b: algorithm). Devices travel as two parallel arrays (PostgreSQL) or one
# JSON array of pairs (SQLite); either way each is one lookup on the key tables'
# (user_id, device_id, ...) keys.
_PERSONAL_ROWS = """
SELECT 3 AS kind, m.user_id, m.room_id AS a, m.membership AS b, m.event_id AS c,
       m.sender AS d, m.stream_ordering AS n, m.forgotten AS h
FROM current_state cs JOIN room_memberships m ON m.event_id = cs.event_id
WHERE cs.type = 'm.room.member' AND cs.state_key {members}
UNION ALL
SELECT 0, user_id, room_id, thread_id, NULL, NULL, notif_count, highlight_count
FROM notification_counts
WHERE user_id {counted} AND (notif_count > 0 OR highlight_count > 0)
UNION ALL
SELECT 1, k.user_id, k.device_id, k.algorithm, NULL, NULL, COUNT(*), 0
FROM {devices} JOIN e2e_one_time_keys k ON {key_match}
GROUP BY k.user_id, k.device_id, k.algorithm
UNION ALL
SELECT 2, f.user_id, f.device_id, f.algorithm, NULL, NULL, 0, 0
FROM {devices} JOIN e2e_fallback_keys f ON {fallback_match}
WHERE f.used = 0
ORDER BY kind, n
"""
PERSONAL_ROWS_PG = _PERSONAL_ROWS.format(
    members="= ANY($1::text[])", counted="= ANY($2::text[])",
    devices="unnest($3::text[], $4::text[]) AS d (user_id, device_id)",
    key_match="k.user_id = d.user_id AND k.device_id = d.device_id",
    fallback_match="f.user_id = d.user_id AND f.device_id = d.device_id")
PERSONAL_ROWS_SQLITE = _PERSONAL_ROWS.format(
    members="IN (SELECT value FROM json_each($1))",
    counted="IN (SELECT value FROM json_each($2))", devices="json_each($3) AS d",
    key_match="k.user_id = json_extract(d.value, '$[0]')"
              " AND k.device_id = json_extract(d.value, '$[1]')",
    fallback_match="f.user_id = json_extract(d.value, '$[0]')"
                   " AND f.device_id = json_extract(d.value, '$[1]')")


@attrs.frozen
class DeviceKeyCounts:
    """A device's one-time keys left per algorithm (algorithms with none are absent) and
    the algorithms of its unused fallback keys, sorted."""

    one_time_keys: dict[str, int]
    unused_fallback_types: list[str]


@attrs.frozen
class PersonalRows:
    """Per user asked for: memberships and unread counts; per device: key counts."""

    memberships: dict[str, list[Membership]]
    unread: dict[str, RoomThreadCounts]
    keys: dict[tuple[str, str], DeviceKeyCounts]


async def personal_rows(conn: Connection, member_users: Sequence[str],
                        counted_users: Sequence[str],
                        devices: Sequence[tuple[str, str]]) -> PersonalRows:
    """The memberships of `member_users` (every one present, as
    SyncQueries.memberships_of_users), the unread counts of `counted_users` (every one
    present; non-zero counts only) and the key counts of `devices` (every one present)."""
    members = list(dict.fromkeys(member_users))
    counted = list(dict.fromkeys(counted_users))
    pairs = list(dict.fromkeys(devices))
    if is_postgres(conn):
        rows = await conn.fetch(PERSONAL_ROWS_PG, members, counted, [u for u, _ in pairs],
                                [d for _, d in pairs])
    else:
        rows = await conn.fetch(PERSONAL_ROWS_SQLITE, json.dumps(members), json.dumps(counted),
                                json.dumps(pairs))
    memberships: dict[str, list[Membership]] = {u: [] for u in members}
    unread: dict[str, RoomThreadCounts] = {u: {} for u in counted}
    one_time: dict[tuple[str, str], dict[str, int]] = {p: {} for p in pairs}
    fallback: dict[tuple[str, str], list[str]] = {p: [] for p in pairs}
    for r in rows:
        kind, user_id = r["kind"], r["user_id"]
        if kind == 3:
            n = r["n"]
            memberships[user_id].append(Membership(
                r["a"], user_id, r["b"], r["c"], r["d"], None if n is None else int(n),
                bool(r["h"])))
        elif kind == 0:
            unread[user_id].setdefault(r["a"], {})[r["b"]] = (int(r["n"]), int(r["h"]))
        elif kind == 1:
            one_time[(user_id, r["a"])][r["b"]] = int(r["n"])
        else:
            fallback[(user_id, r["a"])].append(r["b"])
    keys = {p: DeviceKeyCounts(one_time[p], sorted(fallback[p])) for p in pairs}
    return PersonalRows(memberships, unread, keys)
