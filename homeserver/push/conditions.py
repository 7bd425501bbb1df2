"""Push rule conditions compiled to predicates: globs become regexes once per rule set.

Spec: https://spec.matrix.org/v1.19/client-server-api/#conditions-1, appendices
#dot-separated-property-paths and #glob-style-matching .
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import attrs

JsonDict = dict[str, Any]
_ABSENT = object()
# Spec: a word boundary is the edge of the value or any character outside these sets.
_WORD = "A-Za-z0-9_"
_MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")
_MAX_SAFE_INT = 2**53 - 1


@attrs.frozen
class EventContext:
    """What conditions look at besides the event: computed once per event, shared by
    every member evaluated for it."""

    event: JsonDict
    member_count: int
    sender_power: int | float
    # power_levels `notifications` (key -> level); missing keys default to 50.
    notification_levels: JsonDict


# (context, the user's display name in the room) -> matches
Predicate = Callable[[EventContext, "str | None"], bool]


def parse_key_path(key: str) -> tuple[str, ...]:
    """`content.m\\.relates_to.rel_type` -> ("content", "m.relates_to", "rel_type"):
    a backslash escapes `.` and `\\`; any other backslash stays as it is."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            current.append(key[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


def lookup(event: JsonDict, path: tuple[str, ...]) -> Any:
    value: Any = event
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def glob_to_regex(pattern: str, *, word_boundary: bool) -> re.Pattern[str]:
    """`*` is any run of characters, `?` exactly one; case-insensitive. Whole value, or,
    for `content.body`, any substring starting and ending at a word boundary."""
    body = "".join(".*?" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    if word_boundary:
        body = f"(?<![{_WORD}]){body}(?![{_WORD}])"
    else:
        body = rf"\A{body}\Z"
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def _is_scalar(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _same(a: Any, b: Any) -> bool:
    """Exact JSON equality of scalars: true is not 1 and "1" is not 1."""
    return type(a) is type(b) and a == b


def _never(ctx: EventContext, display_name: str | None) -> bool:
    return False


def compile_event_match(key: str, pattern: str) -> Predicate:
    path = parse_key_path(key)
    regex = glob_to_regex(pattern, word_boundary=path == ("content", "body"))

    def event_match(ctx: EventContext, display_name: str | None) -> bool:
        value = lookup(ctx.event, path)
        return isinstance(value, str) and regex.search(value) is not None
    return event_match


def _compile_property_is(key: str, expected: Any) -> Predicate:
    path = parse_key_path(key)

    def event_property_is(ctx: EventContext, display_name: str | None) -> bool:
        value = lookup(ctx.event, path)
        return _is_scalar(value) and _same(value, expected)
    return event_property_is


def _compile_property_contains(key: str, expected: Any) -> Predicate:
    path = parse_key_path(key)

    def event_property_contains(ctx: EventContext, display_name: str | None) -> bool:
        value = lookup(ctx.event, path)
        return isinstance(value, list) and any(_is_scalar(v) and _same(v, expected) for v in value)
    return event_property_contains


def _compile_member_count(is_: str) -> Predicate:
    m = _MEMBER_COUNT.fullmatch(is_)
    if m is None:
        return _never
    op, number = m.group(1) or "==", int(m.group(2))
    compare: dict[str, Callable[[int], bool]] = {
        "==": lambda n: n == number, "<": lambda n: n < number, ">": lambda n: n > number,
        "<=": lambda n: n <= number, ">=": lambda n: n >= number}
    test = compare[op]
    return lambda ctx, display_name: test(ctx.member_count)


def _compile_notification_permission(key: str) -> Predicate:
    def sender_notification_permission(ctx: EventContext, display_name: str | None) -> bool:
        level = ctx.notification_levels.get(key, 50)
        if isinstance(level, bool) or not isinstance(level, int):
            level = 50
        return ctx.sender_power >= level
    return sender_notification_permission


def _contains_display_name(ctx: EventContext, display_name: str | None) -> bool:
    if not display_name:
        return False
    body = lookup(ctx.event, ("content", "body"))
    if not isinstance(body, str):
        return False
    return _display_name_regex(display_name).search(body) is not None


@functools.lru_cache(maxsize=65_536)
def _display_name_regex(display_name: str) -> re.Pattern[str]:
    """The word-bounded, case-insensitive pattern for one display name.

    A memo of a pure function (no data to invalidate): compiling this pattern costs
    ~100 us, and `re`'s own cache holds only 512 patterns, so in a room with more members
    than that every evaluation recompiled it (bench/push_eval.py: 215 -> ~20 us per member
    for an ordinary message in a 2,000-member room)."""
    return re.compile(rf"(?<![{_WORD}]){re.escape(display_name)}(?![{_WORD}])", re.IGNORECASE)


def compile_condition(condition: Any) -> Predicate:
    """A predicate for one condition; unknown kinds and malformed parameters never match
    (spec: "Unrecognised conditions MUST NOT match any events")."""
    if not isinstance(condition, dict):
        return _never
    kind = condition.get("kind")
    key = condition.get("key")
    if kind == "event_match":
        pattern = condition.get("pattern")
        if isinstance(key, str) and isinstance(pattern, str):
            return compile_event_match(key, pattern)
    elif kind in ("event_property_is", "event_property_contains"):
        value = condition.get("value", _ABSENT)
        if isinstance(key, str) and value is not _ABSENT and _is_scalar(value):
            if kind == "event_property_is":
                return _compile_property_is(key, value)
            return _compile_property_contains(key, value)
    elif kind == "contains_display_name":
        return _contains_display_name
    elif kind == "room_member_count":
        is_ = condition.get("is")
        if isinstance(is_, str):
            return _compile_member_count(is_)
    elif kind == "sender_notification_permission":
        if isinstance(key, str):
            return _compile_notification_permission(key)
    return _never
