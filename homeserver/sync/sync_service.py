"""GET /sync: one computation for initial and incremental syncs, long-polled through the
notifier. The WebSocket stream calls the same `sync` in a loop.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync

A sync covers the stream range (since, current]: `current` is read first, then the
user's memberships; a membership written in between raises the events position to
include it, which skips nothing because stream positions commit in order (see
storage/streams.py). `next_batch` is that `current`, so consecutive syncs cover adjacent
ranges: nothing is sent twice and nothing is skipped.

Long-poll: an empty incremental result waits on the notifier for any stream relevant to
the user to move past `next_batch`, then recomputes; a wake-up that turns out to bring
nothing visible (the notifier may wake spuriously) waits again for the remaining time.
A request whose `since` is the current token has nothing to compute: it goes straight to
waiting (a client re-polls right after every response), and computes only once woken or
at its timeout.

Many syncs woken by one event share their reads (sync/shared_reads.py), the events each
of their rooms shows when nothing about the user decides them (sync/room_sync.py), and
the current token (tokens.CurrentTokenReader); what is personal to each user (their
memberships, unread counts, their device's key counts) is read for all of them in one
statement (sync/personal_reads.py). A sync takes a database connection only for what it
reads alone: a woken long-poll usually takes none. An incremental sync sends a room's
summary only when its members may have changed (sync/room_states.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol

from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.persistence import PersistedEvent
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Database
from homeserver.storage.sync_queries import SyncQueries
from homeserver.sync.e2e_sync import E2eSync
from homeserver.sync.local_batches import LocalBatches
from homeserver.sync.notifier import Notifier
from homeserver.sync.personal_reads import Personal, PersonalReads, room_counts
from homeserver.sync.presence import PresenceService
from homeserver.sync.room_extras import MAX_HEROES, RoomExtras, summaries_wanted, summary_rooms
from homeserver.sync.room_plan import INVITE, JOIN, KNOCK, LEAVE, RoomPlan, plan_rooms
from homeserver.sync.room_sync import PreparedRooms, RoomContent, RoomSync
from homeserver.sync.shared_reads import SharedReads, StreamWindow
from homeserver.sync.sync_extras import Extras, SyncExtras
from homeserver.sync.sync_result import (
    OFFLINE,
    ONLINE,
    UNAVAILABLE,
    E2eSection,
    RoomCounts,
    RoomResult,
    SyncRequest,
    SyncResult,
)
from homeserver.sync.tokens import EVENTS, TYPING, CurrentTokenReader, SyncToken, token_from
from homeserver.sync.typing import TypingService

logger = logging.getLogger(__name__)
JsonDict = dict[str, Any]
# Users whose joined rooms (as of their last sync's events position) are remembered for
# a long-poll that has nothing to compute.
JOINED_MEMO_SIZE = 10_000


class UnreadCounts(Protocol):
    """Where unread counts come from instead of SyncService's own batched read of the push
    service's `notification_counts` (sync/personal_reads.py), when one is given."""

    async def unread_counts(self, user_id: str, room_ids: Sequence[str], *,
                            by_thread: bool = False) -> dict[str, RoomCounts]:
        """room -> its counts, for all rooms at once. `by_thread`: the filter's
        `unread_thread_notifications`, counts per thread root besides the main
        timeline's."""
        ...


class IgnoredUsers(Protocol):
    async def ignored_users(self, user_id: str) -> frozenset[str]:
        """The users whose events and invites `user_id` does not want (spec: #ignoring-users)."""
        ...


def room_event_listener(notifier: Notifier, queries: SyncQueries,
                        local: LocalBatches | None = None,
                        ) -> Callable[[PersistedEvent], Awaitable[None]]:
    """The rooms service's `on_event_persisted` callback that wakes syncs (and tells the
    notifier's room state log first: a woken sync may look the room up there; the sync
    queries the event's state snapshots, which a woken sync would otherwise read; and
    `local` the batch sent here it belongs to, whose events it would read too)."""
    async def on_event(persisted: PersistedEvent) -> None:
        pdu = persisted.pdu
        if local is not None and persisted.local_batch is not None:
            local.note(persisted.local_batch)
        if persisted.state_ids is not None:
            queries.remember_event_state(pdu.event_id, *persisted.state_ids)
        member = pdu.state_key if pdu.type == "m.room.member" else None
        notifier.room_states.observe(
            pdu.room_id, persisted.stream_ordering, persisted.current_snapshot_id,
            event_id=pdu.event_id, prev_events=pdu.prev_event_ids, state=pdu.is_state(),
            member=member is not None)
        positions = persisted.stream_positions
        notifier.notify_room_event(
            pdu.room_id, persisted.stream_ordering, member=member,
            token=None if positions is None else token_from(positions.items()))
    return on_event


class SyncService:
    def __init__(self, db: Database, stores: RoomStores, loader: ClientEventLoader,
                 extras: SyncExtras, typing: TypingService, presence: PresenceService,
                 notifier: Notifier, *, counts: UnreadCounts | None = None,
                 ignored: IgnoredUsers | None = None, queries: SyncQueries | None = None,
                 e2e: E2eSync | None = None, local: LocalBatches | None = None):
        self._db = db
        self._stores = stores
        self._queries = queries or SyncQueries()
        # Which rooms' state may have changed after a position (see room_states.py).
        self._room_states = notifier.room_states
        self._shared = SharedReads(db, stores.events, loader, self._queries,
                                   prefetch_heroes=MAX_HEROES,
                                   prefetch_rooms=partial(summaries_wanted, notifier.room_states),
                                   local=local)
        self._rooms = RoomSync(stores, loader, self._queries, self._shared)
        self._room_extras = RoomExtras(stores, self._queries, self._shared)
        self._extras = extras
        self._typing = typing
        self._presence = presence
        self._notifier = notifier
        # Without a `counts` port, unread counts are read here, batched with the key
        # counts across the syncs woken together (see personal_reads.py).
        self._counts = counts
        self._ignored = ignored
        self._e2e = e2e
        self._personal = PersonalReads(db, self._queries, counts=counts is None,
                                       keys=e2e is not None)
        self._tokens = CurrentTokenReader(db, lambda: {TYPING: typing.position},
                                          on_read=self._token_read,
                                          committed=notifier.committed_token)
        # user -> (events position, rooms joined then), from the user's last computed sync.
        self._joined: OrderedDict[str, tuple[int, frozenset[str]]] = OrderedDict()

    async def current_token(self) -> SyncToken:
        return await self._tokens.read()

    def _token_read(self, token: SyncToken) -> None:
        # Committed (read outside any transaction), and about to end syncs' ranges.
        self._stores.events.note_committed(token[EVENTS])
        self._room_states.note_handed_out(token[EVENTS])

    async def sync(self, request: SyncRequest) -> SyncResult:
        """One /sync request: at once when there is something (or nothing to wait for),
        else when something arrives or `timeout_ms` passes."""
        await self._update_presence(request)
        since = request.since
        joined = self._quiet_since(request, since)
        result: SyncResult | None = None
        if since is not None and joined is not None:
            # Nothing notified after the client's token: nothing to read until woken.
            waiting_from = since
            if self._e2e is not None and request.acknowledges_since:
                await self._e2e.acknowledge(request, since)
        else:
            current = await self.current_token()
            since = self._clamp(request, current)
            if self._e2e is not None and request.acknowledges_since:
                await self._e2e.acknowledge(request, since)
            if since is not None and since == current and not request.full_state:
                waiting_from, joined = since, await self._joined_rooms(request.user_id, since)
            else:
                result, joined = await self._compute(request, since, current)
                if since is None or request.full_state or not result.is_empty():
                    return result
                waiting_from = result.next_batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.timeout_ms / 1000
        while (remaining := deadline - loop.time()) > 0:
            woke = await self._notifier.wait_for(request.user_id, waiting_from, joined,
                                                 int(remaining * 1000))
            if not woke:
                break
            result, joined = await self._compute(request, since, await self._tokens.read())
            if not result.is_empty():
                break
            waiting_from = result.next_batch
        if result is None:
            result, _ = await self._compute(request, since, await self._tokens.read())
        return result

    @staticmethod
    def _clamp(request: SyncRequest, current: SyncToken) -> SyncToken | None:
        if request.since is None:
            return None
        since = request.since.clamp(current)
        if since != request.since:
            logger.info("sync token %s from the future for %s; clamped to %s",
                        request.since, request.user_id, since)
        return since

    def _quiet_since(self, request: SyncRequest, since: SyncToken | None) -> frozenset[str] | None:
        """The rooms to wait on when a long-poll can wait without reading anything: the
        client's token is one this server handed out (not from the future), the user's
        joined rooms at it are remembered, and nothing for the user or those rooms was
        notified after it (a write notifies once committed, so waiting misses nothing).
        None otherwise."""
        if since is None or request.full_state:
            return None
        last = self._tokens.last
        remembered = self._joined.get(request.user_id)
        if (last is None or not last.is_after_or_eq(since) or remembered is None
                or remembered[0] != since[EVENTS]):
            return None
        if self._notifier.has_update(request.user_id, since, remembered[1]):
            return None
        self._joined.move_to_end(request.user_id)
        return remembered[1]

    async def _joined_rooms(self, user_id: str, at: SyncToken) -> frozenset[str]:
        """The rooms to wait on: remembered from the user's last sync when it was at the
        same events position, else read."""
        remembered = self._joined.get(user_id)
        if remembered is not None and remembered[0] == at[EVENTS]:
            return remembered[1]
        memberships = (await self._personal.request(user_id, None, counts=False)).memberships
        return frozenset(m.room_id for m in memberships if m.membership == JOIN)

    def _remember_joined(self, user_id: str, position: int, joined: frozenset[str]) -> None:
        self._joined[user_id] = (position, joined)
        self._joined.move_to_end(user_id)
        if len(self._joined) > JOINED_MEMO_SIZE:
            self._joined.popitem(last=False)

    async def acknowledge(self, request: SyncRequest, token: SyncToken) -> None:
        """The device confirms it processed everything up to `token` (WebSocket acks)."""
        if self._e2e is not None:
            await self._e2e.acknowledge(request, token.clamp(await self.current_token()))

    async def _update_presence(self, request: SyncRequest) -> None:
        """Spec: `set_presence` (default online) marks the user as they sync."""
        if request.set_presence == ONLINE:
            await self._presence.user_active(request.user_id)
        elif request.set_presence == UNAVAILABLE:
            current = await self._presence.get_presence(request.user_id, request.user_id)
            if current.get("presence") != UNAVAILABLE:
                await self._presence.set_presence(request.user_id, UNAVAILABLE,
                                                  current.get("status_msg"))
        else:
            assert request.set_presence == OFFLINE

    async def _compute(self, request: SyncRequest, since: SyncToken | None,
                       current: SyncToken) -> tuple[SyncResult, frozenset[str]]:
        """The result for (since, current] and the rooms the user is joined to."""
        sync_filter = request.filter
        ignored = (await self._ignored.ignored_users(request.user_id)
                   if self._ignored is not None else frozenset())
        # Incremental: every room's new events, read once for all syncs at this position
        # (before taking a connection: see shared_reads.py).
        window = None
        if since is not None:
            window = self._shared.window_read(since[EVENTS], current[EVENTS])
            if window is None:
                window = await self._shared.window(since[EVENTS], current[EVENTS])
        # Read after `current` was, with those of the other syncs asking meanwhile.
        personal = await self._personal.request(request.user_id, request.device_id)
        memberships = personal.memberships
        newest = max((m.stream_ordering or 0 for m in memberships), default=0)
        if newest > current[EVENTS]:
            # The window no longer covers the rooms' ranges; they are read instead.
            current = current.copy_with(EVENTS, newest)
            self._room_states.note_handed_out(newest)
        plans = plan_rooms(memberships, since=None if since is None else since[EVENTS],
                           current=current[EVENTS], room_filter=sync_filter.room,
                           full_state=request.full_state)
        by_section: dict[str, list[RoomPlan]] = {JOIN: [], LEAVE: [], INVITE: [], KNOCK: []}
        for plan in plans:
            # Spec: invites from ignored users are not shown.
            if not (plan.section == INVITE and plan.membership.sender in ignored):
                by_section[plan.section].append(plan)
        # Each step takes a connection only if it reads, one at a time and none while
        # waiting for another's (one sync holding one while waiting for another starves
        # the pool when several do).
        stripped = await self._stripped_states(by_section[INVITE] + by_section[KNOCK])
        prepared = await self._read_rooms(request, by_section, ignored, window)
        joined = frozenset(m.room_id for m in memberships if m.membership == JOIN)
        self._remember_joined(request.user_id, current[EVENTS], joined)
        result = await self._assemble(request, since, current, by_section, prepared, stripped,
                                      personal)
        return result, joined

    async def _assemble(self, request: SyncRequest, since: SyncToken | None, current: SyncToken,
                        by_section: dict[str, list[RoomPlan]], prepared: PreparedRooms,
                        stripped: dict[str, list[JsonDict]],
                        personal: Personal) -> SyncResult:
        # One after the other, not gathered: hundreds of woken syncs in lock-step would
        # all answer last; one at a time, the first ones answer early (measured).
        rooms = await self._rooms.format(self._db, request.user_id, request.device_id, prepared,
                                         request.filter, current[EVENTS] if since is not None else None)
        extras = await self._extras.read(self._db, request, since, current, by_section)
        e2e, current = await self._e2e_section(request, since, current, personal)
        summarized, forced = summary_rooms(self._room_states, by_section[JOIN], prepared,
                                           None if since is None else since[EVENTS])
        shown = [p for p in by_section[JOIN] if p.full or p.room_id in forced or _has_updates(
            rooms[p.room_id], extras.room_account_data.get(p.room_id),
            extras.ephemeral.get(p.room_id))]
        join = await self._joined_rooms_results(request, shown, rooms, extras, personal,
                                                summarized, current[EVENTS])
        leave = {p.room_id: RoomResult(rooms[p.room_id].timeline, rooms[p.room_id].state,
                                       extras.room_account_data.get(p.room_id, []),
                                       state_after=request.use_state_after)
                 for p in by_section[LEAVE]}
        return SyncResult(
            next_batch=current, join=join, leave=leave,
            invite={p.room_id: stripped.get(p.room_id, []) for p in by_section[INVITE]},
            knock={p.room_id: stripped.get(p.room_id, []) for p in by_section[KNOCK]},
            presence=extras.presence, account_data=extras.global_account_data, e2e=e2e)

    async def _e2e_section(self, request: SyncRequest, since: SyncToken | None,
                           current: SyncToken, personal: Personal) -> tuple[E2eSection, SyncToken]:
        if self._e2e is None:
            return E2eSection(), current
        return await self._e2e.read(request, since, current, personal.keys)

    async def _stripped_states(self, plans: list[RoomPlan]) -> dict[str, list[JsonDict]]:
        if not plans:
            return {}
        async with self._db.connection() as conn:
            return await self._room_extras.stripped_states(conn, plans)

    async def _read_rooms(self, request: SyncRequest, by_section: dict[str, list[RoomPlan]],
                          ignored: frozenset[str], window: StreamWindow | None) -> PreparedRooms:
        # Lazy-loading clients need the heroes' memberships in a full room's state.
        heroes: dict[str, set[str]] = {}
        full = [p.room_id for p in by_section[JOIN] if p.full]
        if request.filter.room.state.lazy_load_members and full:
            async with self._db.connection() as conn:
                found = await self._room_extras.heroes(conn, request.user_id, full)
            heroes = {r: set(users) for r, users in found.items()}
        return await self._rooms.read(
            self._db, request.user_id, by_section[JOIN] + by_section[LEAVE], request.filter,
            use_state_after=request.use_state_after, extra_members=heroes, ignored=ignored,
            window=window)

    async def _joined_rooms_results(self, request: SyncRequest, shown: list[RoomPlan],
                                    rooms: dict[str, RoomContent], extras: Extras,
                                    personal: Personal, summarized: set[str] | None,
                                    position: int) -> dict[str, RoomResult]:
        """The joined rooms the response shows, with their unread counts and the
        summaries of those in `summarized` (None: all)."""
        room_ids = [p.room_id for p in shown]
        if not room_ids:
            return {}
        # The flag is a RoomEventFilter field; the timeline filter is the one that governs
        # what the room shows (Synapse reads it there too).
        by_thread = request.filter.room.timeline.unread_thread_notifications
        if personal.counts is not None:
            counts = room_counts(personal.counts, room_ids, by_thread=by_thread)
        else:
            assert self._counts is not None
            counts = await self._counts.unread_counts(  # its own connection
                request.user_id, room_ids, by_thread=by_thread)
        wanted = room_ids if summarized is None else [r for r in room_ids if r in summarized]
        summaries = await self._room_extras.summaries(request.user_id, wanted, position)
        zero = RoomCounts({"notification_count": 0, "highlight_count": 0},
                          {} if by_thread else None)
        out = {}
        for room_id in room_ids:
            content = rooms[room_id]
            room_counts_ = counts.get(room_id, zero)
            out[room_id] = RoomResult(
                content.timeline, content.state, extras.room_account_data.get(room_id, []),
                extras.ephemeral.get(room_id, []), summary=summaries.get(room_id),
                unread_notifications=room_counts_.unread,
                unread_thread_notifications=room_counts_.threads,
                state_after=request.use_state_after)
        return out


def _has_updates(content: RoomContent, account_data: list[JsonDict] | None,
                 ephemeral: list[JsonDict] | None) -> bool:
    """Whether an incremental joined room has anything to show (RoomResult.has_updates)."""
    return bool(content.timeline.events or content.state or account_data or ephemeral)
