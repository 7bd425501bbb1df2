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
one room or a thousand, and a step whose answer would go unused is not taken (an
incremental room whose timeline is not limited needs no state at all without lazy
loading). An incremental sync takes its rooms' new events from the shared stream window
and their client format from the shared formats (sync/shared_reads.py) when it can, and
formats only what is personal to the user itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.stores import RoomStores
from homeserver.rooms.tokens import stream_token
from homeserver.storage.database import Connection, Database
from homeserver.storage.events import StoredEvent
from homeserver.storage.sync_queries import StateMap, SyncQueries, Window
from homeserver.sync.filters import Filter, RoomEventFilter
from homeserver.sync.room_plan import JOIN, RoomPlan
from homeserver.sync.shared_reads import SharedReads, StreamWindow, is_personal, personal_copy
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
    window: list[StoredEvent]  # the timeline window, oldest first (before filtering)
    limited: bool
    timeline: list[StoredEvent] = attrs.field(factory=list)
    state_ids: list[str] = attrs.field(factory=list)

    @property
    def oldest_position(self) -> int | None:
        return self.window[0].stream_ordering if self.window else None


@attrs.frozen
class RoomContent:
    timeline: Timeline
    state: list[JsonDict]


@attrs.frozen
class PreparedRooms:
    """The rooms of one sync with their timeline and state events chosen, not yet
    formatted (`RoomSync.read`, then `RoomSync.format`)."""

    rooms: list[_Room]
    state_events: dict[str, StoredEvent]


def _pdu_view(event: StoredEvent) -> Mapping[str, Any]:
    pdu = event.pdu
    return {"type": pdu.type, "sender": pdu.sender, "room_id": pdu.room_id, "content": pdu.content}


class RoomSync:
    def __init__(self, stores: RoomStores, loader: ClientEventLoader, queries: SyncQueries,
                 shared: SharedReads):
        self._stores = stores
        self._loader = loader
        self._queries = queries
        self._shared = shared

    async def read(self, conn: Connection, user_id: str, plans: Sequence[RoomPlan],
                   sync_filter: Filter, *, use_state_after: bool,
                   extra_members: Mapping[str, set[str]], ignored: frozenset[str] = frozenset(),
                   window: StreamWindow | None = None) -> PreparedRooms:
        """Timeline and state events of each planned join/leave room. `extra_members`:
        room -> users whose membership a lazy-loading client needs besides the senders
        (heroes). Timeline events of `ignored` senders are left out (spec:
        #ignoring-users). `window`: the new events of an incremental sync, when shared."""
        rooms = await self._windows(conn, plans, sync_filter.room.timeline, window)
        await self._fill_timelines(conn, user_id, rooms, sync_filter.room.timeline, ignored)
        await self._fill_state(conn, user_id, rooms, sync_filter.room.state, use_state_after,
                               extra_members)
        return PreparedRooms(rooms, await self._state_events(conn, rooms, sync_filter.room.state))

    async def format(self, db: Database, user_id: str, device_id: str | None,
                     prepared: PreparedRooms, sync_filter: Filter,
                     shared_at: int | None) -> dict[str, RoomContent]:
        """Each room's timeline and state in the filter's event format. `shared_at`: the
        events position of an incremental sync, whose formats are shared by the syncs at
        that position (only what is personal is formatted for the user). Takes
        connections of its own and must be called holding none (see shared_reads.py)."""
        rooms, stored = prepared.rooms, prepared.state_events
        # One formatting pass for every event of every room keeps its queries batched.
        ordered = [e for r in rooms for e in r.timeline]
        ordered += [stored[e] for r in rooms for e in r.state_ids]
        if sync_filter.event_format == "federation":
            by_id = {e.event_id: dict(e.pdu.get_json()) for e in ordered}
        else:
            by_id = await self._client_format(db, user_id, device_id, ordered, shared_at)
        by_id = {k: sync_filter.project(v) for k, v in by_id.items()}
        out = {}
        for room in rooms:
            prev = (room.oldest_position - 1) if room.oldest_position is not None else room.plan.high
            timeline = Timeline([by_id[e.event_id] for e in room.timeline], room.limited,
                                stream_token(prev))
            out[room.plan.room_id] = RoomContent(timeline, [by_id[e] for e in room.state_ids])
        return out

    async def _windows(self, conn: Connection, plans: Sequence[RoomPlan],
                       timeline_filter: RoomEventFilter,
                       shared: StreamWindow | None) -> list[_Room]:
        if not plans:
            return []
        limit = timeline_filter.limit_or(DEFAULT_TIMELINE_LIMIT)
        from_shared: dict[str, list[StoredEvent]] = {}
        to_read = []
        for plan in plans:
            if shared is not None and shared.covers(plan.low, plan.high):
                from_shared[plan.room_id] = shared.room_events(plan.room_id, plan.low, plan.high)
            else:
                to_read.append(plan)
        # One more than asked for tells whether the window was limited.
        recent = await self._queries.recent_events(
            conn, [Window(p.room_id, p.low, p.high) for p in to_read], limit + 1)
        stored = await self._stores.events.get_many(
            conn, [e.event_id for events in recent.values() for e in events[:limit]])
        rooms = []
        for plan in plans:
            if plan.room_id in from_shared:
                events = from_shared[plan.room_id]
                kept, limited = events[max(0, len(events) - limit):], len(events) > limit
            else:
                newest_first = recent.get(plan.room_id, [])
                kept = [stored[e.event_id] for e in newest_first[:limit][::-1]
                        if e.event_id in stored]
                limited = len(newest_first) > limit
            rooms.append(_Room(plan, kept, limited))
        return rooms

    async def _fill_timelines(self, conn: Connection, user_id: str, rooms: list[_Room],
                              timeline_filter: RoomEventFilter, ignored: frozenset[str]) -> None:
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
            events = room.window
            if id(room) in checked:
                events = visible_events(user_id, events, history.get(room.plan.room_id, []),
                                        visibility.get(room.plan.room_id, []))
            room.timeline = [e for e in events if e.pdu.sender not in ignored
                             and timeline_filter.matches(_pdu_view(e))]

    async def _fill_state(self, conn: Connection, user_id: str, rooms: list[_Room],
                          state_filter: RoomEventFilter, use_state_after: bool,
                          extra_members: Mapping[str, set[str]]) -> None:
        lazy = state_filter.lazy_load_members
        needs = {id(r): _StateNeeds.of(r, lazy, use_state_after) for r in rooms}
        first_states = await self._queries.event_states(
            conn, [r.window[0].event_id for r in rooms if r.window and needs[id(r)].start])
        points = [(r.plan.room_id, r.plan.high) for r in rooms
                  if needs[id(r)].end or (needs[id(r)].start and not r.window)]
        points += [(r.plan.room_id, r.plan.low) for r in rooms if needs[id(r)].since]
        at = await self._queries.snapshots_at(conn, points)

        def end(room: _Room) -> int | None:
            return at.get((room.plan.room_id, room.plan.high))

        def start(room: _Room) -> int | None:
            if room.window and room.window[0].event_id in first_states:
                return first_states[room.window[0].event_id][0]
            return end(room)

        def since(room: _Room) -> int | None:
            return at.get((room.plan.room_id, room.plan.low))

        wanted: set[int | None] = set()
        for room in rooms:
            need = needs[id(room)]
            if need.shown:
                wanted.add(end(room) if use_state_after else start(room))
            if need.since:
                wanted.add(since(room))
            if need.start:
                wanted.add(start(room))
        states = await self._queries.snapshot_states(conn, sorted(s for s in wanted if s is not None))

        def state(snapshot: int | None) -> StateMap:
            return states.get(snapshot, {}) if snapshot is not None else {}

        for room in rooms:
            if not needs[id(room)].any():
                continue
            shown = state(end(room) if use_state_after else start(room)) if needs[id(room)].shown else {}
            if room.plan.full:
                entries = dict(shown)
            elif needs[id(room)].since:
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
                at_start = state(start(room)) if keep else {}
                # By key, not by scanning: a big room's state has thousands of members.
                senders = {(MEMBER, u): at_start[(MEMBER, u)] for u in sorted(keep)
                           if (MEMBER, u) in at_start}
                entries = {k: v for k, v in entries.items()
                           if k[0] != MEMBER or k in gap_members or k[1] in keep}
                entries.update({k: v for k, v in senders.items() if k not in entries})
            in_timeline = set() if use_state_after else {e.event_id for e in room.timeline}
            room.state_ids = [eid for key, eid in sorted(entries.items())
                              if eid not in in_timeline and state_filter.matches_type(key[0])]

    async def _state_events(self, conn: Connection, rooms: list[_Room],
                            state_filter: RoomEventFilter) -> dict[str, StoredEvent]:
        stored = await self._stores.events.get_many(conn, [e for r in rooms for e in r.state_ids])
        for room in rooms:
            state = [stored[e] for e in room.state_ids if e in stored]
            room.state_ids = [e.event_id for e in state if state_filter.matches(_pdu_view(e))]
        return stored

    async def _client_format(self, db: Database, user_id: str, device_id: str | None,
                             events: list[StoredEvent], shared_at: int | None) -> dict[str, JsonDict]:
        """event -> client format for this user: shared formats copied where nothing in
        them is personal, the rest formatted for the user."""
        events = list({e.event_id: e for e in events}.values())
        out: dict[str, JsonDict] = {}
        personal = events
        if shared_at is not None and events:
            base = await self._shared.formats(shared_at, events)
            now = self._loader.now_ms()
            personal = []
            for event in events:
                formatted = base.get(event.event_id)
                if formatted is None or is_personal(user_id, event, formatted):
                    personal.append(event)
                else:
                    out[event.event_id] = personal_copy(formatted, now)
        if personal:
            async with db.connection() as conn:
                formatted_list = await self._loader.format(conn, personal, user_id=user_id,
                                                           device_id=device_id,
                                                           include_room_id=False)
            out.update((e.event_id, f) for e, f in zip(personal, formatted_list, strict=True))
        return out


@attrs.frozen
class _StateNeeds:
    """Which snapshots a room's state needs: the one shown (`shown`: at the start of the
    timeline, or its end with use_state_after), the one at `since` to diff against, the
    one at the start for lazy-loaded members; `end` when the room's end is needed."""

    shown: bool
    since: bool
    start: bool
    end: bool

    @classmethod
    def of(cls, room: _Room, lazy: bool, use_state_after: bool) -> _StateNeeds:
        full = room.plan.full
        diff = not full and (use_state_after or room.limited)
        shown = full or diff
        # Lazy members: the senders' (and on a full room the user's and heroes') entries.
        start = lazy and (full or bool(room.timeline))
        return cls(shown=shown, since=diff, start=start or (shown and not use_state_after),
                   end=shown and use_state_after)

    def any(self) -> bool:
        return self.shown or self.since or self.start
