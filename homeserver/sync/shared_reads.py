"""Reads that every sync computed at the same events-stream position shares.

One new message wakes every long-poll in its room at once, and each woken sync then asks
the same questions: which events arrived after `since`, how they look in client format,
who is in the room. Here each question is answered once per events position `upto` (the
`current` of those syncs), and the others wait for that answer instead of asking again.
Per-user rules (visibility, ignored users, filters, transaction IDs, thread
participation) are applied by each sync afterwards.

Why sharing by position is exact: positions commit in order, so the events in
`(since, upto]` are fixed once `upto` has been read, and every redaction or edit at or
below `upto` is committed before any of these syncs starts. An answer is read after
`upto` was, just as an unshared read would be; nothing is kept across positions except
in the bounded memos below (a few recent positions).

The first sync to ask reads, on a connection of its own; the others wait for its answer
(on SQLite, whose statements run inline, it never has to wait, so a woken sync runs to
its end in one go). If that sync goes away mid-read (its client left), the waiters read
again themselves. Callers must not hold a connection while they wait: with a bounded
pool, syncs holding all the connections while waiting for a read that needs one would
never finish. The summaries of a window's rooms are read in the background as soon as the
window is (`prefetch_heroes`), so on PostgreSQL the woken syncs do not all wait a round
trip for them.

A window that is exactly one batch of sends made here is not read at all, nor are its
events' redactions and relations as of that batch's position: nothing can refer to them
yet (sync/local_batches.py). An older event formatted by a read (the lazily loaded
sender's membership of every woken sync) keeps that format at later positions while only
such batches, with no redaction or relation among them, came after it.

`PerUserBatch` is the other kind of sharing: one query for a per-user value of every
sync that asks in the same turn of the loop (memberships, sync/personal_reads.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import attrs

from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.storage.database import Database
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.sync_queries import SyncQueries
from homeserver.sync.local_batches import LocalBatches

logger = logging.getLogger(__name__)
JsonDict = dict[str, Any]
T = TypeVar("T")
K = TypeVar("K")
H = TypeVar("H", bound=Hashable)

# A wake-up brings a handful of events; past this many the per-room queries are cheaper
# than holding every room's events of the range.
MAX_WINDOW_EVENTS = 200
# Formats read at one position and kept for later ones (see `_carried`).
CARRIED_FORMATS = 4096
# Nobody has an empty user ID: formatting "for nobody" leaves out everything personal.
NOBODY = ""
THREAD = "m.thread"


@attrs.frozen
class StreamWindow:
    """Every room's timeline events in (since, upto], oldest first."""

    since: int
    upto: int
    by_room: dict[str, list[StoredEvent]]

    def covers(self, low: int, high: int) -> bool:
        return self.since <= low and high <= self.upto

    def room_events(self, room_id: str, low: int, high: int) -> list[StoredEvent]:
        """The room's events in (low, high], oldest first."""
        return [e for e in self.by_room.get(room_id, ())
                if e.stream_ordering is not None and low < e.stream_ordering <= high]


def heroes_of(user_id: str, present: list[str], others: list[str], limit: int) -> list[str]:
    """A RoomSummary's `m.heroes`: the first joined or invited members, else the first
    who left; never the user."""
    present = [u for u in present if u != user_id]
    return (present or [u for u in others if u != user_id])[:limit]


@attrs.frozen
class SummaryBase:
    """A room's member counts and its first members by stream ordering (joined/invited,
    then the others), nobody left out: each user's summary leaves them out."""

    counts: dict[str, int]
    present: list[str]
    others: list[str]
    max_heroes: int
    # The summary of anyone among neither list (nearly everyone in a big room).
    _for_others: JsonDict = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_for_others", self._summary(NOBODY))

    def summary(self, user_id: str) -> JsonDict:
        """Spec: RoomSummary, for `user_id`."""
        if user_id in self.present or user_id in self.others:
            return self._summary(user_id)
        # A copy of the dict; the heroes list is shared and never mutated.
        return dict(self._for_others)

    def _summary(self, user_id: str) -> JsonDict:
        return {"m.heroes": heroes_of(user_id, self.present, self.others, self.max_heroes),
                "m.joined_member_count": self.counts.get("join", 0),
                "m.invited_member_count": self.counts.get("invite", 0)}


class _Abandoned(Exception):
    """The sync reading a shared answer went away before it had it."""


class SharedMemo:
    """key -> the future answer of the read in progress or done, LRU-bounded. A failed
    read is forgotten, so the next caller reads again."""

    def __init__(self, size: int):
        self._size = size
        self._futures: OrderedDict[Any, asyncio.Future[Any]] = OrderedDict()

    def pending(self, key: Any) -> asyncio.Future[Any] | None:
        future = self._futures.get(key)
        if future is not None:
            self._futures.move_to_end(key)
        return future

    def publish(self, key: Any, future: asyncio.Future[Any]) -> None:
        """An answer made without reading (a done future)."""
        self._futures[key] = future
        self._futures.move_to_end(key)
        while len(self._futures) > self._size:
            self._futures.popitem(last=False)

    async def read(self, keys: Sequence[Any], read: Callable[[], Awaitable[T]]) -> T:
        """Read in the calling task, the answer published under `keys` meanwhile."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._futures[key] = future
        while len(self._futures) > self._size:
            self._futures.popitem(last=False)
        try:
            result = await read()
        except BaseException as e:
            for key in keys:
                if self._futures.get(key) is future:
                    del self._futures[key]
            future.set_exception(_Abandoned() if isinstance(e, asyncio.CancelledError) else e)
            future.exception()  # retrieved: nobody may be waiting
            raise
        future.set_result(result)
        return result


async def _wait(future: asyncio.Future[T]) -> T:
    """The answer of another sync's read; _Abandoned when that sync went away (then read
    it yourself). shield: a waiter that goes away must not cancel it for the others."""
    if future.done():  # nearly always, once the first sync has read
        return future.result()
    return await asyncio.shield(future)


async def read_shared(memo: SharedMemo, scope: Hashable, items: Sequence[H],
                      read: Callable[[list[H]], Awaitable[dict[H, T]]]) -> dict[H, T]:
    """item -> answer: read (in the calling task) the items nobody has asked for in
    `scope` yet, and wait for the others' answers. The memo is keyed by (scope, item);
    callers must not hold a connection while they wait (see the module docstring)."""
    out: dict[H, T] = {}
    # Nearly always, once the first sync at a position has read, every answer is there.
    for item in items:
        future = memo.pending((scope, item))
        if future is None or not future.done() or future.exception() is not None:
            break
        found = future.result()
        if item in found:
            out[item] = found[item]
    else:
        return out
    out = {}
    while True:
        waiting: dict[H, asyncio.Future[Any]] = {}
        missing = []
        for item in dict.fromkeys(items):
            if item in out:
                continue
            future = memo.pending((scope, item))
            if future is None:
                missing.append(item)
            else:
                waiting[item] = future
        if missing:
            out.update(await memo.read([(scope, m) for m in missing],
                                       functools.partial(read, missing)))
        abandoned = False
        for future in dict.fromkeys(waiting.values()):
            try:
                out.update(await _wait(future))
            except _Abandoned:
                abandoned = True
        if not abandoned:
            return {i: out[i] for i in items if i in out}


class SharedReads:
    """`prefetch_heroes`: once a stream window is read, read the summaries of its rooms in
    the background with this many heroes (what `summaries` is asked for), so the syncs
    woken by those events find them read instead of waiting for one of them to read;
    `prefetch_rooms(since, by_room)`: of a window's rooms (with their events), those whose
    summary the syncs from `since` will ask for (default: all)."""

    def __init__(self, db: Database, events: EventStore, loader: ClientEventLoader,
                 queries: SyncQueries, *, max_window_events: int = MAX_WINDOW_EVENTS,
                 prefetch_heroes: int | None = None,
                 prefetch_rooms: Callable[[int, dict[str, list[StoredEvent]]], list[str]]
                 | None = None, local: LocalBatches | None = None):
        self._db = db
        # The latest batches sent here: windows and formats with nothing to read.
        self._local = local
        self._events = events
        self._loader = loader
        self._queries = queries
        self._max_window = max_window_events
        self._prefetch_heroes = prefetch_heroes
        self._prefetch_rooms = prefetch_rooms
        self._prefetching: set[asyncio.Task[Any]] = set()  # referenced until done
        self._windows = SharedMemo(16)
        self._formats = SharedMemo(4096)
        self._summaries = SharedMemo(4096)
        # event -> (position, its format for nobody as of it), for events formatted by a
        # read: at a later position that only inert local batches lead to
        # (LocalBatches.inert_between) the format is the same. LRU-bounded.
        self._carried: OrderedDict[str, tuple[int, JsonDict]] = OrderedDict()

    async def window(self, since: int, upto: int) -> StreamWindow | None:
        """The events of (since, upto]; None when there are too many to share."""
        if since >= upto:
            return StreamWindow(since, upto, {})
        key = (since, upto)
        while True:
            future = self._windows.pending(key)
            if future is None:
                local = self._local_window(since, upto)
                if local is not None:
                    return local
                return await self._windows.read([key], lambda: self._read_window(since, upto))
            try:
                window: StreamWindow | None = await _wait(future)
            except _Abandoned:
                continue
            return window

    def window_read(self, since: int, upto: int) -> StreamWindow | None:
        """The window of (since, upto] when it has been read already (what nearly every
        sync woken by one event finds), without a coroutine; else None (call `window`)."""
        future = self._windows.pending((since, upto))
        if future is None:
            return self._local_window(since, upto)
        if not future.done() or future.exception() is not None:
            return None
        window: StreamWindow | None = future.result()
        return window

    def _local_window(self, since: int, upto: int) -> StreamWindow | None:
        """The window when it is one batch sent here (published for the others)."""
        events = self._local.window(since, upto) if self._local is not None else None
        if events is None or len(events) > self._max_window:
            return None
        window = self._window_of(since, upto, events)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(window)
        self._windows.publish((since, upto), future)
        return window

    async def _read_window(self, since: int, upto: int) -> StreamWindow | None:
        async with self._db.connection() as conn:
            events = await self._events.stream_range(conn, since, upto, self._max_window)
        return None if events is None else self._window_of(since, upto, events)

    def _window_of(self, since: int, upto: int, events: list[StoredEvent]) -> StreamWindow:
        """The window of these events, its rooms' summaries read in the background."""
        by_room: dict[str, list[StoredEvent]] = {}
        for event in events:
            by_room.setdefault(event.pdu.room_id, []).append(event)
        if self._prefetch_heroes is not None and by_room:
            rooms = (list(by_room) if self._prefetch_rooms is None
                     else self._prefetch_rooms(since, by_room))
            if rooms:
                task = asyncio.get_running_loop().create_task(
                    self.summaries(upto, rooms, self._prefetch_heroes))
                self._prefetching.add(task)
                task.add_done_callback(self._prefetched)
        return StreamWindow(since, upto, by_room)

    def _prefetched(self, task: asyncio.Task[Any]) -> None:
        self._prefetching.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The syncs that waited for it failed with it; the next ones read again.
            logger.warning("prefetching room summaries failed: %r", task.exception())

    async def formats(self, upto: int, events: Sequence[StoredEvent]) -> dict[str, JsonDict]:
        """event -> its client format for nobody in particular (no transaction ID, thread
        participation false, no room ID), as of position `upto`. Callers copy before
        changing anything (see `personal_copy`)."""
        by_id = {e.event_id: e for e in events}
        return await read_shared(self._formats, upto, list(by_id),
                                 lambda missing: self._format(upto, [by_id[i] for i in missing]))

    async def _format(self, upto: int, events: list[StoredEvent]) -> dict[str, JsonDict]:
        local = self._local
        plain = [] if local is None else [
            e for e in events if e.replaces_state is None and local.unreferenced(e.event_id, upto)]
        out = {e.event_id: f for e, f in zip(
            plain, self._loader.format_unreferenced(plain, include_room_id=False), strict=True)}
        rest = [e for e in events if e.event_id not in out]
        if rest and local is not None:
            out.update(self._carry(upto, rest, local))
            rest = [e for e in rest if e.event_id not in out]
        if rest:
            async with self._db.connection() as conn:
                formatted = await self._loader.format(conn, rest, user_id=NOBODY, device_id=None,
                                                      include_room_id=False)
            for event, base in zip(rest, formatted, strict=True):
                out[event.event_id] = base
                self._remember_format(event.event_id, upto, base)
        return out

    def _carry(self, upto: int, events: list[StoredEvent],
               local: LocalBatches) -> dict[str, JsonDict]:
        """The formats of `events` as of `upto` that a read at an earlier position gave."""
        out = {}
        for event in events:
            entry = self._carried.get(event.event_id)
            if entry is not None and entry[0] <= upto and local.inert_between(entry[0], upto):
                out[event.event_id] = entry[1]
                self._carried.move_to_end(event.event_id)
        return out

    def _remember_format(self, event_id: str, position: int, base: JsonDict) -> None:
        kept = self._carried.get(event_id)
        if kept is not None and kept[0] > position:
            return  # a later position's is kept (this sync was behind)
        self._carried[event_id] = (position, base)
        self._carried.move_to_end(event_id)
        while len(self._carried) > CARRIED_FORMATS:
            self._carried.popitem(last=False)

    async def summaries(self, upto: int, room_ids: Sequence[str],
                        max_heroes: int) -> dict[str, SummaryBase]:
        """room -> member counts and the first `max_heroes` + 1 members of each group (the
        user may be among them), as of `upto`. `max_heroes` is the same for every caller."""
        return await read_shared(self._summaries, upto, room_ids,
                                 lambda missing: self._read_summaries(missing, max_heroes))

    async def _read_summaries(self, room_ids: list[str],
                              max_heroes: int) -> dict[str, SummaryBase]:
        async with self._db.connection() as conn:
            found = await self._queries.summary_members(conn, room_ids, max_heroes + 1)
        out = {}
        for room_id in room_ids:
            members = found.get(room_id)
            out[room_id] = (SummaryBase({}, [], [], max_heroes) if members is None else
                            SummaryBase(members.counts, members.present, members.others,
                                        max_heroes))
        return out


class PerUserBatch(Generic[K, T]):
    """A per-user (or per-device: any key) read made for every sync that asks in the
    same turn of the event loop, in one query: the syncs one event wakes all ask within
    a turn or two of each other. The read starts after every caller in the batch asked,
    so each gets an answer at least as fresh as an unbatched read would be.

    Each caller gets a future of its own, so one that goes away (cancelled) takes no
    one else's answer with it, without `asyncio.shield` and its extra loop turn."""

    def __init__(self, read: Callable[[list[K]], Awaitable[dict[K, T]]]):
        self._read = read
        self._pending: dict[K, list[asyncio.Future[T]]] = {}
        # The task that will take `_pending` as its batch; None: no batch collecting.
        self._collector: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()  # referenced until done

    async def get(self, key: K) -> T:
        return await self.request(key)

    def request(self, key: K) -> asyncio.Future[T]:
        """The caller's future of the answer, the read asked for but not awaited: a
        caller asks early and awaits later, so the read joins a batch it would
        otherwise make a turn of its own for."""
        loop = asyncio.get_running_loop()
        if self._collector is None:
            # Its first step runs next turn, after every sync woken in this one asked.
            task = self._collector = loop.create_task(self._run())
            self._running.add(task)
            task.add_done_callback(self._done)
        future: asyncio.Future[T] = loop.create_future()
        self._pending.setdefault(key, []).append(future)
        return future

    async def _run(self) -> None:
        # One turn more: a sync that read a shared answer first (the stream window, on
        # PostgreSQL) runs two turns ahead of the syncs it answered; they join its batch.
        await asyncio.sleep(0)
        batch, self._pending, self._collector = self._pending, {}, None
        try:
            found = await self._read(list(batch))
        except BaseException as e:
            _fail(batch, e)
            if not isinstance(e, Exception):
                raise
            return
        for key, futures in batch.items():
            for future in futures:
                if future.done():  # its caller went away
                    continue
                if key in found:
                    future.set_result(found[key])
                else:  # a reader's bug: its callers fail rather than wait forever
                    future.set_exception(KeyError(key))
                    future.exception()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._collector is task:  # ended (cancelled) before taking its batch
            batch, self._pending, self._collector = self._pending, {}, None
            _fail(batch, asyncio.CancelledError())


def _fail(batch: dict[Any, list[asyncio.Future[Any]]], error: BaseException) -> None:
    for futures in batch.values():
        for future in futures:
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: its caller may be gone


def is_personal(user_id: str, event: StoredEvent, base: JsonDict) -> bool:
    """Whether `user_id` sees the event differently from nobody: their own event (it may
    carry their transaction ID) or a thread root (`current_user_participated`)."""
    if event.pdu.sender == user_id:
        return True
    relations = base["unsigned"].get("m.relations")
    return isinstance(relations, dict) and THREAD in relations


def personal_copy(base: JsonDict, now_ms: int) -> JsonDict:
    """A shared formatted event as served now: its own top-level and `unsigned` dicts
    (the rest is shared, never mutated), `age` as of `now_ms`."""
    event = dict(base)
    unsigned = dict(base["unsigned"])
    unsigned["age"] = max(0, now_ms - int(base.get("origin_server_ts", 0)))
    event["unsigned"] = unsigned
    return event
