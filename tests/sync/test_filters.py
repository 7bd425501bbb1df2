"""Filters: validation, matching, storage on both engines, and /sync's `filter` parameter."""

from __future__ import annotations

import json
from typing import Any

import pytest

from homeserver.errors import BadJson, InvalidParam, NotFound, NotJson
from homeserver.storage.database import Database
from homeserver.storage.filters import FilterStore
from homeserver.sync.filter_service import FilterService
from homeserver.sync.filters import (
    DEFAULT_FILTER,
    MAX_LIMIT,
    parse_filter,
    project_fields,
    split_field_path,
)

SPEC_EXAMPLE: dict[str, Any] = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {"limit": 10, "types": ["m.room.message"],
                     "not_rooms": ["!726s6s6q:example.com"], "not_senders": ["@spam:example.com"]},
        "ephemeral": {"types": ["m.receipt", "m.typing"], "not_rooms": ["!726s6s6q:example.com"],
                      "not_senders": ["@spam:example.com"]},
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


def ev(type_: str = "m.room.message", sender: str = "@bob:x", room: str = "!r:x",
       **content: Any) -> dict[str, Any]:
    return {"type": type_, "sender": sender, "room_id": room, "content": content}


def test_spec_example_parses() -> None:
    f = parse_filter(SPEC_EXAMPLE)
    assert f.room.timeline.limit == 10
    assert f.event_fields == ("type", "content", "sender")
    assert f.room.state.matches(ev("m.room.name"))
    assert not f.room.state.matches(ev("m.room.name", room="!726s6s6q:example.com"))
    assert not f.room.timeline.matches(ev(sender="@spam:example.com"))
    assert f.presence.matches({"type": "m.presence", "sender": "@bob:x"})
    assert not f.presence.matches({"type": "m.presence", "sender": "@alice:example.com"})


def test_empty_filter_matches_everything() -> None:
    f = parse_filter({})
    assert f == DEFAULT_FILTER
    assert f.room.timeline.matches(ev("anything.at.all"))
    assert f.room.timeline.limit_or(20) == 20
    assert f.room.matches_room("!r:x")


@pytest.mark.parametrize("types,not_types,event_type,expected", [
    (["m.*"], [], "m.room.message", True),
    (["m.*"], [], "org.custom", False),
    (["*"], ["m.room.member"], "m.room.member", False),
    (None, ["m.room.*"], "m.room.topic", False),
    (None, ["m.room.*"], "m.reaction", True),
    (["m.room.message"], [], "m.room.messages", False),  # whole-string match
    (["a.b"], [], "aXb", False),  # '.' is literal, only '*' is a wildcard
    (["m.*.x"], [], "m.a.b.x", True),
    ([], [], "m.room.message", False),  # an empty include list includes nothing
])
def test_type_globs(types: list[str] | None, not_types: list[str], event_type: str,
                    expected: bool) -> None:
    body: dict[str, Any] = {"not_types": not_types}
    if types is not None:
        body["types"] = types
    f = parse_filter({"room": {"timeline": body}})
    assert f.room.timeline.matches(ev(event_type)) is expected


def test_senders_rooms_and_contains_url() -> None:
    timeline = parse_filter({"room": {"timeline": {
        "senders": ["@a:x", "@b:x"], "not_senders": ["@b:x"], "rooms": ["!r:x"],
        "contains_url": True}}}).room.timeline
    assert timeline.matches(ev(sender="@a:x", url="mxc://x/y"))
    assert not timeline.matches(ev(sender="@a:x"))  # no url
    assert not timeline.matches(ev(sender="@b:x", url="mxc://x/y"))  # excluded wins
    assert not timeline.matches(ev(sender="@c:x", url="mxc://x/y"))
    assert not timeline.matches(ev(sender="@a:x", room="!s:x", url="mxc://x/y"))
    no_url = parse_filter({"room": {"timeline": {"contains_url": False}}}).room.timeline
    assert no_url.matches(ev()) and not no_url.matches(ev(url="mxc://x/y"))


def test_room_level_and_flags() -> None:
    f = parse_filter({"room": {"rooms": ["!a:x", "!b:x"], "not_rooms": ["!b:x"],
                               "include_leave": True,
                               "state": {"lazy_load_members": True, "include_redundant_members": True},
                               "timeline": {"unread_thread_notifications": True, "limit": 5000}}})
    assert f.room.matches_room("!a:x") and not f.room.matches_room("!b:x")
    assert f.room.include_leave and f.room.state.lazy_load_members
    assert f.room.state.include_redundant_members
    assert f.room.timeline.unread_thread_notifications
    assert f.room.timeline.limit_or(20) == MAX_LIMIT


def test_unknown_keys_are_ignored() -> None:
    parse_filter({"org.example.future": {"x": 1}, "room": {"timeline": {"new_key": []}}})


@pytest.mark.parametrize("body", [
    [], "x", {"event_format": "xml"}, {"event_fields": "type"}, {"event_fields": [1]},
    {"room": []}, {"room": {"timeline": {"limit": -1}}}, {"room": {"timeline": {"limit": "10"}}},
    {"room": {"timeline": {"limit": True}}}, {"room": {"timeline": {"limit": 1.5}}},
    {"room": {"timeline": {"types": "m.room.message"}}}, {"presence": {"senders": ["alice"]}},
    {"room": {"rooms": ["#alias:x"]}}, {"room": {"include_leave": "yes"}},
    {"room": {"state": {"lazy_load_members": 1}}}, {"account_data": {"not_types": [None]}},
    {"room": {"timeline": {"contains_url": "true"}}}, {"room": {"ephemeral": 5}},
    {"room": {"timeline": {"types": ["t"] * 1001}}},
])
def test_invalid_filters_are_bad_json(body: Any) -> None:
    with pytest.raises(BadJson):
        parse_filter(body)


def test_event_fields_projection() -> None:
    assert split_field_path(r"content.m\.relates_to") == ["content", "m.relates_to"]
    assert split_field_path(r"a\\.b") == ["a\\", "b"]
    event = {"type": "m.room.message", "sender": "@a:x",
             "content": {"body": "hi", "m.relates_to": {"rel_type": "m.thread"}, "msgtype": "m.text"}}
    f = parse_filter({"event_fields": ["type", "content.body", r"content.m\.relates_to", "nope.x"]})
    assert f.project(event) == {"type": "m.room.message",
                                "content": {"body": "hi", "m.relates_to": {"rel_type": "m.thread"}}}
    assert project_fields(event, ()) == {}
    assert DEFAULT_FILTER.project(event) is event


async def test_store_assigns_ids_and_dedupes_per_user(database: Database) -> None:
    store = FilterStore()
    async with database.transaction() as conn:
        a0 = await store.add(conn, "@a:x", '{"room":{}}')
        a1 = await store.add(conn, "@a:x", '{"presence":{}}')
        again = await store.add(conn, "@a:x", '{"room":{}}')
        b0 = await store.add(conn, "@b:x", '{"presence":{}}')
    assert again == a0 and len({a0, a1, b0}) == 3
    assert await store.get(database, "@a:x", a1) == '{"presence":{}}'
    assert await store.get(database, "@b:x", a1) is None


async def test_service_round_trip_and_sync_param(database: Database) -> None:
    service = FilterService(database, FilterStore())
    filter_id = await service.create("@a:x", SPEC_EXAMPLE)
    assert not filter_id.startswith("{")
    assert await service.get_json("@a:x", filter_id) == SPEC_EXAMPLE
    assert (await service.get("@a:x", filter_id)).room.timeline.limit == 10
    with pytest.raises(NotFound):
        await service.get_json("@b:x", filter_id)
    with pytest.raises(NotFound):
        await service.get_json("@a:x", "not-a-number")

    resolved = await service.resolve_sync_param("@a:x", filter_id)
    assert resolved == parse_filter(SPEC_EXAMPLE)
    inline = await service.resolve_sync_param("@a:x", json.dumps({"room": {"timeline": {"limit": 3}}}))
    assert inline.room.timeline.limit == 3
    assert await service.resolve_sync_param("@a:x", None) == DEFAULT_FILTER
    with pytest.raises(InvalidParam):
        await service.resolve_sync_param("@a:x", "12345")
    with pytest.raises(InvalidParam):
        await service.resolve_sync_param("@b:x", filter_id)  # someone else's
    with pytest.raises(NotJson):
        await service.resolve_sync_param("@a:x", "{nope")
    with pytest.raises(BadJson):
        await service.resolve_sync_param("@a:x", '{"room": {"timeline": {"limit": -5}}}')
    with pytest.raises(BadJson):
        await service.create("@a:x", {"event_format": "xml"})


async def test_concurrent_uploads_get_distinct_ids(database: Database) -> None:
    import asyncio

    service = FilterService(database, FilterStore())
    ids = await asyncio.gather(*(service.create("@a:x", {"room": {"timeline": {"limit": i % 10}}})
                                 for i in range(30)))
    assert len(set(ids)) == 10  # identical uploads racing each other share one ID
    for i, filter_id in enumerate(ids):
        assert (await service.get("@a:x", filter_id)).room.timeline.limit == i % 10
