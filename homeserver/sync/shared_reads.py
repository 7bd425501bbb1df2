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
never finish.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import attrs

from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.storage.database import Database
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.sync_queries import SyncQueries

JsonDict = dict[str, Any]
T = TypeVar("T")

# A wake-up brings a handful of events; past this many the per-room queries are cheaper
# than holding every room's events of the range.
MAX_WINDOW_EVENTS = 200
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


@attrs.frozen
class SummaryBase:
    """A room's member counts and its first members by stream ordering (joined/invited,
    then the others), nobody left out: each user removes themself (RoomExtras)."""

    counts: dict[str, int]
    present: list[str]
    others: list[str]


class _Abandoned(Exception):
    """The sync reading a shared answer went away before it had it."""


class _Memo:
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
    return await asyncio.shield(future)


class SharedReads:
    def __init__(self, db: Database, events: EventStore, loader: ClientEventLoader,
                 queries: SyncQueries, *, max_window_events: int = MAX_WINDOW_EVENTS):
        self._db = db
        self._events = events
        self._loader = loader
        self._queries = queries
        self._max_window = max_window_events
        self._windows = _Memo(16)
        self._formats = _Memo(4096)
        self._summaries = _Memo(4096)

    async def window(self, since: int, upto: int) -> StreamWindow | None:
        """The events of (since, upto]; None when there are too many to share."""
        if since >= upto:
            return StreamWindow(since, upto, {})
        key = (since, upto)
        while True:
            future = self._windows.pending(key)
            if future is None:
                return await self._windows.read([key], lambda: self._read_window(since, upto))
            try:
                window: StreamWindow | None = await _wait(future)
            except _Abandoned:
                continue
            return window

    async def _read_window(self, since: int, upto: int) -> StreamWindow | None:
        async with self._db.connection() as conn:
            events = await self._events.stream_range(conn, since, upto, self._max_window)
        if events is None:
            return None
        by_room: dict[str, list[StoredEvent]] = {}
        for event in events:
            by_room.setdefault(event.pdu.room_id, []).append(event)
        return StreamWindow(since, upto, by_room)

    async def formats(self, upto: int, events: Sequence[StoredEvent]) -> dict[str, JsonDict]:
        """event -> its client format for nobody in particular (no transaction ID, thread
        participation false, no room ID), as of position `upto`. Callers copy before
        changing anything (see `personal_copy`)."""
        by_id = {e.event_id: e for e in events}
        return await self._batched(self._formats, upto, list(by_id),
                                   lambda missing: self._format([by_id[i] for i in missing]))

    async def _format(self, events: list[StoredEvent]) -> dict[str, JsonDict]:
        async with self._db.connection() as conn:
            formatted = await self._loader.format(conn, events, user_id=NOBODY, device_id=None,
                                                  include_room_id=False)
        return {e.event_id: f for e, f in zip(events, formatted, strict=True)}

    async def summaries(self, upto: int, room_ids: Sequence[str],
                        per_group: int) -> dict[str, SummaryBase]:
        """room -> member counts and first `per_group` members of each group, as of `upto`."""
        return await self._batched(self._summaries, upto, room_ids,
                                   lambda missing: self._read_summaries(missing, per_group))

    async def _read_summaries(self, room_ids: list[str], per_group: int) -> dict[str, SummaryBase]:
        async with self._db.connection() as conn:
            counts = await self._queries.member_counts(conn, room_ids)
            candidates = await self._queries.hero_candidates(conn, room_ids, NOBODY, per_group)
        out = {}
        for room_id in room_ids:
            present, others = candidates.get(room_id, ([], []))
            out[room_id] = SummaryBase(counts.get(room_id, {}), present, others)
        return out

    async def _batched(self, memo: _Memo, upto: int, ids: Sequence[str],
                       read: Callable[[list[str]], Awaitable[dict[str, T]]]) -> dict[str, T]:
        """Read the IDs nobody has asked for at `upto` yet; wait for the others'."""
        out: dict[str, T] = {}
        while True:
            waiting: dict[str, asyncio.Future[Any]] = {}
            missing = []
            for item in dict.fromkeys(ids):
                if item in out:
                    continue
                future = memo.pending((upto, item))
                if future is None:
                    missing.append(item)
                else:
                    waiting[item] = future
            if missing:
                out.update(await memo.read([(upto, m) for m in missing],
                                           functools.partial(read, missing)))
            abandoned = False
            for future in dict.fromkeys(waiting.values()):
                try:
                    out.update(await _wait(future))
                except _Abandoned:
                    abandoned = True
            if not abandoned:
                return {i: out[i] for i in ids if i in out}


class PerUserBatch(Generic[T]):
    """A per-user read made for every sync that asks in the same turn of the event loop,
    in one query: the syncs one event wakes all ask within a turn or two of each other.
    The read starts after every caller in the batch asked, so each gets an answer at
    least as fresh as an unbatched read would be."""

    def __init__(self, read: Callable[[list[str]], Awaitable[dict[str, T]]]):
        self._read = read
        self._pending: dict[str, asyncio.Future[T]] = {}
        self._running: set[asyncio.Task[None]] = set()  # referenced until done

    async def get(self, user_id: str) -> T:
        future = self._pending.get(user_id)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._pending:
                loop.call_soon(self._start)
            future = self._pending[user_id] = loop.create_future()
        # shield: a caller that goes away does not cancel the read for the others.
        return await asyncio.shield(future)

    def _start(self) -> None:
        batch, self._pending = self._pending, {}
        task = asyncio.ensure_future(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: dict[str, asyncio.Future[T]]) -> None:
        try:
            found = await self._read(list(batch))
        except BaseException as e:
            for future in batch.values():
                if not future.done():
                    future.set_exception(e)
                    future.exception()  # retrieved: its caller may be gone
            if not isinstance(e, Exception):
                raise
            return
        for user_id, future in batch.items():
            if not future.done():
                future.set_result(found[user_id])


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
