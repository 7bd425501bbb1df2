"""Filters: parsed, validated and ready to match events (sync, /messages, /context).

Spec: https://spec.matrix.org/v1.19/client-server-api/#filtering and the Filter schema
of POST /user/{userId}/filter. Unknown keys are accepted and ignored (a server must not
reject filters written for newer spec versions); known keys of the wrong shape are
M_BAD_JSON, the errcode for a malformed body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from homeserver.errors import BadJson

# A client asking for more than this gets this many; the spec leaves the cap to servers.
MAX_LIMIT = 1000
_MAX_LIST = 1000


def _glob(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    alternatives = "|".join(".*".join(re.escape(part) for part in p.split("*")) for p in patterns)
    return re.compile(f"(?:{alternatives})", re.DOTALL)


# Filters are hashed as part of the keys under which syncs share rooms
# (sync/room_sync.py), several times per sync: each hash is computed once.
@attrs.frozen(cache_hash=True)
class EventFilter:
    """Spec EventFilter: for presence and global account data (and the base of rooms')."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: frozenset[str] | None = None
    not_senders: frozenset[str] = frozenset()
    _types_re: re.Pattern[str] | None = attrs.field(init=False, eq=False, repr=False)
    _not_types_re: re.Pattern[str] | None = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_types_re", _glob(self.types or ()))
        object.__setattr__(self, "_not_types_re", _glob(self.not_types))

    def limit_or(self, default: int) -> int:
        return default if self.limit is None else min(self.limit, MAX_LIMIT)

    def matches_type(self, event_type: str) -> bool:
        if self._not_types_re is not None and self._not_types_re.fullmatch(event_type):
            return False
        if self.types is None:
            return True
        return self._types_re is not None and bool(self._types_re.fullmatch(event_type))

    def matches_sender(self, sender: str | None) -> bool:
        if sender is not None and sender in self.not_senders:
            return False
        return self.senders is None or sender in self.senders

    def matches(self, event: Mapping[str, Any]) -> bool:
        """`event` is a client-format event (or presence/account-data event) as a dict."""
        event_type = event.get("type")
        return (isinstance(event_type, str) and self.matches_type(event_type)
                and self.matches_sender(event.get("sender")))


@attrs.frozen(cache_hash=True)
class RoomEventFilter(EventFilter):
    """Spec RoomEventFilter: timeline, state, ephemeral and room account data."""

    rooms: frozenset[str] | None = None
    not_rooms: frozenset[str] = frozenset()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    def matches_room(self, room_id: str) -> bool:
        return room_id not in self.not_rooms and (self.rooms is None or room_id in self.rooms)

    def matches(self, event: Mapping[str, Any]) -> bool:
        if not super().matches(event):
            return False
        room_id = event.get("room_id")
        if isinstance(room_id, str) and not self.matches_room(room_id):
            return False
        if self.contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, Mapping) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True


@attrs.frozen
class RoomFilter:
    rooms: frozenset[str] | None = None
    not_rooms: frozenset[str] = frozenset()
    include_leave: bool = False
    ephemeral: RoomEventFilter = RoomEventFilter()
    state: RoomEventFilter = RoomEventFilter()
    timeline: RoomEventFilter = RoomEventFilter()
    account_data: RoomEventFilter = RoomEventFilter()

    def matches_room(self, room_id: str) -> bool:
        """Applied before the per-section filters (spec: RoomFilter.rooms/not_rooms)."""
        return room_id not in self.not_rooms and (self.rooms is None or room_id in self.rooms)


@attrs.frozen
class Filter:
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    presence: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()
    room: RoomFilter = RoomFilter()

    def project(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event cut down to `event_fields` (itself when no fields were asked for)."""
        return project_fields(event, self.event_fields) if self.event_fields is not None else event


DEFAULT_FILTER = Filter()


# --- parsing ---------------------------------------------------------------------------

def _object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadJson(f"'{where}' must be an object")
    return value


def _bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise BadJson(f"'{where}.{key}' must be a boolean")
    return value


def _strings(obj: Mapping[str, Any], key: str, where: str, sigil: str = "") -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > _MAX_LIST:
        raise BadJson(f"'{where}.{key}' must be an array of at most {_MAX_LIST} strings")
    for item in value:
        if not isinstance(item, str) or (sigil and not item.startswith(sigil)):
            kind = f"strings starting with '{sigil}'" if sigil else "strings"
            raise BadJson(f"'{where}.{key}' must contain only {kind}")
    return tuple(value)


def _limit(obj: Mapping[str, Any], where: str) -> int | None:
    value = obj.get("limit")
    if value is None:
        return None
    # The spec says "greater than 0", but clients in the wild send 0 to mean "no
    # events" and Synapse accepts it, so only negatives and non-integers are refused.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadJson(f"'{where}.limit' must be a non-negative integer")
    return value


def _event_filter_args(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    senders = _strings(obj, "senders", where, "@")
    return {
        "limit": _limit(obj, where),
        "types": _strings(obj, "types", where),
        "not_types": _strings(obj, "not_types", where) or (),
        "senders": None if senders is None else frozenset(senders),
        "not_senders": frozenset(_strings(obj, "not_senders", where, "@") or ()),
    }


def parse_event_filter(value: Any, where: str) -> EventFilter:
    return EventFilter(**_event_filter_args(_object(value, where), where))


def parse_room_event_filter(value: Any, where: str) -> RoomEventFilter:
    obj = _object(value, where)
    rooms = _strings(obj, "rooms", where, "!")
    return RoomEventFilter(
        **_event_filter_args(obj, where),
        rooms=None if rooms is None else frozenset(rooms),
        not_rooms=frozenset(_strings(obj, "not_rooms", where, "!") or ()),
        contains_url=_bool(obj, "contains_url", where),
        lazy_load_members=bool(_bool(obj, "lazy_load_members", where)),
        include_redundant_members=bool(_bool(obj, "include_redundant_members", where)),
        unread_thread_notifications=bool(_bool(obj, "unread_thread_notifications", where)),
    )


def parse_room_filter(value: Any) -> RoomFilter:
    obj = _object(value, "room")
    rooms = _strings(obj, "rooms", "room", "!")
    return RoomFilter(
        rooms=None if rooms is None else frozenset(rooms),
        not_rooms=frozenset(_strings(obj, "not_rooms", "room", "!") or ()),
        include_leave=bool(_bool(obj, "include_leave", "room")),
        ephemeral=parse_room_event_filter(obj.get("ephemeral"), "room.ephemeral"),
        state=parse_room_event_filter(obj.get("state"), "room.state"),
        timeline=parse_room_event_filter(obj.get("timeline"), "room.timeline"),
        account_data=parse_room_event_filter(obj.get("account_data"), "room.account_data"),
    )


def parse_filter(body: Any) -> Filter:
    """Validate a Filter JSON object; raises BadJson naming the offending key."""
    if not isinstance(body, Mapping):
        raise BadJson("A filter must be a JSON object")
    event_format = body.get("event_format", "client")
    if event_format not in ("client", "federation"):
        raise BadJson("'event_format' must be 'client' or 'federation'")
    return Filter(
        event_fields=_strings(body, "event_fields", "filter"),
        event_format=event_format,
        presence=parse_event_filter(body.get("presence"), "presence"),
        account_data=parse_event_filter(body.get("account_data"), "account_data"),
        room=parse_room_filter(body.get("room")),
    )


# --- event_fields ----------------------------------------------------------------------

def split_field_path(path: str) -> list[str]:
    """`content.m\\.relates_to` -> ["content", "m.relates_to"] (appendix: dot-separated
    property paths; a backslash escapes a dot or another backslash)."""
    parts: list[str] = []
    current = ""
    chars = iter(path)
    for ch in chars:
        if ch == "\\":
            current += next(chars, "\\")
        elif ch == ".":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def project_fields(event: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in fields:
        parts = split_field_path(path)
        source: Any = event
        for part in parts:
            if not isinstance(source, Mapping) or part not in source:
                break
            source = source[part]
        else:
            target = out
            for part in parts[:-1]:
                target = target.setdefault(part, {})
                if not isinstance(target, dict):
                    break
            else:
                target[parts[-1]] = source
    return out
