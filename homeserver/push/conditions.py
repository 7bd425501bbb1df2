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
    # content.body lowercased when it is pure ASCII (else None), for `_may_contain`.
    ascii_body: str | None = attrs.field(
        init=False, default=attrs.Factory(lambda self: _ascii_lower(self.event), takes_self=True))


def _ascii_lower(event: JsonDict) -> str | None:
    body = lookup(event, ("content", "body"))
    return body.lower() if isinstance(body, str) and body.isascii() else None


def _may_contain(ctx: EventContext, literal: str) -> bool:
    """False only if the body cannot contain `literal` case-insensitively: a cheap test
    before a regex (compiling one per user costs ~100 us, searching ~1 us). Exact when
    both are ASCII, as then case-insensitive matching is `lower()` on both sides (only
    non-ASCII characters, such as the Kelvin sign, fold to ASCII ones)."""
    body = ctx.ascii_body
    return body is None or not literal.isascii() or literal.lower() in body


# (context, the user's display name in the room) -> matches
Predicate = Callable[[EventContext, "str | None"], bool]


@functools.lru_cache(maxsize=4096)
def parse_key_path(key: str) -> tuple[str, ...]:
    """`content.m\\.relates_to.rel_type` -> ("content", "m.relates_to", "rel_type"):
    a backslash escapes `.` and `\\`; any other backslash stays as it is. Memoised (a
    pure function of a few distinct keys, parsed again for every rule set compiled)."""
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


@functools.lru_cache(maxsize=65_536)
def glob_to_regex(pattern: str, *, word_boundary: bool) -> re.Pattern[str]:
    """`*` is any run of characters, `?` exactly one; case-insensitive. Whole value, or,
    for `content.body`, any substring starting and ending at a word boundary.

    A memo of a pure function, like `_display_name_regex`: every user's default rules
    hold the same dozen patterns and one or two of their own, so past `re`'s 512-pattern
    cache compiling a room's rule sets recompiled the shared ones for every member
    (bench/push_eval.py: ~900 us per rule set before)."""
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
    word_boundary = path == ("content", "body")
    plain = "*" not in pattern and "?" not in pattern
    # A body pattern without wildcards is a literal to look for first.
    literal = pattern if word_boundary and plain else None
    # Any other is a whole value: for ASCII, matching it is comparing lowercased strings.
    whole = pattern.lower() if not word_boundary and plain and pattern.isascii() else None
    # Made on first use: a user's own patterns (their ID as an invite's state_key, their
    # localpart) cost a regex compile each, and most are never needed.
    regex: list[re.Pattern[str]] = []

    def event_match(ctx: EventContext, display_name: str | None) -> bool:
        value = lookup(ctx.event, path)
        if not isinstance(value, str):
            return False
        if whole is not None and value.isascii():
            return value.lower() == whole
        if literal is not None and not _may_contain(ctx, literal):
            return False
        if not regex:
            regex.append(glob_to_regex(pattern, word_boundary=word_boundary))
        return regex[0].search(value) is not None
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
    if not isinstance(body, str) or not _may_contain(ctx, display_name):
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
