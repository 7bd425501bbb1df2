"""Power levels: parsing `m.room.power_levels` and answering "what level has this user".

Spec: https://spec.matrix.org/v1.19/client-server-api/#mroompower_levels and the
"Definitions" of https://spec.matrix.org/v1.19/server-server-api/#authorization-rules .
Room versions before 10 accept levels as strings (and v1–5 as floats), see
https://spec.matrix.org/v1.19/rooms/v1/#mroompower_levels-events-accept-values-as-strings ;
room version 12 gives the room creators an infinite level
(https://spec.matrix.org/v1.19/rooms/v12/#authorisation-rules).
"""

from __future__ import annotations

import math
import re
from typing import Any

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion

# Defaults when a named level is absent from the content (or there is no event at all).
NAMED_LEVEL_DEFAULTS: dict[str, int] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}
# `notifications` keys default to 50 ("room" is the only one the spec defines).
NOTIFICATION_LEVEL_DEFAULT = 50
# Pre-v12 rooms without an m.room.power_levels event give the creator this level.
IMPLICIT_CREATOR_LEVEL = 100

# Stringy levels: optional surrounding whitespace, one sign, base-10 digits (ASCII only:
# Python's int() would also accept "1_000" and non-ASCII digits, which the spec does not).
_STRING_LEVEL = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]+[ \t\n\r\f\v]*", re.ASCII)

# Lenient user ID grammar: historical localparts allow any printable ASCII except ':'
# (https://spec.matrix.org/v1.19/appendices/#historical-user-ids), so rooms created by
# old servers still validate.
_USER_ID = re.compile(
    r"@[\x21-\x39\x3b-\x7e]+:"
    r"(\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Za-z.-]{1,255})(:[0-9]{1,5})?",
    re.ASCII,
)


def is_valid_user_id(value: object) -> bool:
    """A syntactically valid (possibly historical) user ID of at most 255 bytes."""
    return (
        isinstance(value, str)
        and len(value.encode("utf-8")) <= 255
        and _USER_ID.fullmatch(value) is not None
    )


def parse_level(value: Any, room_version: RoomVersion) -> int | None:
    """A power level value as an int, or None when the room version does not accept it."""
    if isinstance(value, bool):
        return None  # JSON true/false are not integers, although Python says otherwise
    if isinstance(value, int):
        return value
    if room_version.enforce_int_power_levels:
        return None
    if isinstance(value, str):
        if _STRING_LEVEL.fullmatch(value) is None:
            return None
        return int(value.strip())
    if isinstance(value, float) and not room_version.strict_canonicaljson:
        # v1–5 only: floats are truncated; infinities and NaN are invalid.
        return int(value) if math.isfinite(value) else None
    return None


def get_creators(create_event: Pdu | None) -> set[str]:
    """The room creators: v12 sender + `additional_creators`; before, the single creator
    (`content.creator` up to v10, the create event's sender from v11)."""
    if create_event is None:
        return set()
    rv = create_event.room_version
    if not rv.implicit_room_creator:
        creator = create_event.content.get("creator")
        return {creator} if isinstance(creator, str) else set()
    creators = {create_event.sender}
    if rv.privileged_creators:
        extra = create_event.content.get("additional_creators")
        if isinstance(extra, list):
            creators.update(c for c in extra if isinstance(c, str))
    return creators


def is_creator(user_id: str, create_event: Pdu | None) -> bool:
    """`user_id in get_creators(create_event)`, without building the set (every auth
    check asks this of the sender)."""
    if create_event is None:
        return False
    rv = create_event.room_version
    if not rv.implicit_room_creator:
        creator = create_event.content.get("creator")
        return isinstance(creator, str) and creator == user_id
    if create_event.sender == user_id:
        return True
    if rv.privileged_creators:
        extra = create_event.content.get("additional_creators")
        if isinstance(extra, list):
            for c in extra:
                if isinstance(c, str) and c == user_id:
                    return True
    return False


def get_user_power_level(user_id: str, power_levels: Pdu | None, create: Pdu | None) -> int | float:
    """The user's power level; `math.inf` for a v12 room creator."""
    if create is not None and create.room_version.privileged_creators:
        if is_creator(user_id, create):
            return math.inf
    if power_levels is None:
        # Only pre-v12 rooms give the creator 100 when there is no power-levels event.
        if create is not None and not create.room_version.privileged_creators:
            if is_creator(user_id, create):
                return IMPLICIT_CREATOR_LEVEL
        return 0
    content = power_levels.content
    users = content.get("users")
    if isinstance(users, dict) and user_id in users:
        level = parse_level(users[user_id], power_levels.room_version)
        if level is not None:
            return level
    return get_named_level("users_default", power_levels)


def get_named_level(name: str, power_levels: Pdu | None) -> int:
    """One of `ban`, `kick`, `invite`, `redact`, `users_default`, `events_default`,
    `state_default`, with the spec's default when absent or unparseable."""
    default = NAMED_LEVEL_DEFAULTS[name]
    if power_levels is None:
        return default
    level = parse_level(power_levels.content.get(name), power_levels.room_version)
    return default if level is None else level


def get_required_level(event_type: str, is_state: bool, power_levels: Pdu | None) -> int:
    """The *required power level* to send an event of this type: `events[type]`, else
    `state_default` or `events_default`."""
    if power_levels is not None:
        events = power_levels.content.get("events")
        if isinstance(events, dict) and event_type in events:
            level = parse_level(events[event_type], power_levels.room_version)
            if level is not None:
                return level
    return get_named_level("state_default" if is_state else "events_default", power_levels)


def get_notification_level(key: str, power_levels: Pdu | None) -> int:
    """The level needed to trigger a notification of this kind (e.g. "room")."""
    if power_levels is not None:
        notifications = power_levels.content.get("notifications")
        if isinstance(notifications, dict) and key in notifications:
            level = parse_level(notifications[key], power_levels.room_version)
            if level is not None:
                return level
    return NOTIFICATION_LEVEL_DEFAULT
