"""Every condition kind, key paths and globs, per the spec's push rules section and
appendices (#dot-separated-property-paths, #glob-style-matching)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.push.conditions import (
    EventContext,
    compile_condition,
    compile_event_match,
    glob_to_regex,
    parse_key_path,
)


def ctx(event: dict[str, Any], *, members: int = 5, sender_power: float = 0,
        levels: dict[str, Any] | None = None) -> EventContext:
    return EventContext(event, members, sender_power, levels or {})


def matches(condition: dict[str, Any], event: dict[str, Any], display_name: str | None = None,
            **kw: Any) -> bool:
    return compile_condition(condition)(ctx(event, **kw), display_name)


@pytest.mark.parametrize(("key", "path"), [
    ("content.body", ("content", "body")),
    ("content.m\\.relates_to.rel_type", ("content", "m.relates_to", "rel_type")),
    ("content.a\\\\b", ("content", "a\\b")),
    ("content.a\\xb", ("content", "a\\xb")),
    ("type", ("type",)),
])
def test_key_paths_unescape_dots_and_backslashes(key: str, path: tuple[str, ...]) -> None:
    assert parse_key_path(key) == path


def test_event_match_is_whole_value_and_case_insensitive() -> None:
    cond = {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}
    for topic in ("Lunch plans", "LUNCH"):
        assert matches(cond, {"content": {"topic": topic}})
    for other in (" lunch", "lunc", None):
        assert not matches(cond, {"content": {"topic": other}})
    assert not matches(cond, {"content": {}})
    star = {"kind": "event_match", "key": "content.topic", "pattern": "*"}
    assert not matches(star, {"content": {"topic": 3}})


def test_event_match_on_body_matches_at_word_boundaries() -> None:
    cond = {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}
    for body in ("An example event.", "exple", "An exciting triple-whammy"):
        assert matches(cond, {"content": {"body": body}}), body
    assert not matches(cond, {"content": {"body": "examples"}})
    cake = {"kind": "event_match", "key": "content.body", "pattern": "cake"}
    assert matches(cake, {"content": {"body": "I like CAKE!"}})
    assert not matches(cake, {"content": {"body": "cupcake"}})
    assert not matches(cake, {"content": {"body": "cake_pops"}})


def test_glob_metacharacters_of_regexes_are_literal() -> None:
    assert glob_to_regex("a.b", word_boundary=False).search("a.b")
    assert not glob_to_regex("a.b", word_boundary=False).search("axb")


def test_event_property_is_matches_exact_scalars() -> None:
    cond = {"kind": "event_property_is", "key": "content.m\\.federate", "value": True}
    assert matches(cond, {"content": {"m.federate": True}})
    for value in ("true", 1, None):
        assert not matches(cond, {"content": {"m.federate": value}})
    one = {"kind": "event_property_is", "key": "content.n", "value": 1}
    assert matches(one, {"content": {"n": 1}})
    assert not matches(one, {"content": {"n": True}})
    null = {"kind": "event_property_is", "key": "content.n", "value": None}
    assert matches(null, {"content": {"n": None}})
    assert not matches(null, {"content": {}})
    assert not matches({"kind": "event_property_is", "key": "content", "value": "x"},
                       {"content": {"a": "x"}})


def test_event_property_contains_matches_array_members_exactly() -> None:
    cond = {"kind": "event_property_contains", "key": "content.alt_aliases",
            "value": "#myroom:example.com"}
    assert matches(cond, {"content": {"alt_aliases": ["#a:b", "#myroom:example.com"]}})
    assert not matches(cond, {"content": {"alt_aliases": [":example.com"]}})
    assert not matches(cond, {"content": {"alt_aliases": "#myroom:example.com"}})
    assert not matches({"kind": "event_property_contains", "key": "content.l", "value": 1},
                       {"content": {"l": [True, "1"]}})


def test_contains_display_name() -> None:
    cond = {"kind": "contains_display_name"}
    assert matches(cond, {"content": {"body": "hi Alice Smith!"}}, "alice smith")
    assert not matches(cond, {"content": {"body": "hi Alices"}}, "Alice")
    assert not matches(cond, {"content": {"body": "hi Alice"}}, None)
    assert not matches(cond, {"content": {"body": "hi (a)"}}, "")


@pytest.mark.parametrize(("is_", "count", "expected"), [
    ("2", 2, True), ("2", 3, False), ("==2", 2, True), ("<3", 2, True), ("<3", 3, False),
    (">3", 4, True), (">3", 3, False), ("<=3", 3, True), (">=3", 3, True), (">=3", 2, False),
    ("x2", 2, False), ("", 0, False), ("=2", 2, False),
])
def test_room_member_count(is_: str, count: int, expected: bool) -> None:
    assert matches({"kind": "room_member_count", "is": is_}, {}, members=count) is expected


def test_sender_notification_permission() -> None:
    cond = {"kind": "sender_notification_permission", "key": "room"}
    assert matches(cond, {}, sender_power=50)
    assert not matches(cond, {}, sender_power=49)
    assert matches(cond, {}, sender_power=10, levels={"room": 10})
    assert matches(cond, {}, sender_power=float("inf"), levels={"room": 100})


def test_unknown_or_malformed_conditions_never_match() -> None:
    for cond in ({"kind": "org.example.whatever"}, {"kind": "event_match", "key": "type"},
                 {"kind": "event_property_is", "key": "type", "value": {"a": 1}}, "nonsense",
                 {"kind": "room_member_count", "is": 2}):
        assert not matches(cond, {"type": "m.room.message"}, members=2)  # type: ignore[arg-type]


# Word characters, boundaries, case pairs, and characters that fold to ASCII letters
# case-insensitively (Kelvin sign, long s, dotted I).
_TEXT = st.text("abkKsS_ 1.\u212a\u017f\u0130é", max_size=12)


@settings(max_examples=1000, deadline=None)
@given(body=_TEXT | st.sampled_from(["m.room.member", "M.Room.Member", "m.room.memberx"]),
       literal=_TEXT.filter(bool) | st.sampled_from(["m.room.member", "*member", "m.room.?ember"]))
def test_the_literal_shortcuts_never_change_a_match(body: str, literal: str) -> None:
    """Patterns without wildcards are first compared (whole values) or looked for (body,
    display names) as plain strings when ASCII; the result is always the regex's."""
    context = ctx({"content": {"body": body, "topic": body}})
    by_regex = glob_to_regex(literal, word_boundary=True).search(body) is not None
    assert compile_event_match("content.body", literal)(context, None) == by_regex
    whole = glob_to_regex(literal, word_boundary=False).search(body) is not None
    assert compile_event_match("content.topic", literal)(context, None) == whole
    name_regex = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(literal)}(?![A-Za-z0-9_])", re.IGNORECASE)
    assert matches({"kind": "contains_display_name"}, {"content": {"body": body}}, literal) == \
        (name_regex.search(body) is not None)
