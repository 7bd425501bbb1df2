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

An incremental joined room whose events nothing about the user decides (`_share_key`:
the same window and filters, no visibility check, no ignored sender) is chosen once for
every sync at that position, its events' formats with it: the syncs one message wakes
wait for the first one's choice instead of each making its own.
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
from homeserver.sync.shared_reads import (
    NOBODY,
    SharedMemo,
    SharedReads,
    StreamWindow,
    is_personal,
    personal_copy,
    read_shared,
)
from homeserver.sync.sync_result import Timeline
from homeserver.sync.sync_visibility import needs_check, visible_events

JsonDict = dict[str, Any]
DEFAULT_TIMELINE_LIMIT = 10
# Rooms whose chosen events are remembered for the other syncs at the same position and
# window (a few positions' worth of every room that has long-polls waiting).
SHARED_ROOMS = 4096
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
    # Set when the chosen events are shared with other users (see `_share_key`).
    shared: _SharedRoom | None = None

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

    def with_member_events(self) -> set[str]:
        """The rooms whose new events, before any filter, hold a membership change."""
        return {r.plan.room_id for r in self.rooms if has_member_event(r.window)}

    def limited(self) -> set[str]:
        return {r.plan.room_id for r in self.rooms if r.limited}


def has_member_event(events: Sequence[StoredEvent]) -> bool:
    return any(e.pdu.type == MEMBER and e.pdu.is_state() for e in events)


def _pdu_view(event: StoredEvent) -> Mapping[str, Any]:
    pdu = event.pdu
    return {"type": pdu.type, "sender": pdu.sender, "room_id": pdu.room_id, "content": pdu.content}


# (room, low, high, timeline filter, state filter, use_state_after): see `_share_key`.
_ShareKey = tuple[str, int, int, RoomEventFilter, RoomEventFilter, bool]


@attrs.frozen
class _SharedRoom:
    """A room's timeline and state events as any user with the same key sees them
    (shared, never mutated), and their client formats for nobody as of the key's `high`
    (made when the events are chosen, or by the first client-format sync to need them;
    see SharedReads.formats)."""

    timeline: list[StoredEvent]
    state_ids: list[str]
    state_events: dict[str, StoredEvent]
    bases: dict[str, JsonDict] = attrs.field(factory=dict)

    def events(self) -> list[StoredEvent]:
        return [*self.timeline, *(self.state_events[i] for i in self.state_ids)]


def _share_key(room: _Room, timeline_filter: RoomEventFilter, state_filter: RoomEventFilter,
               use_state_after: bool, ignored: frozenset[str]) -> _ShareKey | None:
    """The key under which a room's chosen events can be shared between users, or None
    when what the user sees of it is their own. Shared: an incremental joined room whose
    timeline needs no visibility check (the user was joined before all of it) and holds
    no event of a user they ignore; nothing else about the user decides its events (a
    full room's lazy-loaded members include the user and the heroes). An incremental
    joined room was joined at or before `since`, so its timeline needs no check; the
    check stays as the rule's statement. Events in (low, high] are fixed once `high` is
    committed (shared_reads.py), state snapshots never change, so the answer for a key
    never changes."""
    plan = room.plan
    if plan.full or plan.section != JOIN:
        return None
    if needs_check(plan.membership.membership, plan.membership_position, room.oldest_position):
        return None
    if ignored and any(e.pdu.sender in ignored for e in room.window):
        return None
    return (plan.room_id, plan.low, plan.high, timeline_filter, state_filter, use_state_after)


class RoomSync:
    def __init__(self, stores: RoomStores, loader: ClientEventLoader, queries: SyncQueries,
                 shared: SharedReads, *, shared_rooms: int = SHARED_ROOMS):
        self._stores = stores
        self._loader = loader
        self._queries = queries
        self._shared = shared
        self._shared_rooms = SharedMemo(shared_rooms)

    async def read(self, db: Database, user_id: str, plans: Sequence[RoomPlan],
                   sync_filter: Filter, *, use_state_after: bool,
                   extra_members: Mapping[str, set[str]], ignored: frozenset[str] = frozenset(),
                   window: StreamWindow | None = None) -> PreparedRooms:
        """Timeline and state events of each planned join/leave room. `extra_members`:
        room -> users whose membership a lazy-loading client needs besides the senders
        (heroes). Timeline events of `ignored` senders are left out (spec:
        #ignoring-users). `window`: the new events of an incremental sync, when shared.
        Rooms whose events are the same for every user with the same window (see
        `_share_key`) are chosen once for all of them. Takes connections of its own, and
        none when the shared window and the shared rooms answer everything (a woken
        long-poll); must be called holding none (see shared_reads.py)."""
        timeline_filter, state_filter = sync_filter.room.timeline, sync_filter.room.state
        limit = timeline_filter.limit_or(DEFAULT_TIMELINE_LIMIT)
        by_plan: dict[int, _Room] = {}
        uncovered = []
        for plan in plans:
            if window is not None and window.covers(plan.low, plan.high):
                events = window.room_events(plan.room_id, plan.low, plan.high)
                by_plan[id(plan)] = _Room(plan, events[max(0, len(events) - limit):],
                                          len(events) > limit)
            else:
                uncovered.append(plan)
        if uncovered:
            async with db.connection() as conn:
                for room in await self._read_windows(conn, uncovered, limit):
                    by_plan[id(room.plan)] = room
        rooms = [by_plan[id(p)] for p in plans]
        shareable: dict[_ShareKey, _Room] = {}
        own = []
        for room in rooms:
            key = _share_key(room, timeline_filter, state_filter, use_state_after, ignored)
            if key is None:
                own.append(room)
            else:
                shareable[key] = room
        stored: dict[str, StoredEvent] = {}
        if shareable:
            shared = await read_shared(
                self._shared_rooms, None, list(shareable),
                lambda keys: self._choose_shared(db, keys, [shareable[k] for k in keys],
                                                 sync_filter, use_state_after))
            for key, room in shareable.items():
                entry = shared[key]
                room.timeline, room.state_ids, room.shared = entry.timeline, entry.state_ids, entry
                stored.update(entry.state_events)
        if own:
            async with db.connection() as conn:
                await self._fill_timelines(conn, user_id, own, timeline_filter, ignored)
                await self._fill_state(conn, user_id, own, state_filter, use_state_after,
                                       extra_members)
                stored.update(await self._state_events(conn, own, state_filter))
        return PreparedRooms(rooms, stored)

    async def _choose_shared(self, db: Database, keys: list[_ShareKey], rooms: list[_Room],
                             sync_filter: Filter,
                             use_state_after: bool) -> dict[_ShareKey, _SharedRoom]:
        """The shared rooms' events: nothing about the user decides them (`_share_key`),
        so they are chosen for nobody in particular."""
        timeline_filter, state_filter = sync_filter.room.timeline, sync_filter.room.state
        async with db.connection() as conn:
            await self._fill_timelines(conn, NOBODY, rooms, timeline_filter, frozenset())
            await self._fill_state(conn, NOBODY, rooms, state_filter, use_state_after, {})
            stored = await self._state_events(conn, rooms, state_filter)
        out = {key: _SharedRoom(room.timeline, room.state_ids,
                                {e: stored[e] for e in room.state_ids})
               for key, room in zip(keys, rooms, strict=True)}
        if sync_filter.event_format == "client":
            # Their formats too, while the other syncs wait for these rooms anyway (on
            # PostgreSQL each shared read they wait for is one more turn for all of them).
            # An incremental sync formats as of its position, the rooms' `high`.
            by_high: dict[int, list[_SharedRoom]] = {}
            for key, room in zip(keys, rooms, strict=True):
                by_high.setdefault(room.plan.high, []).append(out[key])
            for high, shared_rooms in by_high.items():
                events = [e for shared in shared_rooms for e in shared.events()]
                bases = await self._shared.formats(high, events)
                for shared in shared_rooms:
                    shared.bases.update((e.event_id, bases[e.event_id]) for e in shared.events()
                                        if e.event_id in bases)
        return out

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
            # Shared rooms carry their events' formats once one sync has made them.
            with_bases = [r.shared for r in rooms
                          if r.shared is not None and r.plan.high == shared_at]
            known = {k: v for shared in with_bases for k, v in shared.bases.items()}
            by_id, bases = await self._client_format(db, user_id, device_id, ordered,
                                                     shared_at, known)
            for shared in with_bases:
                if not shared.bases:
                    shared.bases.update((e.event_id, bases[e.event_id]) for e in shared.events()
                                        if e.event_id in bases)
        if sync_filter.event_fields is not None:
            by_id = {k: sync_filter.project(v) for k, v in by_id.items()}
        out = {}
        for room in rooms:
            prev = (room.oldest_position - 1) if room.oldest_position is not None else room.plan.high
            timeline = Timeline([by_id[e.event_id] for e in room.timeline], room.limited,
                                stream_token(prev))
            out[room.plan.room_id] = RoomContent(timeline, [by_id[e] for e in room.state_ids])
        return out

    async def _read_windows(self, conn: Connection, plans: Sequence[RoomPlan],
                            limit: int) -> list[_Room]:
        """The rooms' timeline windows read from the database (not in a shared window)."""
        # One more than asked for tells whether the window was limited.
        recent = await self._queries.recent_events(
            conn, [Window(p.room_id, p.low, p.high) for p in plans], limit + 1)
        stored = await self._stores.events.get_many(
            conn, [e.event_id for events in recent.values() for e in events[:limit]])
        rooms = []
        for plan in plans:
            newest_first = recent.get(plan.room_id, [])
            kept = [stored[e.event_id] for e in newest_first[:limit][::-1]
                    if e.event_id in stored]
            rooms.append(_Room(plan, kept, len(newest_first) > limit))
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
        if not any(need.any() for need in needs.values()):
            return  # every room's state stays empty (an incremental sync, nothing limited)
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
                             events: list[StoredEvent], shared_at: int | None,
                             known: dict[str, JsonDict]
                             ) -> tuple[dict[str, JsonDict], dict[str, JsonDict]]:
        """event -> client format for this user: shared formats (`known` ones, the others
        from SharedReads) copied where nothing in them is personal, the rest formatted for
        the user. Also returns the shared formats."""
        events = list({e.event_id: e for e in events}.values())
        out: dict[str, JsonDict] = {}
        base: dict[str, JsonDict] = {}
        personal = events
        if shared_at is not None and events:
            missing = [e for e in events if e.event_id not in known]
            base = known if not missing else {**known,
                                              **await self._shared.formats(shared_at, missing)}
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
        return out, base


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
