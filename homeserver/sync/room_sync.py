"""Timelines and state of the joined and left rooms of one sync, for all rooms at once.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync . Each
room's timeline is its newest events in the planned window (`limited` when more exist);
`state` is the state at the *start* of the timeline, less what the timeline itself
carries: all of it for a full room, the change since `since` otherwise. A timeline that
is not limited holds every event since `since`, so the state at its start is what the
client has and `state` is empty. With `use_state_after` the state at the *end* of the
timeline is sent as `state_after` instead, timeline state events included.

Lazy-loading members (filter `room.state.lazy_load_members`): of the m.room.member
state, only the timeline senders', the user's own and the heroes' on a full room, and
on an incremental one every membership change in the gap (the spec requires those).
Members are re-sent even when the client may have them (we keep no per-device record of
what a client holds, so `include_redundant_members` is always in effect).

Every step reads all rooms in one query, so a sync costs the same number of queries for
one room or a thousand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.stores import RoomStores
from homeserver.rooms.tokens import stream_token
from homeserver.storage.database import Connection
from homeserver.storage.events import StoredEvent
from homeserver.storage.sync_queries import StateMap, SyncQueries, Window
from homeserver.sync.filters import Filter, RoomEventFilter
from homeserver.sync.room_plan import JOIN, RoomPlan
from homeserver.sync.sync_result import Timeline
from homeserver.sync.sync_visibility import needs_check, visible_events

JsonDict = dict[str, Any]
DEFAULT_TIMELINE_LIMIT = 10
MEMBER = "m.room.member"
NAMING_TYPES = ("m.room.name", "m.room.canonical_alias")


@attrs.define
class _Room:
    """Work in progress for one room."""

    plan: RoomPlan
    window: list[str]  # event IDs of the timeline window, oldest first (before filtering)
    oldest_position: int | None
    limited: bool
    timeline: list[StoredEvent] = attrs.field(factory=list)
    state_ids: list[str] = attrs.field(factory=list)


@attrs.frozen
class RoomContent:
    timeline: Timeline
    state: list[JsonDict]


def _pdu_view(event: StoredEvent) -> Mapping[str, Any]:
    pdu = event.pdu
    return {"type": pdu.type, "sender": pdu.sender, "room_id": pdu.room_id, "content": pdu.content}


class RoomSync:
    def __init__(self, stores: RoomStores, loader: ClientEventLoader, queries: SyncQueries):
        self._stores = stores
        self._loader = loader
        self._queries = queries

    async def rooms(self, conn: Connection, user_id: str, device_id: str | None,
                    plans: Sequence[RoomPlan], sync_filter: Filter, *, use_state_after: bool,
                    extra_members: Mapping[str, set[str]],
                    ignored: frozenset[str] = frozenset()) -> dict[str, RoomContent]:
        """Timeline and state of each planned join/leave room. `extra_members`: room ->
        users whose membership a lazy-loading client needs besides the senders (heroes).
        Timeline events of `ignored` senders are left out (spec: #ignoring-users)."""
        if not plans:
            return {}
        rooms = await self._windows(conn, plans, sync_filter.room.timeline)
        await self._fill_timelines(conn, user_id, rooms, sync_filter.room.timeline, ignored)
        await self._fill_state(conn, user_id, rooms, sync_filter.room.state, use_state_after,
                               extra_members)
        return await self._format(conn, user_id, device_id, rooms, sync_filter)

    async def _windows(self, conn: Connection, plans: Sequence[RoomPlan],
                       timeline_filter: RoomEventFilter) -> list[_Room]:
        limit = timeline_filter.limit_or(DEFAULT_TIMELINE_LIMIT)
        # One more than asked for tells whether the window was limited.
        recent = await self._queries.recent_events(
            conn, [Window(p.room_id, p.low, p.high) for p in plans], limit + 1)
        rooms = []
        for plan in plans:
            newest_first = recent.get(plan.room_id, [])
            kept = newest_first[:limit][::-1]
            rooms.append(_Room(plan, [e.event_id for e in kept],
                               kept[0].stream_ordering if kept else None,
                               len(newest_first) > limit))
        return rooms

    async def _fill_timelines(self, conn: Connection, user_id: str, rooms: list[_Room],
                              timeline_filter: RoomEventFilter, ignored: frozenset[str]) -> None:
        stored = await self._stores.events.get_many(conn, [e for r in rooms for e in r.window])
        check = [r for r in rooms
                 if needs_check(r.plan.membership.membership,
                                r.plan.membership_position if r.plan.section == JOIN else None,
                                r.oldest_position)]
        history: dict[str, list[Any]] = {}
        visibility: dict[str, list[tuple[int, str]]] = {}
        if check:
            room_ids = [r.plan.room_id for r in check]
            for change in await self._queries.membership_history(conn, user_id, room_ids):
                history.setdefault(change.room_id, []).append(change)
            visibility = await self._queries.visibility_changes(conn, room_ids)
        checked = {id(r) for r in check}
        for room in rooms:
            events = [stored[e] for e in room.window if e in stored]
            if id(room) in checked:
                events = visible_events(user_id, events, history.get(room.plan.room_id, []),
                                        visibility.get(room.plan.room_id, []))
            room.timeline = [e for e in events if e.pdu.sender not in ignored
                             and timeline_filter.matches(_pdu_view(e))]

    async def _fill_state(self, conn: Connection, user_id: str, rooms: list[_Room],
                          state_filter: RoomEventFilter, use_state_after: bool,
                          extra_members: Mapping[str, set[str]]) -> None:
        lazy = state_filter.lazy_load_members
        first_states = await self._queries.event_states(conn, [r.window[0] for r in rooms if r.window])
        points = [(r.plan.room_id, r.plan.high) for r in rooms]
        points += [(r.plan.room_id, r.plan.low) for r in rooms if not r.plan.full]
        at = await self._queries.snapshots_at(conn, points)

        def end(room: _Room) -> int | None:
            return at.get((room.plan.room_id, room.plan.high))

        def start(room: _Room) -> int | None:
            if room.window and room.window[0] in first_states:
                return first_states[room.window[0]][0]
            return end(room)

        def since(room: _Room) -> int | None:
            return at.get((room.plan.room_id, room.plan.low))

        wanted: set[int] = set()
        for room in rooms:
            boundary = end(room) if use_state_after else start(room)
            needs_diff = not room.plan.full and (use_state_after or room.limited)
            for snapshot in (boundary, since(room) if needs_diff else None,
                             start(room) if lazy else None):
                if snapshot is not None:
                    wanted.add(snapshot)
        states = await self._queries.snapshot_states(conn, sorted(wanted))

        def state(snapshot: int | None) -> StateMap:
            return states.get(snapshot, {}) if snapshot is not None else {}

        for room in rooms:
            shown = state(end(room) if use_state_after else start(room))
            if room.plan.full:
                entries = dict(shown)
            elif use_state_after or room.limited:
                before = state(since(room))
                entries = {k: v for k, v in shown.items() if before.get(k) != v}
            else:
                entries = {}
            gap_members = {k for k in entries if k[0] == MEMBER} if not room.plan.full else set()
            if lazy:
                keep = {e.pdu.sender for e in room.timeline}
                if room.plan.full:
                    keep.add(user_id)
                    # Heroes name a room only when it has no name or alias of its own.
                    if not any((t, "") in shown for t in NAMING_TYPES):
                        keep |= extra_members.get(room.plan.room_id, set())
                senders = {k: v for k, v in state(start(room)).items()
                           if k[0] == MEMBER and k[1] in keep}
                entries = {k: v for k, v in entries.items()
                           if k[0] != MEMBER or k in gap_members or k[1] in keep}
                entries.update({k: v for k, v in senders.items() if k not in entries})
            in_timeline = set() if use_state_after else {e.event_id for e in room.timeline}
            room.state_ids = [eid for key, eid in sorted(entries.items())
                              if eid not in in_timeline and state_filter.matches_type(key[0])]

    async def _format(self, conn: Connection, user_id: str, device_id: str | None,
                      rooms: list[_Room], sync_filter: Filter) -> dict[str, RoomContent]:
        state_filter = sync_filter.room.state
        stored = await self._stores.events.get_many(conn, [e for r in rooms for e in r.state_ids])
        for room in rooms:
            state = [stored[e] for e in room.state_ids if e in stored]
            room.state_ids = [e.event_id for e in state if state_filter.matches(_pdu_view(e))]
        # One formatting pass for every event of every room keeps its queries batched.
        ordered = [e for r in rooms for e in r.timeline]
        ordered += [stored[e] for r in rooms for e in r.state_ids]
        if sync_filter.event_format == "federation":
            formatted = [dict(e.pdu.get_json()) for e in ordered]
        else:
            formatted = await self._loader.format(conn, ordered, user_id=user_id,
                                                  device_id=device_id, include_room_id=False)
        formatted = [sync_filter.project(e) for e in formatted]
        by_id = {e.event_id: f for e, f in zip(ordered, formatted, strict=True)}
        out = {}
        for room in rooms:
            prev = (room.oldest_position - 1) if room.oldest_position is not None else room.plan.high
            timeline = Timeline([by_id[e.event_id] for e in room.timeline], room.limited,
                                stream_token(prev))
            out[room.plan.room_id] = RoomContent(timeline, [by_id[e] for e in room.state_ids])
        return out
