"""The authorization rules: may this event be accepted given the room state before it?

Spec: https://spec.matrix.org/v1.19/server-server-api/#authorization-rules and each room
version's "Authorisation rules" (https://spec.matrix.org/v1.19/rooms/v1/#authorisation-rules
… https://spec.matrix.org/v1.19/rooms/v12/#authorisation-rules). Rule numbers in error
messages follow room version 12, whose numbering is the most complete. Membership rules
live in `auth_rules_member`, power-levels rules in `auth_rules_power`.

Not covered here, because they need keys or storage: verifying signatures (rule
"events must be signed by the server denoted by the sender") and whether an auth event
was rejected when only a state map is at hand (use `check_auth_events` for the PDU's own
`auth_events` list).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import get_room_version
from homeserver.state.auth_context import AuthContext, AuthError, StateKey, server_of
from homeserver.state.auth_events import auth_types_for_event
from homeserver.state.auth_rules_member import check_member_event
from homeserver.state.auth_rules_power import check_power_levels_event
from homeserver.state.power_levels import get_required_level, is_valid_user_id

__all__ = ["AuthError", "check_auth_events", "check_auth_rules"]

CREATE_KEY: StateKey = ("m.room.create", "")


def check_auth_rules(
    event: Pdu,
    auth_events: Mapping[StateKey, Pdu],
    create_event: Pdu | None = None,
) -> None:
    """Raise AuthError unless the rules allow `event` against `auth_events`.

    `auth_events` maps `(type, state_key)` to the auth state: the event's own auth events
    on receipt, or the entries of a state map chosen with `auth_types_for_event`
    (state resolution, soft-fail). Entries outside that selection are rejected, so do not
    pass a whole room state. From room version 12 the create event is never in
    `auth_events`: pass it as `create_event`; before v12 it is read from `auth_events`.
    """
    event_type = event.type
    if event_type == "m.room.create":
        _check_create(event)
        return
    create = _room_create(event, auth_events, create_event)
    _check_auth_entries(event, auth_events)
    _check_federate(event, create)
    rv = event.room_version
    if rv.special_case_aliases_auth and event_type == "m.room.aliases":
        _check_aliases(event)
        return
    ctx = AuthContext(event, auth_events, create)
    if event_type == "m.room.member":
        check_member_event(ctx)
        return
    sender = event.sender
    if ctx.membership(sender) != "join":
        raise AuthError("6: sender is not joined to the room")
    if event_type == "m.room.third_party_invite":
        if ctx.power_level(sender) < ctx.named_level("invite"):
            raise AuthError("7.1: sender is below the invite level")
        return
    _check_send_level(ctx, event_type, sender)
    if event_type == "m.room.power_levels":
        check_power_levels_event(ctx)
        return
    if rv.redaction_domain_check and event_type == "m.room.redaction":
        _check_redaction_v1(ctx)


def check_auth_events(
    event: Pdu, auth_events: Iterable[Pdu], create_event: Pdu | None = None
) -> dict[StateKey, Pdu]:
    """Rule 3 (rule 2 before v12) on a PDU's own `auth_events` list: no duplicate
    `(type, state_key)`, no rejected entry, nothing outside the selection, same room.

    Returns the list as the mapping `check_auth_rules` takes.
    """
    by_key: dict[StateKey, Pdu] = {}
    for auth_event in auth_events:
        if auth_event.state_key is None:
            raise AuthError(f"3.2: auth event {auth_event.event_id} is not a state event")
        key = auth_event.state_pair()
        if key in by_key:
            raise AuthError(f"3.1: duplicate auth events for {key}")
        if auth_event.rejected_reason is not None:
            raise AuthError(f"3.3: auth event {auth_event.event_id} was rejected")
        by_key[key] = auth_event
    if event.type != "m.room.create":
        _room_create(event, by_key, create_event)
        _check_auth_entries(event, by_key)
    return by_key


def _check_create(event: Pdu) -> None:
    """Rule 1: the m.room.create event."""
    rv = event.room_version
    if event.prev_event_ids:
        raise AuthError("1.1: m.room.create has prev_events")
    if rv.room_id_from_create_event:
        if "room_id" in event.get_json():
            raise AuthError("1.2: m.room.create has a room_id")
    elif server_of(event.room_id or "") != server_of(event.sender):
        raise AuthError("1.2: room_id domain does not match the sender's domain")
    version = event.content.get("room_version", "1")
    if not isinstance(version, str) or get_room_version(version) is None:
        raise AuthError(f"1.3: unknown room_version {version!r}")
    if not rv.implicit_room_creator and "creator" not in event.content:
        raise AuthError("1.4: m.room.create has no creator")
    if rv.privileged_creators and "additional_creators" in event.content:
        extra = event.content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError("1.4: additional_creators is not a list of user IDs")


def _room_create(event: Pdu, auth_events: Mapping[StateKey, Pdu], create_event: Pdu | None) -> Pdu:
    """The room's create event: v12 rule 2 (the room ID names an accepted create event);
    before v12, rule 2.4 (the create event is among the auth events)."""
    if not event.room_version.create_event_in_auth_events:
        if create_event is None or create_event.type != "m.room.create":
            raise AuthError("2: no m.room.create event given for the room")
        if create_event.rejected_reason is not None:
            raise AuthError("2: the room's m.room.create event was rejected")
        if event.room_id != create_event.room_id:
            raise AuthError("2: room_id is not derived from the m.room.create event ID")
        return create_event
    create = auth_events.get(CREATE_KEY)
    if create is None:
        raise AuthError("2.4: no m.room.create event among the auth events")
    return create


def _check_auth_entries(event: Pdu, auth_events: Mapping[StateKey, Pdu]) -> None:
    """Rules 3.2 and 3.5 (2.2 and 2.5 before v12) for the mapping form."""
    # A list of a few pairs: searching it is cheaper than building a set.
    allowed = auth_types_for_event(
        event.room_version, event.type, event.sender, event.state_key, event.content
    )
    room_id = event.room_id
    for key, auth_event in auth_events.items():
        if key not in allowed:
            raise AuthError(f"3.2: auth event {key} is not selected for this event")
        state_key = auth_event.state_key
        if state_key is None or (auth_event.type, state_key) != key:
            raise AuthError(f"3.2: auth event {auth_event.event_id} is not the state for {key}")
        if auth_event.room_id != room_id:
            raise AuthError(f"3.5: auth event {auth_event.event_id} is from another room")


def _check_federate(event: Pdu, create: Pdu) -> None:
    """Rule 4 (3 before v12): `m.federate: false` keeps other servers out."""
    if create.content.get("m.federate", True) is False:
        if server_of(event.sender) != server_of(create.sender):
            raise AuthError("4: room is not federated and the sender is from another server")


def _check_aliases(event: Pdu) -> None:
    """Rooms v1–5 rule 4: m.room.aliases is authorised by the sender's domain alone."""
    if event.state_key is None:
        raise AuthError("v1 4.1: m.room.aliases without state_key")
    if event.state_key != server_of(event.sender):
        raise AuthError("v1 4.2: m.room.aliases state_key is not the sender's domain")


def _check_send_level(ctx: AuthContext, event_type: str, sender: str) -> None:
    """Rules 8 and 9: the event type's required level, and `@` state keys."""
    event = ctx.event
    required = get_required_level(event_type, event.is_state(), ctx.power_levels)
    if required > ctx.power_level(sender):
        raise AuthError(f"8: {event_type} needs power level {required}")
    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != sender:
        raise AuthError("9: state_key starting with @ must be the sender")


def _check_redaction_v1(ctx: AuthContext) -> None:
    """Rooms v1–2 rule 11: a redaction needs the redact level, unless it comes from the
    same server as the redacted event (compared by event ID domain)."""
    event = ctx.event
    if ctx.power_level(event.sender) >= ctx.named_level("redact"):
        return
    redacts = event.redacts
    if redacts is not None and server_of(redacts) == server_of(event.event_id):
        return
    raise AuthError("v1 11: redaction needs the redact level or the same origin server")
