"""The directory services' pure parts: directory entries, pages and tokens, user ranking."""

from __future__ import annotations

import pytest

from homeserver.accounts.user_directory import Candidate, score
from homeserver.errors import InvalidParam
from homeserver.rooms.directory import (
    PublicRoomsQuery,
    _page,
    decode_since,
    directory_entry,
    encode_since,
)
from homeserver.search.criteria import Cursor, parse_next_batch, search_words


def test_directory_entry_keeps_only_well_formed_values() -> None:
    entry = directory_entry("!r:x", {
        "m.room.name": {"name": "N"}, "m.room.topic": {"topic": 5},
        "m.room.canonical_alias": {"alias": "nope"}, "m.room.avatar": {"url": "http://x"},
        "m.room.guest_access": {"guest_access": "can_join"},
        "m.room.create": {"type": "m.space"},
    }, 3)
    assert entry == {"room_id": "!r:x", "num_joined_members": 3, "world_readable": False,
                     "guest_can_join": True, "name": "N", "room_type": "m.space"}


def test_pages_and_tokens() -> None:
    entries = [{"room_id": f"!{i}:x", "num_joined_members": 10 - i} for i in range(5)]
    first = _page(entries, PublicRoomsQuery(limit=2))
    assert first["chunk"] == entries[:2] and "prev_batch" not in first
    second = _page(entries, PublicRoomsQuery(limit=2, since=first["next_batch"]))
    assert second["chunk"] == entries[2:4]
    assert _page(entries, PublicRoomsQuery(limit=2, since=second["prev_batch"]))["chunk"] == entries[:2]
    # A token whose room has since gone still lands in the right place.
    gone = encode_since("n", {"room_id": "!1b:x", "num_joined_members": 9})
    assert _page(entries, PublicRoomsQuery(limit=2, since=gone))["chunk"] == entries[2:4]
    assert decode_since(gone)[0] == "n"
    for bad in ("", "x", "n!!", "neyJ4Ijp9", "p" + "W10"):
        with pytest.raises(InvalidParam):
            decode_since(bad)


def test_user_scores() -> None:
    alice = Candidate("@alice:x", "Alice Smith", None, shares_room=False)
    assert score(alice, "bob", ["bob"]) is None
    assert score(alice, "smi", ["smi"]) == 0
    assert score(alice, "alice smith", ["alice", "smith"]) == 100
    assert score(alice, "ali", ["ali"]) == 50
    sharing = Candidate("@alice:x", "Alice Smith", None, shares_room=True)
    assert score(sharing, "smi", ["smi"]) == 20


def test_search_words_and_tokens() -> None:
    assert search_words("Martians & men: \"MEN\" | !x_y") == ["martians", "men", "x", "y"]
    assert parse_next_batch("k20", "rank") == Cursor("rank", 20)
    assert Cursor("recent", 7).token() == "r7"
    with pytest.raises(InvalidParam):
        parse_next_batch("r7", "rank")
