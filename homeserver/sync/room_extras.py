"""Room summaries (joined rooms) and stripped state (invites and knocks) for /sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync (RoomSummary)
and #stripped-state. Both are read for all rooms of a sync in a fixed number of queries;
summaries are shared by the syncs at one events position (sync/shared_reads.py), each
user leaving themself out of the heroes afterwards. An incremental sync sends only the
summaries that may have changed (`summary_rooms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Connection
from homeserver.storage.events import StoredEvent
from homeserver.storage.sync_queries import SyncQueries
from homeserver.sync.room_plan import RoomPlan
from homeserver.sync.room_states import RoomStateLog
from homeserver.sync.room_sync import PreparedRooms, has_member_event
from homeserver.sync.shared_reads import SharedReads, heroes_of

JsonDict = dict[str, Any]
MAX_HEROES = 5
# The state a client needs to show an invite or knock before joining (spec: stripped
# state, "recommended" events).
STRIPPED_TYPES = ("m.room.create", "m.room.name", "m.room.avatar", "m.room.topic",
                  "m.room.join_rules", "m.room.canonical_alias", "m.room.encryption")


def summary_rooms(states: RoomStateLog, plans: Sequence[RoomPlan], prepared: PreparedRooms,
                  since: int | None) -> tuple[set[str] | None, set[str]]:
    """Of a sync's joined rooms: those whose summary is sent (None: all of them, an
    initial sync), and those shown for it even with nothing else to show.

    Spec: an unchanged summary may be omitted. Sent: a full room's, and an incremental
    room's whose members may have changed after `since`, by the room state log or by a
    membership change among the new events (which the log may not have been told of
    yet), or whose timeline is limited. A room whose members did change is shown for it
    even if its filter hides the change: once past `since`, it would not be sent again."""
    if since is None:
        return None, set()
    forced = prepared.with_member_events()
    forced.update(p.room_id for p in plans if states.member_changed_after(p.room_id, since))
    summarized = forced | prepared.limited()
    summarized.update(p.room_id for p in plans
                      if p.full or states.changed_after(p.room_id, since) is not False)
    return summarized, forced


def summaries_wanted(states: RoomStateLog, since: int,
                     by_room: dict[str, list[StoredEvent]]) -> list[str]:
    """Of a stream window's rooms, those whose summary the syncs from `since` send (for
    SharedReads to read them ahead)."""
    return [r for r, events in by_room.items()
            if states.changed_after(r, since) is not False or has_member_event(events)]


class RoomExtras:
    def __init__(self, stores: RoomStores, queries: SyncQueries, shared: SharedReads):
        self._stores = stores
        self._queries = queries
        self._shared = shared

    async def summaries(self, user_id: str, room_ids: Sequence[str],
                        position: int) -> dict[str, JsonDict]:
        """room -> RoomSummary as of events `position`. Heroes: the first joined or
        invited members by stream ordering, else the first who left or were banned;
        never the user. Takes connections of its own (see shared_reads.py)."""
        if not room_ids:
            return {}
        bases = await self._shared.summaries(position, room_ids, MAX_HEROES)
        return {room_id: bases[room_id].summary(user_id) for room_id in room_ids}

    async def heroes(self, conn: Connection, user_id: str,
                     room_ids: Sequence[str]) -> dict[str, list[str]]:
        """room -> the summary's `m.heroes`, read on the caller's connection."""
        if not room_ids:
            return {}
        candidates = await self._queries.hero_candidates(conn, room_ids, user_id, MAX_HEROES)
        return {r: heroes_of(user_id, *candidates.get(r, ([], [])), MAX_HEROES) for r in room_ids}

    async def stripped_states(self, conn: Connection,
                              plans: Sequence[RoomPlan]) -> dict[str, list[JsonDict]]:
        """room -> stripped state after the user's invite or knock, that event last."""
        if not plans:
            return {}
        event_states = await self._queries.event_states(
            conn, [p.membership.event_id for p in plans])
        snapshots = [event_states[p.membership.event_id][1] for p in plans
                     if p.membership.event_id in event_states]
        states = await self._queries.snapshot_states(conn, snapshots)
        wanted: dict[str, list[str]] = {}
        for plan in plans:
            after = event_states.get(plan.membership.event_id)
            state = states.get(after[1], {}) if after is not None else {}
            ids = [state[(t, "")] for t in STRIPPED_TYPES if (t, "") in state]
            wanted[plan.room_id] = [*ids, plan.membership.event_id]
        stored = await self._stores.events.get_pdus(conn, [e for ids in wanted.values() for e in ids])
        out: dict[str, list[JsonDict]] = {}
        for room_id, ids in wanted.items():
            out[room_id] = [{"type": p.type, "state_key": p.state_key, "content": p.content,
                             "sender": p.sender}
                            for p in (stored[e] for e in dict.fromkeys(ids) if e in stored)]
        return out

