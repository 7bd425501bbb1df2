"""The one persistence path for room events (ARCHITECTURE.md, "The event pipeline").

Local events are built, checked and persisted inside one database transaction under the
room's lock, so the forward extremities and state they build on cannot move underneath
them: in-process by an asyncio lock per room, across processes by a PostgreSQL advisory
lock taken first thing in the transaction. After commit the `on_event_persisted`
callbacks run (notifier, push, federation queue), in registration order.

Sends to one room that arrive while the room is busy are persisted together: one send
at a time leads the room, takes every queued send for it (up to MAX_SENDS_PER_COMMIT)
under the room lock and persists them one after another in one transaction, each in its
own savepoint so a rejected event fails alone. One commit (one fsync) then covers the
batch; without this a busy room's throughput is bounded by one commit per event. Each
caller still gets its own answer, only after the commit and the batch's callbacks; then
the first send queued meanwhile leads the next batch.

Within a batch, a plain timeline event (not state, not a redaction) built on the room's
current state changes nothing a later send of the batch reads from the database: its
rows are deferred and written together with the other deferred events' (before the next
event that needs them or at the end of the batch), in one statement on PostgreSQL
(storage/room_batch.py). What a batch reads first (the room, its forward extremities,
its transaction IDs) is one statement there too.
Such an event can only fail before it writes (format, auth), so it needs no savepoint;
if writing the deferred rows fails, the whole batch fails, as a failed commit would.

The state entries a send reads (its auth events, the sender's membership) are kept
across batches per state snapshot, which never changes once committed: a room's next
batch reads the room's current snapshot ID under the lock and finds them in memory.

A batch of plain timeline events need not read the room's head at all: this process
remembers the head its last batch in the room left (`_Head`), builds on it (on
PostgreSQL while the lock statement is still under way), and the one write checks under
the lock that it is still the room's head (storage/room_batch.py, `StaleHead`). If not,
nothing was written and the batch is built again the usual way, on the head read under
the lock; so what is committed was always built on the room as it was under the lock.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
from signedjson.types import SigningKey

from homeserver.clock import Clock
from homeserver.errors import BadJson, Forbidden, NotFound, TooLarge
from homeserver.events.builder import build_event
from homeserver.events.canonical_json import EventFormatError, check_event_format
from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.rooms.access import NOT_IN_ROOM
from homeserver.rooms.auth_memo import AllowedAuth, AuthMemo, MemoKey, memo_key
from homeserver.rooms.locks import RoomLocks
from homeserver.rooms.relations import relation_of
from homeserver.rooms.room_state import (
    StateBefore,
    StateKey,
    read_entries,
    read_entry,
    resolve_snapshots,
    state_after_events,
)
from homeserver.rooms.stores import RoomStores
from homeserver.state.auth_events import auth_types_for_event, select_auth_event_ids
from homeserver.state.auth_rules import AuthError, check_auth_rules
from homeserver.state.power_levels import get_named_level, get_user_power_level
from homeserver.storage import room_batch, streams
from homeserver.storage.database import Connection, Database, Row
from homeserver.storage.rooms import RoomRow
from homeserver.storage.state import StateMap, diff_states

logger = logging.getLogger(__name__)

CREATE_KEY = ("m.room.create", "")
POWER_LEVELS_KEY = ("m.room.power_levels", "")
# Bound on prev_events of a local event (the PDU format allows 20; fewer keeps events small
# while still merging forks quickly).
MAX_PREV_EVENTS = 10
# Queued sends to one room persisted in one transaction. Bounded so one commit stays
# short and the first sender's wait is not stretched by a flood.
MAX_SENDS_PER_COMMIT = 32
# State reads kept across batches, (snapshot, keys) -> entries: a few hundred bytes each;
# one per room, event type and sender in use is what a busy server needs.
STATE_READS_CACHE_SIZE = 1024
# Rooms whose head (room row, forward extremities) the last batch left is remembered, so
# the next batch need not read it (one round trip on PostgreSQL).
HEADS_CACHE_SIZE = 1024
# Events a remembered head keeps (the auth events of a room's senders, ~2 KB each).
HEAD_PDUS = 64
EVENTS_STREAM = "events"
_ROOM_ID_ALPHABET = string.ascii_letters
_CREATE_ATTEMPTS = 100


@attrs.frozen
class TxnKey:
    """A client transaction ID and its scope (the user's device)."""

    user_id: str
    device_id: str | None
    txn_id: str


@attrs.frozen
class PersistedEvent:
    pdu: Pdu
    stream_ordering: int
    # True when an earlier request with the same transaction ID created the event.
    deduplicated: bool = False
    # The room's current state snapshot right after the event (None when not known,
    # e.g. for a deduplicated send): lets batch writers skip reading the room.
    current_snapshot_id: int | None = None
    # The event's own state snapshots, (before, after) as written to event_state (None
    # when not known): a woken /sync needs the one before its first timeline event, and
    # with this it need not read it back (sync/sync_service.py, room_event_listener).
    state_ids: tuple[int, int] | None = None
    # Every stream's position once the event's batch committed, when the batch knows
    # them (room_batch.TimelineWritten.positions): a woken /sync may take its token from
    # here instead of reading the positions. None when not known.
    stream_positions: Mapping[str, int] | None = None
    # The event's batch, when nothing can refer to its events yet (see LocalBatch).
    local_batch: LocalBatch | None = None
    # Whether the statement that wrote the event also wrote its batch's full-text index
    # entries (`EventPersister.timeline_search`) and push's records of the batch
    # (`EventPersister.timeline_push`), moving their positions; None when they were not
    # given to it (storage/room_batch.py, TimelineWritten).
    search: bool | None = None
    push: bool | None = None

    @property
    def event_id(self) -> str:
        return self.pdu.event_id

    @property
    def room_id(self) -> str:
        return self.pdu.room_id


@attrs.frozen(eq=False)
class LocalBatch:
    """The timeline events one batch created here, which took every stream ordering in
    (`since`, `upto`], oldest first; none of them relates to or redacts another.

    As of position `upto`, no event anywhere refers to one of these (no redaction, no
    relation): their IDs are hashes nobody outside this process knew before the commit,
    and they were created with nothing of the batch naming them. So a woken /sync can
    take the batch as the stream window (`upto` - `since` events, nothing else in it)
    and format its events without reading their redactions and relations
    (sync/local_batches.py). An event committed later may refer to them: at any later
    position they are read as usual."""

    since: int
    upto: int
    events: tuple[tuple[Pdu, int], ...]


def local_batch(pdus: Sequence[Pdu], orderings: Sequence[int]) -> LocalBatch | None:
    """The batch of these new events (oldest first), or None when their orderings are not
    consecutive or one of them names another (a relation or a redaction)."""
    if not pdus or list(orderings) != list(range(orderings[0], orderings[0] + len(orderings))):
        return None
    ids = {p.event_id for p in pdus}
    for pdu in pdus:
        relation = relation_of(pdu.content)
        if (relation is not None and relation.parent_id in ids) or pdu.redacts in ids:
            return None
    return LocalBatch(orderings[0] - 1, orderings[-1], tuple(zip(pdus, orderings, strict=True)))


@attrs.define
class _BatchView:
    """What the sends of one batch (one room, one transaction) already know, so the next
    send does not read it again: the room row, its forward extremities, the events
    loaded or created so far and state read per snapshot. Updated only after a send
    succeeded, so a failed send leaves no trace here either. Nobody else writes the room
    meanwhile: the batch holds the room lock (and on PostgreSQL the room's advisory lock)."""

    room: RoomRow | None = None
    extremities: list[str] | None = None
    # The forward extremities as stored: behind `extremities` while events are deferred.
    stored_extremities: list[str] = attrs.Factory(list)
    pdus: dict[str, Pdu] = attrs.Factory(dict)
    # (snapshot, keys) -> entries; a snapshot never changes, so its reads stay valid.
    state_reads: dict[tuple[int, tuple[StateKey, ...]], StateMap] = attrs.Factory(dict)
    # Plain events' auth events and allowed verdicts (rooms/auth_memo.py).
    allowed: dict[MemoKey, AllowedAuth] = attrs.Factory(dict)
    deferred: list[_Deferred] = attrs.Factory(list)
    # Transaction IDs used by this batch's successful sends -> the send's index.
    txns: dict[TxnKey, int] = attrs.Factory(dict)
    # A send was persisted on its own path (state, redaction, ...): it may take stream
    # positions after the final flush's snapshot of them, which then says nothing.
    not_only_deferred: bool = False
    # The head was not read but remembered: the first write checks it (room_batch.Head).
    expect: room_batch.Head | None = None
    # Push's records of the deferred events as made while the lock statement was under
    # way (`_early_push_rows`): their IDs, and the rows (None: they could not be made
    # from memory). None: not tried.
    push_rows: tuple[tuple[str, ...], room_batch.PushRows | None] | None = None


@attrs.frozen
class _Deferred:
    """A built and checked event whose rows wait for `_flush`."""

    pdu: Pdu
    before_snapshot_id: int
    txn: TxnKey | None
    index: int  # its send's position in the batch


@attrs.frozen
class _Head:
    """A room as this process's last batch in it left it (see `_write_sends`)."""

    room: RoomRow
    extremities: tuple[str, ...]
    # The stream ordering of the batch's newest event (the room's newest then).
    last_ordering: int
    # The events the batch loaded (auth events) and its newest one (the next prev
    # event): the next batch builds from memory without loading them again.
    pdus: Mapping[str, Pdu]


@attrs.frozen
class _Learned:
    """What persisting one event taught the batch (applied to _BatchView on success)."""

    room: RoomRow
    extremities: list[str]
    pdus: dict[str, Pdu]


@attrs.define
class _QueuedSend:
    fields: Mapping[str, Any]
    txn: TxnKey | None
    answer: asyncio.Future[PersistedEvent]
    # Refuse (403, like RoomAccess.require_joined) unless the sender is joined to an
    # existing room; checked in the batch instead of by a read before queueing.
    require_joined: bool = False
    # Set by the room's leader: _FINISHED once the batch that took this send has run
    # its callbacks, or _LEAD when this send is to lead the next batch (see `send`).
    turn: asyncio.Future[str] = attrs.Factory(lambda: asyncio.get_running_loop().create_future())


_FINISHED = "finished"
_LEAD = "lead"
# Loop turns a new leader yields before taking its batch (see `send`).
_TURNS_BEFORE_NEXT_BATCH = 3


EventCallback = Callable[[PersistedEvent], Awaitable[None]]
# Writes rows derived from an event (e.g. relations) inside the persist transaction, so
# they commit or roll back with the event: `(conn, pdu, stream_ordering)`.
DerivedWriter = Callable[[Connection, Pdu, int], Awaitable[None]]
# Records what a whole batch of new events implies (push notifications, the search
# index) inside the batch's transaction, after its events: `(conn, events)`, in stream
# order. Unlike a DerivedWriter its failure does not fail the sends: the batch writers
# share one savepoint, and if any fails, all their rows are rolled back (logged) and
# their own after-commit paths must catch up. So a writer notes what it recorded only in
# the callback it returns, which runs once the savepoint is released. Where a savepoint
# is a round trip of its own (PostgreSQL), a send batch runs them without one first: a
# failure then rolls the whole transaction back and the batch is written again with the
# savepoint (`_WritersFailed`).
BatchWriter = Callable[[Connection, Sequence[PersistedEvent]],
                       Awaitable[Callable[[], None] | None]]
# The full-text index entries of a batch's new events, in their order, for the statement
# that writes the events (storage/room_batch.py): search/indexer.py. It is asked only
# where that saves a round trip and only for a batch whose events are all written by
# that one statement; the batch writers then find its outcome on the events
# (`PersistedEvent.search`).
TimelineSearch = Callable[[Sequence[Pdu]], room_batch.SearchRows]
# Push's records of a batch's new events, likewise (push/bulk_evaluator.py): `(conn,
# events, the room's current state snapshot)`; None to record them the usual way. It is
# only given the memory-only connection (`ReadNeeded` on any statement): what it cannot
# make from memory, the batch writer makes in its savepoint.
TimelinePush = Callable[[Connection, Sequence[Pdu], int],
                        Awaitable[room_batch.PushRows | None]]


def format_error(e: EventFormatError) -> BadJson | TooLarge:
    return TooLarge(str(e)) if e.errcode == "M_TOO_LARGE" else BadJson(str(e))


class _WritersFailed(Exception):
    """A batch writer run without a savepoint failed: the transaction is lost (on
    PostgreSQL a failed statement aborts it), so the batch must be written again."""


class EventPersister:
    def __init__(self, db: Database, stores: RoomStores, *, server_name: str,
                 signing_key: SigningKey, clock: Clock,
                 on_event_persisted: list[EventCallback] | None = None):
        self._db = db
        self._stores = stores
        self._server_name = server_name
        self._signing_key = signing_key
        self._clock = clock
        self._locks = RoomLocks()
        # room_id -> sends waiting for the room's lock, in arrival order.
        self._queued: dict[str, list[_QueuedSend]] = {}
        # Rooms with a send leading (or about to lead) a batch: sends queued meanwhile
        # wait for their turn instead of the room lock.
        self._leading: set[str] = set()
        # Run after each commit; the sync notifier, push and federation append here.
        self.on_event_persisted: list[EventCallback] = on_event_persisted if on_event_persisted is not None else []
        # Run inside the transaction, after the event's own rows; a failure aborts it.
        self.derived_writers: list[DerivedWriter] = []
        # Run inside the transaction after all of a batch's events; a failure is contained.
        self.batch_writers: list[BatchWriter] = []
        self.timeline_search: TimelineSearch | None = None
        self.timeline_push: TimelinePush | None = None
        # Committed batches' state reads (LRU). Only committed ones: on SQLite a rolled
        # back snapshot's ID is handed out again (storage/state.py, next_snapshot_id).
        self._state_reads: OrderedDict[tuple[int, tuple[StateKey, ...]], StateMap] = OrderedDict()
        # Committed batches' verdicts on plain events, by snapshot, sender and type.
        self._allowed = AuthMemo()
        # room_id -> its head as our last batch left it (LRU; see _write_sends).
        self._heads: OrderedDict[str, _Head] = OrderedDict()

    async def create_room(self, *, room_version: RoomVersion, sender: str,
                          content: Mapping[str, Any], is_public: bool = False) -> PersistedEvent:
        """Persist a new room's m.room.create event (and the `rooms` row)."""
        # The version is named in the content: without it other servers read version 1.
        fields: dict[str, Any] = {"type": "m.room.create", "sender": sender, "state_key": "",
                                  "content": {**content, "room_version": room_version.identifier}}
        now = self._clock.time_ms()
        # A v12 room ID is the create event's hash: the same user creating two rooms with
        # the same content in the same millisecond would get the same ID, so the
        # timestamp moves on until the ID is free.
        for attempt in range(_CREATE_ATTEMPTS):
            if not room_version.room_id_from_create_event:
                localpart = "".join(secrets.choice(_ROOM_ID_ALPHABET) for _ in range(18))
                fields["room_id"] = f"!{localpart}:{self._server_name}"
            pdu = self._build(room_version, fields, [], [], {}, origin_server_ts=now + attempt)
            try:
                check_auth_rules(pdu, {})
            except AuthError as e:
                raise BadJson(f"Invalid m.room.create content: {e}") from None
            async with self._locks.hold(pdu.room_id), self._db.transaction() as conn:
                await self._stores.events.lock_room(conn, pdu.room_id)
                if await self._stores.rooms.get(conn, pdu.room_id) is not None:
                    continue
                await self._stores.rooms.insert(conn, pdu.room_id, room_version.identifier, sender,
                                                now, is_public)
                empty = await self._stores.state.create_snapshot(conn, pdu.room_id, None, {})
                before = StateBefore(pdu.room_id, empty, False, ())
                persisted, _, _ = await self._persist(conn, pdu, before, None)
                await self._write_batch(conn, [persisted])
            await self._notify(persisted)
            return persisted
        raise RuntimeError("could not find a free room ID")

    async def send(self, fields: Mapping[str, Any], *, txn: TxnKey | None = None,
                   require_joined: bool = False) -> PersistedEvent:
        """Build, auth-check and persist a local event (`type`, `sender`, `room_id`,
        `content`, optional `state_key` and `redacts`). Raises Forbidden when the auth
        rules reject it, NotFound for an unknown room, BadJson/TooLarge for its format.
        With `require_joined`, a sender not joined to the room (or an unknown room) gets
        Forbidden(NOT_IN_ROOM); a repeated transaction ID is answered before that check."""
        room_id = fields["room_id"]
        mine = _QueuedSend(fields, txn, asyncio.get_running_loop().create_future(),
                           require_joined)
        self._queued.setdefault(room_id, []).append(mine)
        if room_id in self._leading:
            # Another send leads: it (or a later leader) takes ours into a batch and
            # tells us once that batch's callbacks have run, or hands us the lead.
            # Waiting on the room lock instead would pass it from each of the batch's
            # senders to the next, a loop turn each, before the next batch could start.
            try:
                turn = await mine.turn
            except asyncio.CancelledError:
                # Not persisted unless a batch took it already.
                self._unqueue(room_id, mine)
                if mine.turn.done() and not mine.turn.cancelled() and mine.turn.result() == _LEAD:
                    self._hand_on(room_id)  # handed the lead just as we were cancelled
                raise
            if turn == _FINISHED:
                return mine.answer.result()
            # Handed the lead by a batch that just woke syncs: let them run a few turns
            # of the loop first (their reads and responses), or the next batch, which
            # on SQLite runs to its commit without yielding, would hold their events
            # back from the receivers while its senders already had their answers.
            for _ in range(_TURNS_BEFORE_NEXT_BATCH):
                await asyncio.sleep(0)
        else:
            self._leading.add(room_id)
        batch: list[_QueuedSend] = []
        try:
            async with self._locks.hold(room_id):
                queue = self._queued[room_id]
                batch = queue[:MAX_SENDS_PER_COMMIT]
                del queue[:MAX_SENDS_PER_COMMIT]
                if not queue:
                    del self._queued[room_id]
                await _finish_despite_cancellation(self._persist_batch(room_id, batch))
        except asyncio.CancelledError:
            if not batch:  # gone before it took the lock: ours is never persisted
                self._unqueue(room_id, mine)
            raise
        finally:
            # Every send of the batch has its answer and its callbacks ran (or the batch
            # failed): their callers may return. The next queued send leads.
            for send in batch:
                if send is not mine and not send.turn.done():
                    send.turn.set_result(_FINISHED)
            self._hand_on(room_id)
        return mine.answer.result()

    def _unqueue(self, room_id: str, send: _QueuedSend) -> None:
        waiting = self._queued.get(room_id)
        if waiting is not None and send in waiting:
            waiting.remove(send)
            if not waiting:
                del self._queued[room_id]

    def _hand_on(self, room_id: str) -> None:
        """The room's leader is done: the first queued send leads next, else none does."""
        for send in self._queued.get(room_id, ()):
            if not send.turn.done():
                send.turn.set_result(_LEAD)
                return
        self._leading.discard(room_id)

    async def _persist_batch(self, room_id: str, batch: list[_QueuedSend]) -> None:
        """Persist queued sends in order in one transaction; answer each after commit."""
        # Taken, not just read: a batch that fails leaves no head behind.
        head = self._heads.pop(room_id, None)
        guarded = False
        try:
            while True:
                try:
                    outcomes, view = await self._write_sends(room_id, batch, head, guarded)
                    break
                except room_batch.StaleHead:
                    # The room moved since our last batch (another writer): nothing was
                    # written; build the batch again on the head as read.
                    head = None
                except _WritersFailed as e:
                    logger.error("batch writers failed for a batch of %d sends; writing it "
                                 "again with them in a savepoint", len(batch),
                                 exc_info=e.__cause__)
                    head, guarded = None, True
        except BaseException as e:
            # The commit (or the transaction) failed, or we were cancelled: nothing of
            # the batch is stored.
            for send in batch:
                _answer(send.answer, e)
            raise
        created = [o for o in outcomes if isinstance(o, PersistedEvent) and not o.deduplicated]
        if (created and not view.not_only_deferred and view.room is not None
                and view.room.current_snapshot_id is not None and view.extremities is not None):
            ids = {o.event_id for o in created}
            pdus = {i: p for i, p in view.pdus.items() if i not in ids or i in view.extremities}
            self._remember_head(room_id, _Head(
                view.room, tuple(view.extremities), max(o.stream_ordering for o in created),
                pdus if len(pdus) <= HEAD_PDUS else {}))
        # Committed: the next batch's state reads and prev event come from memory instead
        # of the database. Only the batch's last event: caching every event sent would
        # fill the cache (and memory) with events nobody reads; readers cache what they read.
        self._remember_state_reads(view.state_reads)
        self._allowed.remember(view.allowed)
        new = [o for o in outcomes if isinstance(o, PersistedEvent) and not o.deduplicated]
        if new and not new[-1].pdu.is_state():
            self._stores.events.remember_committed([(new[-1].pdu, new[-1].stream_ordering)])
        # Answers first, with no await in between, so a cancellation during the
        # callbacks below cannot leave a caller unanswered. The callers return only once
        # their turn says so (`send`), i.e. after the callbacks.
        for send, outcome in zip(batch, outcomes, strict=True):
            assert outcome is not None
            _answer(send.answer, outcome)
        for outcome in outcomes:
            if isinstance(outcome, PersistedEvent) and not outcome.deduplicated:
                await self._notify(outcome)

    async def _write_sends(self, room_id: str, batch: list[_QueuedSend], head: _Head | None,
                           guarded: bool,
                           ) -> tuple[list[PersistedEvent | BaseException | None], _BatchView]:
        """The batch's transaction: each send's outcome, and what the batch knew at the
        end. With `head` (the room as our last batch left it), when every send is a
        plain timeline event, the head is not read: the write checks it is still the
        room's (room_batch.StaleHead if not). `guarded`: the batch writers run in a
        savepoint even where it is a round trip (else their failure is _WritersFailed)."""
        outcomes: list[PersistedEvent | BaseException | None] = [None] * len(batch)
        async with self._db.transaction() as conn:
            view = _remembered_view(head, batch)
            used: dict[TxnKey, str] = {}
            repeats: list[tuple[int, int]] = []
            if view is not None:
                # Nothing to read first: the events are built from memory while the lock
                # statement makes its round trip (the yield lets it go out). A read the
                # building turns out to need sends the batch the usual way, locked first.
                events = self._stores.events
                if not events.lock_is_a_round_trip(conn):
                    await events.lock_room(conn, room_id)
                    repeats = await self._build_sends(_MEMORY_ONLY, batch, view, used, outcomes)
                else:
                    locking = asyncio.ensure_future(events.lock_room(conn, room_id))
                    try:
                        await asyncio.sleep(0)
                        repeats = await self._build_sends(_MEMORY_ONLY, batch, view, used,
                                                          outcomes)
                        view.push_rows = await self._early_push_rows(view)
                    finally:
                        await locking
                if any(isinstance(o, ReadNeeded) for o in outcomes):
                    view, repeats, outcomes = None, [], [None] * len(batch)
            else:
                await self._stores.events.lock_room(conn, room_id)
            if view is None:
                view, used = await self._read_head(conn, room_id, batch)
                repeats = await self._build_sends(conn, batch, view, used, outcomes)
            expect = view.expect
            if expect is not None and any(isinstance(o, BaseException) for o in outcomes):
                # Refused on a remembered head: only the room as it is may refuse a send
                # (another writer may have let its sender in meanwhile). We hold the lock.
                read = await room_batch.read_head(conn, room_id, [])
                if (read.room is None or read.room.current_snapshot_id != expect.current_snapshot_id
                        or sorted(read.extremities) != sorted(expect.extremities)):
                    raise room_batch.StaleHead(room_id)
            await self._flush(conn, view, outcomes, final=True)
            for i, first in repeats:
                original = outcomes[first]
                assert isinstance(original, PersistedEvent)
                outcomes[i] = attrs.evolve(original, deduplicated=True)
            await self._write_batch(conn, [o for o in outcomes if isinstance(o, PersistedEvent)
                                           and not o.deduplicated],
                                    guarded=guarded or not conn.savepoint_is_a_round_trip)
        return outcomes, view

    async def _build_sends(self, conn: Connection, batch: list[_QueuedSend], view: _BatchView,
                           used: Mapping[TxnKey, str],
                           outcomes: list[PersistedEvent | BaseException | None],
                           ) -> list[tuple[int, int]]:
        """Each send built, checked and deferred (or persisted) in order, its outcome in
        `outcomes`; returns the repeats within the batch, (send, the send it repeats)."""
        repeats: list[tuple[int, int]] = []
        for i, send in enumerate(batch):
            txn = send.txn
            if txn is not None and txn in view.txns:
                repeats.append((i, view.txns[txn]))
                continue
            if txn is not None and txn in used:
                earlier = await self._stored_send(conn, used[txn])
                if earlier is not None:
                    outcomes[i] = earlier
                    continue
            outcomes[i] = await self._persist_send(conn, send, view, i, outcomes)
            if txn is not None and not isinstance(outcomes[i], BaseException):
                view.txns[txn] = i
        return repeats

    async def _early_push_rows(self, view: _BatchView,
                               ) -> tuple[tuple[str, ...], room_batch.PushRows | None] | None:
        """`_push_rows_from_memory` for the batch as built, while its lock statement is
        under way (on PostgreSQL a round trip of idle time; `_flush` would otherwise make
        them after it). None if `_flush` will take none along."""
        room = view.room
        if (self.timeline_push is None or view.not_only_deferred or not view.deferred
                or len(self._leading) != 1 or room is None or room.current_snapshot_id is None):
            return None
        pdus = [d.pdu for d in view.deferred]
        return (tuple(p.event_id for p in pdus),
                await self._push_rows_from_memory(pdus, room.current_snapshot_id))

    async def _push_rows_from_memory(self, pdus: Sequence[Pdu],
                                     snapshot_id: int) -> room_batch.PushRows | None:
        """Push's records of `pdus` (`timeline_push`), made from what the evaluator has in
        memory: on the memory-only connection, so that neither a read nor a failure can
        touch the batch's transaction. None if that needs a read or fails; push's batch
        writer then records the events in its savepoint, as for any other batch."""
        assert self.timeline_push is not None
        try:
            return await self.timeline_push(_MEMORY_ONLY, pdus, snapshot_id)
        except ReadNeeded:
            return None
        except Exception:
            logger.exception("push's records of a batch could not be made with it")
            return None

    def _remember_head(self, room_id: str, head: _Head) -> None:
        self._heads[room_id] = head
        while len(self._heads) > HEADS_CACHE_SIZE:
            self._heads.popitem(last=False)

    async def _persist_send(self, conn: Connection, send: _QueuedSend, view: _BatchView,
                            index: int, outcomes: list[PersistedEvent | BaseException | None],
                            ) -> PersistedEvent | BaseException | None:
        """One send of a batch: deferred (None: its outcome comes with `_flush`), or
        persisted now in a savepoint after the deferred ones; a failure is its outcome."""
        if _deferrable(send.fields, view):
            try:
                await self._defer(conn, send, view, index)
            except Exception as e:  # this send's own failure (auth, format, ...)
                return e
            return None
        view.not_only_deferred = True
        await self._flush(conn, view, outcomes)
        try:
            async with conn.savepoint():
                persisted, learned = await self._build_and_persist(conn, send.fields, send.txn,
                                                                   view, send.require_joined)
        except Exception as e:
            return e
        view.room, view.extremities = learned.room, learned.extremities
        view.stored_extremities = list(learned.extremities)
        if persisted.pdu.type == "m.room.redaction":
            # A redacted auth event must be re-read in its redacted form.
            view.pdus.clear()
        else:
            view.pdus.update(learned.pdus)
        return persisted

    async def _read_head(self, conn: Connection, room_id: str, batch: list[_QueuedSend],
                         ) -> tuple[_BatchView, dict[TxnKey, str]]:
        """The batch's view of the room, and its transaction IDs that earlier requests
        used -> their events (one statement on PostgreSQL)."""
        keys = [send.txn for send in batch if send.txn is not None]
        head = await room_batch.read_head(conn, room_id,
                                          [(k.user_id, k.device_id, k.txn_id) for k in keys])
        view = _BatchView(room=head.room)
        if head.room is not None:
            view.extremities = head.extremities
            view.stored_extremities = list(head.extremities)
        used = {k: e for k, e in zip(keys, head.txn_events, strict=True) if e is not None}
        return view, used

    async def _defer(self, conn: Connection, send: _QueuedSend, view: _BatchView,
                     index: int) -> None:
        room = view.room
        assert room is not None and room.current_snapshot_id is not None
        assert view.extremities is not None
        room_version = get_room_version(room.room_version)
        assert room_version is not None
        before = StateBefore(room.room_id, room.current_snapshot_id, True,
                             tuple(view.extremities))
        pdu, _, _, pdus = await self._build_checked(conn, send.fields, room_version, before, view,
                                                    send.require_joined)
        view.deferred.append(_Deferred(pdu, before.snapshot_id, send.txn, index))
        view.extremities = [pdu.event_id]
        view.pdus.update(pdus)
        view.pdus[pdu.event_id] = pdu

    async def _flush(self, conn: Connection, view: _BatchView,
                     outcomes: list[PersistedEvent | BaseException | None], *,
                     final: bool = False) -> None:
        """Write the deferred events' rows: what `_persist` writes for a timeline event
        on top of the current state (which it leaves unchanged), all in one store call.
        `final`: the batch's last flush; if every send of the batch was deferred, no
        stream position is taken after it (the derived and batch writers take none), so
        its snapshot of the positions holds at commit."""
        deferred, view.deferred = view.deferred, []
        if not deferred:
            return
        assert view.room is not None and view.extremities is not None
        room_id = view.room.room_id
        prevs = {p for d in deferred for p in d.pdu.prev_event_ids}
        stored = view.stored_extremities
        # These are all the batch's events (they are all built here).
        only = final and not view.not_only_deferred
        rides = only and room_batch.search_rides_timeline(conn)
        pdus = [d.pdu for d in deferred]
        search = (self.timeline_search(pdus)
                  if rides and self.timeline_search is not None else None)
        # Push's records are made on a guess of the positions the events will take,
        # which another room's batch in flight would make wrong (and the evaluation
        # wasted): only a room sending alone takes them along.
        push = None
        early, view.push_rows = view.push_rows, None
        if (rides and self.timeline_push is not None and len(self._leading) == 1
                and view.room.current_snapshot_id is not None):
            if early is not None and early[0] == tuple(p.event_id for p in pdus):
                push = early[1]
            else:
                push = await self._push_rows_from_memory(pdus, view.room.current_snapshot_id)
        rows = room_batch.TimelineRows(
            room_id, [(d.pdu, d.before_snapshot_id) for d in deferred],
            remove_extremities=[e for e in stored if e in prevs],
            add_extremities=[e for e in view.extremities if e not in stored],
            txns=[(d.txn.user_id, d.txn.device_id, d.txn.txn_id, d.pdu.event_id)
                  for d in deferred if d.txn is not None],
            now_ms=self._clock.time_ms(), expect=view.expect, search=search, push=push)
        view.expect = None  # checked by this write; the room lock holds it after
        written = await room_batch.write_timeline(conn, EVENTS_STREAM, rows)
        positions = written.positions if only else None
        batch = local_batch(pdus, written.orderings) if only else None
        view.stored_extremities = list(view.extremities)
        for d, ordering in zip(deferred, written.orderings, strict=True):
            for writer in self.derived_writers:
                await writer(conn, d.pdu, ordering)
            outcomes[d.index] = PersistedEvent(
                d.pdu, ordering, current_snapshot_id=view.room.current_snapshot_id,
                state_ids=(d.before_snapshot_id, d.before_snapshot_id),
                stream_positions=positions, local_batch=batch, search=written.search,
                push=written.push)

    async def _write_batch(self, conn: Connection, events: Sequence[PersistedEvent], *,
                           guarded: bool = True) -> None:
        """The batch writers in one savepoint: if one fails, none of them recorded
        anything, and their after-commit catch-ups record it later; the events
        themselves must not be lost. Not `guarded`: without the savepoint (one round trip
        less on PostgreSQL), and a failure is _WritersFailed, which loses the transaction."""
        if not events or not self.batch_writers:
            return
        recorded: list[Callable[[], None]] = []
        try:
            if guarded:
                async with conn.savepoint():
                    await self._run_writers(conn, events, recorded)
            else:
                await self._run_writers(conn, events, recorded)
        except Exception as e:
            if not guarded:
                raise _WritersFailed() from e
            logger.exception("batch writers failed for %d events", len(events))
            return
        for callback in recorded:
            callback()

    async def _run_writers(self, conn: Connection, events: Sequence[PersistedEvent],
                           recorded: list[Callable[[], None]]) -> None:
        for writer in self.batch_writers:
            callback = await writer(conn, events)
            if callback is not None:
                recorded.append(callback)

    async def _build_and_persist(self, conn: Connection, fields: Mapping[str, Any],
                                 txn: TxnKey | None, view: _BatchView,
                                 require_joined: bool = False) -> tuple[PersistedEvent, _Learned]:
        room = view.room or await self._stores.rooms.get(conn, fields["room_id"])
        if room is None:
            raise Forbidden(NOT_IN_ROOM) if require_joined else NotFound("Unknown room")
        room_version = get_room_version(room.room_version)
        assert room_version is not None
        extremities = view.extremities
        if extremities is None:
            extremities = await self._stores.events.forward_extremities(conn, room.room_id)
        before = await self._state_before_local(conn, room, room_version, extremities)
        pdu, auth_map, create, pdus = await self._build_checked(conn, fields, room_version,
                                                                before, view, require_joined)
        validated = pdu.type == "m.room.redaction" and _may_redact(pdu, auth_map, create)
        persisted, new_extremities, new_current = await self._persist(
            conn, pdu, before, txn, redaction_validated=validated,
            extremities=extremities, room=room)
        pdus[pdu.event_id] = pdu
        learned = _Learned(attrs.evolve(room, current_snapshot_id=new_current), new_extremities, pdus)
        return persisted, learned

    async def _build_checked(
            self, conn: Connection, fields: Mapping[str, Any], room_version: RoomVersion,
            before: StateBefore, view: _BatchView, require_joined: bool = False,
    ) -> tuple[Pdu, dict[tuple[str, str], Pdu], Pdu | None, dict[str, Pdu]]:
        """Build the event on `before` and run the auth rules: the event, its auth
        events by state key, the create event, and every event it loaded."""
        # Only on the current state: a snapshot made for this send alone (forks) is rolled
        # back with it if it fails, and its ID may be handed out again (see auth_memo.py).
        key = memo_key(fields, before.snapshot_id, require_joined) if before.is_current else None
        if key is not None:
            known = view.allowed.get(key) or self._allowed.get(key)
            if known is not None and all(p in view.pdus for p in before.prev_event_ids):
                # Allowed before on this state: the same auth events, the same verdict.
                view.allowed[key] = known
                prev = [view.pdus[p] for p in before.prev_event_ids]
                pdu = self._build(room_version, fields, prev, list(known.auth_ids), known.pdus)
                return pdu, dict(known.auth_map), known.create, dict(known.pdus)
        sender = fields["sender"]
        member_key = ("m.room.member", sender)
        wanted = auth_types_for_event(room_version, fields["type"], sender,
                                      fields.get("state_key"), fields.get("content") or {})
        keys = (*wanted, CREATE_KEY, *([member_key] if require_joined else []))
        state_ids = await self._read_state(conn, before, keys, view)
        auth_ids = select_auth_event_ids(room_version, fields, state_ids)
        create_id = state_ids.get(CREATE_KEY)
        needed = [*auth_ids, *before.prev_event_ids, *([create_id] if create_id else [])]
        member_id = state_ids.get(member_key) if require_joined else None
        if member_id is not None:
            needed.append(member_id)
        pdus = {i: view.pdus[i] for i in needed if i in view.pdus}
        missing = [i for i in needed if i not in pdus]
        if missing:
            pdus.update(await self._stores.events.get_pdus(conn, missing))
        if require_joined and (member_id is None or member_id not in pdus
                               or pdus[member_id].membership != "join"):
            raise Forbidden(NOT_IN_ROOM)
        prev = [pdus[p] for p in before.prev_event_ids if p in pdus]
        pdu = self._build(room_version, fields, prev, auth_ids, pdus)
        auth_map = {pdus[a].state_pair(): pdus[a] for a in auth_ids}
        create = pdus.get(create_id) if create_id else None
        try:
            check_auth_rules(pdu, auth_map, create)
        except AuthError as e:
            raise Forbidden(f"Event not allowed: {e}") from None
        if key is not None:
            view.allowed[key] = AllowedAuth(tuple(auth_ids), auth_map, create, dict(pdus))
        return pdu, auth_map, create, pdus

    async def _read_state(self, conn: Connection, before: StateBefore,
                          keys: tuple[StateKey, ...], view: _BatchView) -> StateMap:
        cache_key = (before.snapshot_id, keys)
        entries = view.state_reads.get(cache_key)
        if entries is None:
            entries = self._state_reads.get(cache_key)
            if entries is None:
                entries = await read_entries(conn, self._stores, before, keys)
            else:
                self._state_reads.move_to_end(cache_key)
            view.state_reads[cache_key] = entries
        return entries

    def _remember_state_reads(self, reads: Mapping[tuple[int, tuple[StateKey, ...]], StateMap],
                              ) -> None:
        """A committed batch's state reads, for the next batches."""
        cache = self._state_reads
        for key, entries in reads.items():
            cache[key] = entries
            cache.move_to_end(key)
        while len(cache) > STATE_READS_CACHE_SIZE:
            cache.popitem(last=False)

    def _build(self, room_version: RoomVersion, fields: Mapping[str, Any], prev: list[Pdu],
               auth_ids: list[str], auth_by_id: Mapping[str, Pdu], *,
               origin_server_ts: int | None = None) -> Pdu:
        if origin_server_ts is None:
            origin_server_ts = self._clock.time_ms()
        pdu = build_event(
            room_version=room_version, event_fields=fields, prev_events=prev,
            auth_event_ids=auth_ids, server_name=self._server_name,
            signing_key=self._signing_key, origin_server_ts=origin_server_ts,
            auth_events_by_id=auth_by_id,
        )
        try:
            check_event_format(pdu.get_json(), room_version)
        except EventFormatError as e:
            raise format_error(e) from None
        return pdu

    async def _state_before_local(self, conn: Connection, room: RoomRow,
                                  room_version: RoomVersion, extremities: list[str]) -> StateBefore:
        prev_ids = tuple(extremities[:MAX_PREV_EVENTS])
        if len(prev_ids) == len(extremities) and room.current_snapshot_id is not None:
            return StateBefore(room.room_id, room.current_snapshot_id, True, prev_ids)
        snapshot = await state_after_events(conn, self._stores, room.room_id, room_version, prev_ids)
        assert snapshot is not None, "a room's forward extremities always have state"
        return StateBefore(room.room_id, snapshot, False, prev_ids)

    async def _persist(self, conn: Connection, pdu: Pdu, before: StateBefore,
                       txn: TxnKey | None, *, redaction_validated: bool = False,
                       extremities: list[str] | None = None, room: RoomRow | None = None,
                       ) -> tuple[PersistedEvent, list[str], int]:
        """Step 3 of the pipeline: every row derived from the event, in the caller's
        transaction. Returns the event, the room's forward extremities and its current
        state snapshot afterwards; `extremities` and `room` are what the caller already
        read in this transaction (read here when None)."""
        stores = self._stores
        room_id = pdu.room_id
        self._heads.pop(room_id, None)  # this write moves the head another way
        ordering = await streams.next_position(conn, EVENTS_STREAM)
        after = before.snapshot_id
        replaces: str | None = None
        if pdu.is_state() and pdu.rejected_reason is None:
            key = pdu.state_pair()
            replaces = await read_entry(conn, stores, before, key)
            after = await stores.state.create_snapshot(conn, room_id, before.snapshot_id,
                                                       {key: pdu.event_id})
        await stores.events.insert(conn, pdu, stream_ordering=ordering, replaces_state=replaces)
        await stores.state.set_event_state(conn, pdu.event_id, room_id, before.snapshot_id, after)
        new_extremities, new_current = await self._update_extremities_and_current(
            conn, pdu, before, after, extremities, room)
        if pdu.type == "m.room.member" and pdu.state_key is not None:
            await stores.memberships.insert(
                conn, event_id=pdu.event_id, room_id=room_id, user_id=pdu.state_key,
                sender=pdu.sender, membership=pdu.membership or "", stream_ordering=ordering)
        redacts = pdu.redacts
        if pdu.type == "m.room.redaction" and redacts is not None:
            await stores.events.insert_redaction(conn, pdu, redacts, redaction_validated)
        if txn is not None:
            await stores.txn_ids.insert(conn, txn.user_id, txn.device_id, txn.txn_id,
                                        pdu.event_id, room_id, self._clock.time_ms())
        for writer in self.derived_writers:
            await writer(conn, pdu, ordering)
        return (PersistedEvent(pdu, ordering, current_snapshot_id=new_current,
                               state_ids=(before.snapshot_id, after)),
                new_extremities, new_current)

    async def _update_extremities_and_current(
            self, conn: Connection, pdu: Pdu, before: StateBefore, after: int,
            extremities: list[str] | None, room: RoomRow | None) -> tuple[list[str], int]:
        """Returns the new forward extremities and current state snapshot."""
        stores = self._stores
        room_id = pdu.room_id
        if extremities is None:
            extremities = await stores.events.forward_extremities(conn, room_id)
        remaining = [e for e in extremities if e not in pdu.prev_event_ids]
        await stores.events.update_extremities(conn, room_id, remove=pdu.prev_event_ids,
                                               add=[pdu.event_id])
        new_extremities = [*remaining, pdu.event_id]
        if room is None:
            room = await stores.rooms.get(conn, room_id)
        assert room is not None
        if not remaining:
            new_current = after
        else:
            room_version = pdu.room_version
            snapshots = [after]
            for event_id in remaining:
                event_state = await stores.state.get_event_state(conn, event_id)
                if event_state is not None:
                    snapshots.append(event_state.after)
            new_current = await resolve_snapshots(conn, stores, room_id, room_version, snapshots)
        if new_current == room.current_snapshot_id:
            return new_extremities, new_current
        if before.is_current and new_current == after and pdu.is_state():
            # The common case: one event on top of the current state changes one key.
            changes: dict[tuple[str, str], str | None] = {pdu.state_pair(): pdu.event_id}
        else:
            old = (await stores.current_state.get_state(conn, room_id)
                   if room.current_snapshot_id is not None else {})
            changes = diff_states(old, await stores.state.get_state(conn, new_current))
        await stores.current_state.apply_delta(conn, room_id, changes)
        await stores.rooms.set_current_snapshot(conn, room_id, new_current)
        return new_extremities, new_current

    async def _stored_send(self, conn: Connection, event_id: str) -> PersistedEvent | None:
        """The event an earlier request with the same transaction ID created."""
        stored = await self._stores.events.get(conn, event_id)
        if stored is None or stored.stream_ordering is None:
            return None
        return PersistedEvent(stored.pdu, stored.stream_ordering, deduplicated=True)

    async def _notify(self, persisted: PersistedEvent) -> None:
        for callback in self.on_event_persisted:
            try:
                await callback(persisted)
            except Exception:
                # The event is durable; a failing observer must not turn that into an error.
                logger.exception("on_event_persisted callback failed for %s", persisted.event_id)


def _remembered_view(head: _Head | None, batch: list[_QueuedSend]) -> _BatchView | None:
    """A batch's view of the room built on a remembered head, when every send of it is a
    plain timeline event (whose one write checks the head); else None (read it)."""
    if head is None or head.room.current_snapshot_id is None:
        return None
    view = _BatchView(room=head.room, extremities=list(head.extremities),
                      stored_extremities=list(head.extremities), pdus=dict(head.pdus),
                      expect=room_batch.Head(head.room.current_snapshot_id, head.extremities,
                                             head.last_ordering))
    return view if all(_deferrable(send.fields, view) for send in batch) else None


class ReadNeeded(Exception):
    """Building from memory alone needed a read (see _MemoryOnly). A hook handed that
    connection (`TimelinePush`) must let it through, not handle it as a failed read."""


class _MemoryOnly(Connection):
    """The connection a batch builds with while its lock statement is under way on the
    real one (asyncpg runs one statement at a time per connection): any read raises
    ReadNeeded, and the batch is built again once the lock is held."""

    async def execute(self, sql: str, *args: Any) -> int:
        raise ReadNeeded(sql)

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        raise ReadNeeded(sql)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        raise ReadNeeded(sql)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        raise ReadNeeded(sql)

    async def execute_script(self, script: str) -> None:
        raise ReadNeeded(script)

    def savepoint(self) -> Any:
        raise ReadNeeded("SAVEPOINT")


_MEMORY_ONLY = _MemoryOnly()


def _deferrable(fields: Mapping[str, Any], view: _BatchView) -> bool:
    """A timeline event whose rows can wait for `_flush`: not state (it would change what
    later sends read), not a redaction (it changes what later sends load), built on the
    room's current state with every extremity as a prev event."""
    room = view.room
    return (room is not None and room.current_snapshot_id is not None
            and view.extremities is not None and 0 < len(view.extremities) <= MAX_PREV_EVENTS
            and fields.get("state_key") is None and fields["type"] != "m.room.redaction")


async def _finish_despite_cancellation(work: Awaitable[None]) -> None:
    """Run a batch to its end even if the caller leading it is cancelled (its client went
    away: the listener cancels such requests), then re-raise the cancellation. The batch
    holds other senders' events: cancelling it would fail their requests, and cancelling
    it after its commit would skip the wake-ups of their syncs. The room lock stays held
    meanwhile, as the caller's `async with` only exits once this returns."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
    if cancelled:
        task.exception()  # retrieved: the caller's answer (in its send's future) has it
        raise asyncio.CancelledError
    task.result()


def _answer(answer: asyncio.Future[PersistedEvent], outcome: PersistedEvent | BaseException) -> None:
    if answer.done():
        return
    if isinstance(outcome, PersistedEvent):
        answer.set_result(outcome)
    else:
        answer.set_exception(outcome)
        # Retrieved by its caller, unless that caller has gone: don't log it then.
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())


def _may_redact(pdu: Pdu, auth_map: Mapping[tuple[str, str], Pdu], create: Pdu | None) -> bool:
    """Whether a redaction's sender has the redact level (then it applies to any event;
    otherwise only to events from the sender's own server)."""
    power_levels = auth_map.get(POWER_LEVELS_KEY)
    if create is None:
        create = auth_map.get(CREATE_KEY)
    return get_user_power_level(pdu.sender, power_levels, create) >= get_named_level("redact", power_levels)
