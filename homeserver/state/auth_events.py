"""Auth events selection: which state events an event must cite in `auth_events`.

Spec: https://spec.matrix.org/v1.19/server-server-api/#auth-events-selection . The same
list bounds what a receiver accepts (auth rule "entries whose type and state_key don't
match those specified by the auth events selection algorithm ... reject").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events.room_versions import RoomVersion

StateKey = tuple[str, str]

CREATE = "m.room.create"
POWER_LEVELS = "m.room.power_levels"
MEMBER = "m.room.member"
JOIN_RULES = "m.room.join_rules"
THIRD_PARTY_INVITE = "m.room.third_party_invite"


def auth_types_for_event(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> list[StateKey]:
    """The `(type, state_key)` pairs an event's auth events are chosen from, in a stable
    order and without duplicates. Empty for m.room.create."""
    if event_type == CREATE:
        return []
    wanted: list[StateKey] = []
    if room_version.create_event_in_auth_events:
        wanted.append((CREATE, ""))
    wanted.append((POWER_LEVELS, ""))
    wanted.append((MEMBER, sender))
    if event_type == MEMBER and state_key is not None:
        wanted.extend(_member_auth_types(room_version, state_key, content))
    # The sender may also be the target (joins, leaves); keep the first occurrence.
    return list(dict.fromkeys(wanted))


def _member_auth_types(
    room_version: RoomVersion, target: str, content: Mapping[str, Any]
) -> list[StateKey]:
    membership = content.get("membership")
    wanted: list[StateKey] = [(MEMBER, target)]
    if membership in ("join", "invite", "knock"):
        wanted.append((JOIN_RULES, ""))
    if membership == "invite":
        token = _third_party_invite_token(content)
        if token is not None:
            wanted.append((THIRD_PARTY_INVITE, token))
    if membership == "join" and room_version.restricted_join_rule:
        authoriser = content.get("join_authorised_via_users_server")
        if isinstance(authoriser, str):
            wanted.append((MEMBER, authoriser))
    return wanted


def _third_party_invite_token(content: Mapping[str, Any]) -> str | None:
    invite = content.get("third_party_invite")
    if not isinstance(invite, dict):
        return None
    signed = invite.get("signed")
    if not isinstance(signed, dict):
        return None
    token = signed.get("token")
    return token if isinstance(token, str) else None


def select_auth_event_ids(
    room_version: RoomVersion,
    event_fields: Mapping[str, Any],
    state: Mapping[StateKey, str],
) -> list[str]:
    """The event IDs to put in a new event's `auth_events`, picked from a state map.

    `event_fields` holds at least `type` and `sender`, plus `state_key` and `content`
    when present (a PDU's JSON or a builder's dict both fit).
    """
    wanted = auth_types_for_event(
        room_version,
        event_fields["type"],
        event_fields["sender"],
        event_fields.get("state_key"),
        event_fields.get("content", {}),
    )
    ids = [state[key] for key in wanted if key in state]
    # Two keys can point at one event only in a corrupt state map; never cite it twice.
    return list(dict.fromkeys(ids))
