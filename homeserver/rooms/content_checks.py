"""Shape checks on state content a client sends, so malformed content is a 400 M_BAD_JSON
instead of an auth failure (403) or, worse, an event other servers reject.

Spec: https://spec.matrix.org/v1.19/client-server-api/#mroompower_levels and the room
version's power-level integer rule (v10+).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from homeserver.errors import BadJson
from homeserver.events.room_versions import RoomVersion
from homeserver.state.auth_rules_power import NAMED_LEVELS
from homeserver.state.power_levels import is_valid_user_id, parse_level

MEMBERSHIPS = ("join", "invite", "leave", "ban", "knock")


def check_power_levels(room_version: RoomVersion, content: dict[str, Any],
                       creators: Iterable[str] = ()) -> None:
    for name in NAMED_LEVELS:
        if name in content and parse_level(content[name], room_version) is None:
            raise BadJson(f"power levels: '{name}' must be an integer")
    for name in ("events", "notifications"):
        if name not in content:
            continue
        value = content[name]
        if not isinstance(value, dict) or any(parse_level(v, room_version) is None for v in value.values()):
            raise BadJson(f"power levels: '{name}' must map names to integers")
    users = content.get("users", {})
    if not isinstance(users, dict):
        raise BadJson("power levels: 'users' must be an object")
    for user_id, level in users.items():
        if not is_valid_user_id(user_id) or parse_level(level, room_version) is None:
            raise BadJson(f"power levels: bad 'users' entry for {user_id!r}")
    if room_version.privileged_creators:
        listed = sorted(set(creators) & set(users))
        if listed:
            raise BadJson(f"power levels: room creators may not be listed in 'users': {listed}")


def check_state_content(room_version: RoomVersion, event_type: str, content: dict[str, Any],
                        creators: Iterable[str] = ()) -> None:
    """Reject content of well-known state types that no server would accept."""
    if event_type == "m.room.power_levels":
        check_power_levels(room_version, content, creators)
    elif event_type == "m.room.member":
        if content.get("membership") not in MEMBERSHIPS:
            raise BadJson("m.room.member needs a valid 'membership'")
    elif event_type == "m.room.join_rules":
        if not isinstance(content.get("join_rule"), str):
            raise BadJson("m.room.join_rules needs a string 'join_rule'")
    elif event_type == "m.room.history_visibility":
        if content.get("history_visibility") not in ("invited", "joined", "shared", "world_readable"):
            raise BadJson("m.room.history_visibility needs a valid 'history_visibility'")
