"""Authorization rules for m.room.power_levels events.

Spec: the "If type is `m.room.power_levels`" rule, e.g.
https://spec.matrix.org/v1.19/rooms/v12/#authorisation-rules (rule 10; rule 9 in v6–11,
rule 10 in v1–5). v10 requires integers; v6 adds `notifications`; v12 forbids listing
creators in `users`. Rule numbers in messages follow room version 12.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion
from homeserver.state.auth_context import AuthContext, AuthError
from homeserver.state.power_levels import get_creators, is_valid_user_id, parse_level

NAMED_LEVELS = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)


def check_power_levels_event(ctx: AuthContext) -> None:
    """Allow (return) or reject (raise AuthError) an m.room.power_levels event."""
    content = ctx.event.content
    rv = ctx.room_version
    if rv.enforce_int_power_levels:
        _check_integer_shape(content, rv)
    _check_users_shape(content, rv)
    if rv.privileged_creators:
        users = content.get("users", {})
        listed = sorted(get_creators(ctx.create) & set(users))
        if listed:
            raise AuthError(f"10.4: room creators may not be listed in users: {listed}")
    previous = ctx.power_levels
    if previous is None:
        return  # 10.5: the room's first power levels
    sender_level = ctx.power_level(ctx.event.sender)
    _check_named_changes(previous, ctx.event, sender_level)
    maps = ("events", "notifications") if rv.limit_notifications_power_levels else ("events",)
    for name in maps:
        _check_map_changes(name, previous, ctx.event, sender_level)
    _check_user_changes(previous, ctx.event, sender_level)


def _check_integer_shape(content: dict[str, Any], rv: RoomVersion) -> None:
    """Rules 10.1 and 10.2 (v10+): named levels and events/notifications are integers."""
    for name in NAMED_LEVELS:
        if name in content and parse_level(content[name], rv) is None:
            raise AuthError(f"10.1: {name} is not an integer")
    for name in ("events", "notifications"):
        if name not in content:
            continue
        value = content[name]
        if not isinstance(value, dict) or any(parse_level(v, rv) is None for v in value.values()):
            raise AuthError(f"10.2: {name} is not an object of integers")


def _check_users_shape(content: dict[str, Any], rv: RoomVersion) -> None:
    """Rule 10.3: `users` maps valid user IDs to integers (string integers before v10).

    An absent `users` is accepted: the rule constrains the property's shape, and rooms
    created without one are common.
    """
    if "users" not in content:
        return
    users = content["users"]
    if not isinstance(users, dict):
        raise AuthError("10.3: users is not an object")
    for user_id, level in users.items():
        if not is_valid_user_id(user_id):
            raise AuthError(f"10.3: users key {user_id!r} is not a user ID")
        if parse_level(level, rv) is None:
            raise AuthError(f"10.3: users value for {user_id} is not an integer")


def _levels(source: Any, rv: RoomVersion) -> dict[str, int]:
    """Parsed entries of a level map; unparseable entries (possible before v10) count as
    absent, so they are never compared."""
    if not isinstance(source, dict):
        return {}
    parsed = {key: parse_level(value, rv) for key, value in source.items()}
    return {key: level for key, level in parsed.items() if level is not None}


def _check_named_changes(previous: Pdu, new: Pdu, sender_level: int | float) -> None:
    """Rule 10.6: an added, changed or removed named level must not exceed the sender's,
    before or after the change."""
    old = _levels(
        {k: previous.content[k] for k in NAMED_LEVELS if k in previous.content},
        previous.room_version,
    )
    cur = _levels({k: new.content[k] for k in NAMED_LEVELS if k in new.content}, new.room_version)
    for name in NAMED_LEVELS:
        before, after = old.get(name), cur.get(name)
        if before == after:
            continue
        if before is not None and before > sender_level:
            raise AuthError(f"10.6.1: current {name} is above the sender's level")
        if after is not None and after > sender_level:
            raise AuthError(f"10.6.2: new {name} is above the sender's level")


def _check_map_changes(name: str, previous: Pdu, new: Pdu, sender_level: int | float) -> None:
    """Rules 10.7 and 10.8 for the `events` or `notifications` map."""
    old = _levels(previous.content.get(name), previous.room_version)
    cur = _levels(new.content.get(name), new.room_version)
    for key in sorted(old.keys() | cur.keys()):
        before, after = old.get(key), cur.get(key)
        if before == after:
            continue
        if before is not None and before > sender_level:
            raise AuthError(f"10.7: current {name}[{key!r}] is above the sender's level")
        if after is not None and after > sender_level:
            raise AuthError(f"10.8: new {name}[{key!r}] is above the sender's level")


def _check_user_changes(previous: Pdu, new: Pdu, sender_level: int | float) -> None:
    """Rules 10.9 and 10.10: the sender may not touch users at or above their own level
    (except themselves) nor raise anyone above it."""
    old = _levels(previous.content.get("users"), previous.room_version)
    cur = _levels(new.content.get("users"), new.room_version)
    for user_id in sorted(old.keys() | cur.keys()):
        before, after = old.get(user_id), cur.get(user_id)
        if before == after:
            continue
        if before is not None and user_id != new.sender and before >= sender_level:
            raise AuthError(f"10.9: cannot change {user_id}, whose level is not below the sender's")
        if after is not None and after > sender_level:
            raise AuthError(f"10.10: cannot raise {user_id} above the sender's level")
