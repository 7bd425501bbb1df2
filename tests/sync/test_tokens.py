"""Sync tokens: compact, strict, and never anything but MatrixError on bad input."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.errors import InvalidParam, MatrixError
from homeserver.sync.tokens import (
    MAX_POSITION,
    STREAMS,
    CurrentTokenReader,
    SyncToken,
    current_token,
    token_from,
)

positions = st.dictionaries(st.sampled_from(STREAMS), st.integers(0, MAX_POSITION))


def test_serialisation_is_compact_and_url_safe() -> None:
    token = SyncToken({"events": 12, "typing": 1_700_000_000_000, "push_rules": 3})
    assert token.serialize() == "s12_0_0_1700000000000_0_0_0_3"
    assert SyncToken.parse(str(token)) == token
    assert SyncToken().serialize() == "s0_0_0_0_0_0_0_0"


@given(positions)
def test_round_trip(pos: dict[str, int]) -> None:
    token = SyncToken(pos)
    assert SyncToken.parse(token.serialize()) == token
    assert hash(SyncToken.parse(token.serialize())) == hash(token)
    assert all(token[s] == pos.get(s, 0) for s in STREAMS)


def test_unknown_streams_read_as_zero_and_older_tokens_are_accepted() -> None:
    assert SyncToken({"events": 5})["presence"] == 0
    # A token minted before a stream was added has fewer fields.
    assert SyncToken.parse("s7_2") == SyncToken({"events": 7, "account_data": 2})


@pytest.mark.parametrize("raw", [
    "", "s", "x1_2", "s1__2", "s-1", "s+1", "s01", "s1_2_3_4_5_6_7_8_9", "s 1", "s1.0",
    "s²", "s١", "s9223372036854775808", "s99999999999999999999", "S1", "s1_", "s_1",
    "s" + "1_" * 500,
])
def test_garbage_is_invalid_param(raw: str) -> None:
    with pytest.raises(InvalidParam):
        SyncToken.parse(raw)


@pytest.mark.parametrize("raw", [None, 5, b"s1", ["s1"]])
def test_non_strings_are_invalid_param(raw: object) -> None:
    with pytest.raises(InvalidParam):
        SyncToken.parse(raw)


@given(st.text())
def test_arbitrary_text_raises_only_matrix_errors(raw: str) -> None:
    try:
        token = SyncToken.parse(raw)
    except MatrixError:
        return
    # Whatever parses is a prefix of the one canonical spelling.
    assert token.serialize().startswith(raw) and SyncToken.parse(token.serialize()) == token


@given(st.from_regex(r"\As[0-9_]{0,60}\Z"))
def test_token_shaped_text_raises_only_matrix_errors(raw: str) -> None:
    try:
        SyncToken.parse(raw)
    except MatrixError:
        pass


def test_future_tokens_are_clamped_to_current() -> None:
    current = SyncToken({"events": 10, "typing": 100})
    future = SyncToken({"events": 50, "typing": 20, "receipts": 3})
    assert future.clamp(current) == SyncToken({"events": 10, "typing": 20})
    assert not future.is_after_or_eq(current) and not current.is_after_or_eq(future)
    assert future.advanced_past(current) == ("events", "receipts")
    assert future.merge_max(current) == SyncToken({"events": 50, "typing": 100, "receipts": 3})


def test_bad_positions_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        SyncToken({"nope": 1})
    with pytest.raises(ValueError):
        SyncToken({"events": -1})
    with pytest.raises(ValueError):
        SyncToken({"events": True})


def test_token_from_ignores_non_sync_counters() -> None:
    assert token_from([("events", 3), ("filters", 9)]) == SyncToken({"events": 3})


async def test_current_token_reads_streams_and_in_memory_positions(database) -> None:  # type: ignore[no-untyped-def]
    from homeserver.storage import streams

    async with database.transaction() as conn:
        await streams.next_position(conn, "events")
        await streams.next_position(conn, "events")
        await streams.next_position(conn, "receipts")
    token = await current_token(database, {"typing": 77})
    assert token == SyncToken({"events": 2, "receipts": 1, "typing": 77})


class _CountingDb:
    """Answers the stream-positions query, counting reads; `gate` holds reads back."""

    def __init__(self) -> None:
        self.reads = 0
        self.position = 1
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None

    async def fetch(self, sql: str, *args: object) -> list[dict[str, object]]:
        self.reads += 1
        position = self.position
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return [{"stream": "events", "position": position}]


async def test_current_token_reader_shares_one_read_among_callers_waiting_for_it() -> None:
    db = _CountingDb()
    seen: list[SyncToken] = []
    reader = CurrentTokenReader(db, lambda: {"typing": 7}, on_read=seen.append)
    tokens = await asyncio.gather(*(reader.read() for _ in range(50)))
    assert db.reads == 1
    assert all(t == SyncToken({"events": 1, "typing": 7}) for t in tokens)
    assert seen == [tokens[0]]


async def test_current_token_reader_never_answers_with_a_read_started_before_the_call() -> None:
    db = _CountingDb()
    db.gate = asyncio.Event()
    reader = CurrentTokenReader(db, lambda: {})
    early = asyncio.ensure_future(reader.read())
    await db.started.wait()  # the first read has started (and sees position 1)
    db.position = 2  # a write commits after it started
    late = asyncio.ensure_future(reader.read())
    db.gate.set()
    assert (await early)["events"] == 1
    assert (await late)["events"] == 2
    assert db.reads == 2


async def test_current_token_reader_takes_a_committed_token_without_reading() -> None:
    db = _CountingDb()
    db.position = 3
    offered: list[SyncToken | None] = [None]
    seen: list[SyncToken] = []
    reader = CurrentTokenReader(db, lambda: {"typing": 7}, on_read=seen.append,
                                committed=lambda: offered[0])
    first = await reader.read()  # nothing offered: read
    assert db.reads == 1 and first == SyncToken({"events": 3, "typing": 7})
    offered[0] = SyncToken({"events": 5, "receipts": 2})
    second = await reader.read()
    # No read; the in-memory typing position and the last token are merged in.
    assert db.reads == 1
    assert second == SyncToken({"events": 5, "receipts": 2, "typing": 7})
    assert seen == [first, second] and reader.last == second
    # An offer older than the last token never takes a stream backwards.
    offered[0] = SyncToken({"events": 4})
    assert await reader.read() == second
    offered[0] = None
    db.position = 6
    assert (await reader.read())["events"] == 6 and db.reads == 2
