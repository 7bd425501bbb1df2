"""Sync tokens: a vector of stream positions, one per stream a /sync reads.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync (`since`,
`next_batch`). The token is opaque to clients; ours is `s` followed by the positions in
the fixed order of STREAMS, joined by `_`: `s12_3_0_1700000000000_0_0_5_0`. It is short,
URL-safe without escaping, and a new stream is added by appending to STREAMS: a token
minted before the upgrade has fewer fields and the missing ones read as 0, so the client
simply receives that stream from the start.

Tokens from the future (a position above the server's current one) happen legitimately:
a database restored from a backup, an in-memory stream after a restart, or later a
worker that lags behind another. Rejecting them with 400 strands the client (most
clients then loop on the error), so, like Synapse since 1.111, we clamp each position to
the current one (`clamp`) and log it; the client gets `next_batch` back in our numbering.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from homeserver.errors import InvalidParam
from homeserver.storage import streams

EVENTS = "events"
ACCOUNT_DATA = "account_data"
RECEIPTS = "receipts"
TYPING = "typing"
TO_DEVICE = "to_device"
DEVICE_LISTS = "device_lists"
PRESENCE = "presence"
PUSH_RULES = "push_rules"

# Serialisation order. Append only: reordering or removing breaks every client's token.
STREAMS: tuple[str, ...] = (EVENTS, ACCOUNT_DATA, RECEIPTS, TYPING, TO_DEVICE,
                            DEVICE_LISTS, PRESENCE, PUSH_RULES)

# Positions are BIGINT in the database; anything larger cannot be ours.
MAX_POSITION = 2**63 - 1
# Digits only, no sign, no leading zeros (one spelling per token keeps them comparable
# as strings in logs and caches).
_POSITION = "(?:0|[1-9][0-9]{0,18})"
_TOKEN = re.compile(f"s{_POSITION}(?:_{_POSITION}){{0,{len(STREAMS) - 1}}}")
_MAX_TOKEN_LENGTH = 1 + len(STREAMS) * 20


def _freeze(positions: Mapping[str, int]) -> Mapping[str, int]:
    frozen: dict[str, int] = {}
    for stream, position in positions.items():
        _check(stream, position)
        if position:
            frozen[stream] = position
    return MappingProxyType(frozen)


def _check(stream: str, position: int) -> None:
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= MAX_POSITION:
        raise ValueError(f"bad position for {stream}: {position!r}")


@attrs.frozen(eq=False)
class SyncToken:
    """Immutable; `token[stream]` is that stream's position, 0 when absent.

    Every sync makes and compares several, so the methods below build new tokens from
    positions already checked (`_of`) instead of checking them all again."""

    positions: Mapping[str, int] = attrs.field(converter=_freeze, factory=dict)

    @classmethod
    def _of(cls, positions: dict[str, int]) -> SyncToken:
        """A token from checked positions, zeros left out (the converter's output form)."""
        token = object.__new__(cls)
        object.__setattr__(token, "positions", MappingProxyType(positions))
        return token

    def __getitem__(self, stream: str) -> int:
        return self.positions.get(stream, 0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SyncToken) and self.positions == other.positions

    def __hash__(self) -> int:
        get = self.positions.get
        return hash(tuple(get(s, 0) for s in STREAMS))

    def __str__(self) -> str:
        return self.serialize()

    def serialize(self) -> str:
        get = self.positions.get
        return "s" + "_".join(str(get(s, 0)) for s in STREAMS)

    @classmethod
    def parse(cls, raw: Any) -> SyncToken:
        """Strict inverse of serialize(); anything else is M_INVALID_PARAM."""
        # fullmatch of [0-9], not isdigit(): isdigit() accepts non-ASCII digits such as '²'.
        if not isinstance(raw, str) or len(raw) > _MAX_TOKEN_LENGTH or not _TOKEN.fullmatch(raw):
            raise InvalidParam("Invalid sync token")
        positions: dict[str, int] = {}
        for stream, field in zip(STREAMS, raw[1:].split("_"), strict=False):
            value = int(field)
            if value > MAX_POSITION:
                raise InvalidParam("Invalid sync token")
            if value:
                positions[stream] = value
        return cls._of(positions)

    def copy_with(self, stream: str, position: int) -> SyncToken:
        _check(stream, position)
        positions = dict(self.positions)
        if position:
            positions[stream] = position
        else:
            positions.pop(stream, None)
        return SyncToken._of(positions)

    def advanced_past(self, other: SyncToken) -> tuple[str, ...]:
        """The streams on which this token is strictly ahead of `other`."""
        return tuple(s for s in STREAMS if self[s] > other[s])

    def is_after_or_eq(self, other: SyncToken) -> bool:
        # A stream absent from `other` is at 0, which every position is at or after.
        get = self.positions.get
        return all(get(s, 0) >= p for s, p in other.positions.items())

    def clamp(self, current: SyncToken) -> SyncToken:
        """Each position capped at `current`'s: see the module docstring for why."""
        get = current.positions.get
        return SyncToken._of({s: c for s, p in self.positions.items()
                              if (c := min(p, get(s, 0)))})

    def merge_max(self, other: SyncToken) -> SyncToken:
        merged = dict(self.positions)
        for s, p in other.positions.items():
            if p > merged.get(s, 0):
                merged[s] = p
        return SyncToken._of(merged)


def token_from(pairs: Iterable[tuple[str, int]]) -> SyncToken:
    """A token from (stream, position) pairs, ignoring streams a sync does not read
    (the stream_positions table also numbers things like filters or one-off counters)."""
    return SyncToken({s: p for s, p in pairs if s in STREAMS})


async def current_token(db: Any, in_memory: Mapping[str, int]) -> SyncToken:
    """The server's current position on every stream: persisted streams from the
    database, in-memory ones (typing) from their owners."""
    persisted = await streams.all_positions(db)
    return token_from([*persisted.items(), *in_memory.items()])


class CurrentTokenReader:
    """`current_token`, read once for every caller that asks before the read starts.

    One message wakes hundreds of long-polls in the same loop turn and each first asks
    for the current token; they share one read. A caller never gets a token read before
    it asked (it joins only a read that has not started), so no caller misses a position
    it was woken for. Each caller waits on a future of its own (one that goes away takes
    no one else's answer with it). `on_read` sees every token read (it is committed:
    read outside any transaction).

    `committed` may offer a token known to be committed without a read (see
    Notifier.committed_token); while it does, callers get it at once, merged with the
    in-memory positions and the last token, and nothing is read.
    """

    def __init__(self, db: Any, in_memory: Callable[[], Mapping[str, int]],
                 on_read: Callable[[SyncToken], None] = lambda token: None,
                 committed: Callable[[], SyncToken | None] = lambda: None):
        self._db = db
        self._in_memory = in_memory
        self._on_read = on_read
        self._committed = committed
        # The callers of the read that has not started yet (None: no read scheduled).
        self._waiting: list[asyncio.Future[SyncToken]] | None = None
        self._running: set[asyncio.Task[None]] = set()  # referenced until done
        # The highest token read so far: any token at or below it is not from the future.
        self.last: SyncToken | None = None

    async def read(self) -> SyncToken:
        known = self._committed()
        if known is not None:
            token = known.merge_max(token_from(self._in_memory().items()))
            if self.last is not None:
                token = token.merge_max(self.last)
            self.last = token
            self._on_read(token)
            return token
        loop = asyncio.get_running_loop()
        if self._waiting is None:
            self._waiting = []
            task = loop.create_task(self._read())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        future: asyncio.Future[SyncToken] = loop.create_future()
        self._waiting.append(future)
        return await future

    async def _read(self) -> None:
        # From here on the read has started: later callers need a read of their own.
        waiting, self._waiting = self._waiting or [], None
        try:
            token = await current_token(self._db, self._in_memory())
            self.last = token if self.last is None else self.last.merge_max(token)
            self._on_read(token)
        except BaseException as e:
            for future in waiting:
                if not future.done():
                    future.set_exception(e)
                    future.exception()  # retrieved: its caller may be gone
            if not isinstance(e, Exception):
                raise
            return
        for future in waiting:
            if not future.done():
                future.set_result(token)
