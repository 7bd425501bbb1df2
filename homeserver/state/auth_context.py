"""What the authorization rules read about the room state before an event.

Spec: https://spec.matrix.org/v1.19/server-server-api/#authorization-rules . The rules
modules share this view so each rule reads like the spec text ("the sender's current
membership state", "the invite level").
"""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion
from homeserver.state.power_levels import get_named_level, get_user_power_level

StateKey = tuple[str, str]


class AuthError(Exception):
    """The event is not allowed by the authorization rules; the message names the rule."""


class AuthContext:
    """The event being authorised, the auth state it is checked against, and the create
    event (from the auth state before v12, passed separately from v12)."""

    __slots__ = ("event", "auth_events", "create", "room_version", "power_levels")

    def __init__(self, event: Pdu, auth_events: Mapping[StateKey, Pdu], create: Pdu):
        self.event = event
        self.auth_events = auth_events
        self.create = create
        self.room_version: RoomVersion = event.room_version
        self.power_levels = auth_events.get(("m.room.power_levels", ""))

    def membership(self, user_id: str) -> str | None:
        """The user's current membership, or None when they have no member event."""
        member = self.auth_events.get(("m.room.member", user_id))
        return None if member is None else member.membership

    def power_level(self, user_id: str) -> int | float:
        return get_user_power_level(user_id, self.power_levels, self.create)

    def named_level(self, name: str) -> int:
        """The invite/kick/ban/redact level (or a `*_default`)."""
        return get_named_level(name, self.power_levels)

    def join_rule(self) -> str:
        """The current join rule.

        The spec names no value for a room without m.room.join_rules; like other servers
        we read it as `invite` (only invited or joined users may join), which is also the
        most restrictive reading that lets an invited user in.
        """
        event = self.auth_events.get(("m.room.join_rules", ""))
        if event is None:
            return "invite"
        rule = event.content.get("join_rule")
        return rule if isinstance(rule, str) else "invite"


def server_of(identifier: str) -> str | None:
    """The domain part of a `@user:server`, `$id:server` or `!room:server` identifier."""
    _, sep, domain = identifier.partition(":")
    return domain if sep else None
