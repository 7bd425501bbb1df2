"""The room-version table: which algorithm each room version uses.

Spec: https://spec.matrix.org/v1.19/rooms/ . Each flag names one behavioural change and
the room version that introduced it, so callers branch on the behaviour, never on the
version string.
"""

from __future__ import annotations

import enum

import attrs


class EventIdFormat(enum.Enum):
    V1 = "v1"  # `$localpart:server`, carried in the PDU (rooms v1, v2)
    V2 = "v2"  # base64 of the reference hash (room v3)
    V3 = "v3"  # URL-safe base64 of the reference hash (rooms v4+)


class StateResAlgorithm(enum.Enum):
    V1 = "v1"
    V2 = "v2"
    V2_1 = "v2.1"  # room v12


@attrs.frozen
class RoomVersion:
    identifier: str
    event_id_format: EventIdFormat
    state_res: StateResAlgorithm
    # Rooms v1–2: m.room.redaction is authorised by comparing the sender's domain with
    # the redacted event ID's domain (possible only with `$local:server` IDs).
    redaction_domain_check: bool
    # Rooms v1–5: the m.room.aliases auth special case, and `aliases` survives redaction.
    special_case_aliases_auth: bool
    # Rooms v6+: integers outside ±(2**53-1) and floats are rejected (strict canonical JSON).
    strict_canonicaljson: bool
    # Rooms v6+: `notifications` power levels are enforced by the power-levels auth rule.
    limit_notifications_power_levels: bool
    # Rooms v7+: `knock` membership and join rule.
    knock_join_rule: bool
    # Rooms v8+: `restricted` join rule; `allow` survives redaction of m.room.join_rules.
    restricted_join_rule: bool
    # Rooms v9+: `join_authorised_via_users_server` survives redaction of m.room.member.
    restricted_join_rule_fix: bool
    # Rooms v10+: `knock_restricted` join rule.
    knock_restricted_join_rule: bool
    # Rooms v10+: power-level values must be integers (not strings).
    enforce_int_power_levels: bool
    # Rooms v11+: the room creator is the create event's sender (`creator` dropped), the
    # updated redaction algorithm, and `redacts` lives in the content of m.room.redaction.
    implicit_room_creator: bool
    updated_redaction_rules: bool
    redacts_in_content: bool
    # Rooms v12 ("hydra"): the room ID is `!` + the create event's reference hash; the
    # create event is not listed in auth_events; creators (sender + additional_creators)
    # have infinite power level.
    room_id_from_create_event: bool
    create_event_in_auth_events: bool
    privileged_creators: bool
    # Rooms v1–2: a PDU lists prev/auth events as `[event_id, {hashes}]` pairs and carries
    # its own `event_id`; v3+ list bare IDs and derive the ID from the reference hash.
    @property
    def legacy_event_format(self) -> bool:
        return self.event_id_format is EventIdFormat.V1


def _version(identifier: str, n: int) -> RoomVersion:
    if n <= 2:
        id_format = EventIdFormat.V1
    elif n == 3:
        id_format = EventIdFormat.V2
    else:
        id_format = EventIdFormat.V3
    if n == 1:
        state_res = StateResAlgorithm.V1
    elif n < 12:
        state_res = StateResAlgorithm.V2
    else:
        state_res = StateResAlgorithm.V2_1
    return RoomVersion(
        identifier=identifier,
        event_id_format=id_format,
        state_res=state_res,
        redaction_domain_check=n <= 2,
        special_case_aliases_auth=n <= 5,
        strict_canonicaljson=n >= 6,
        limit_notifications_power_levels=n >= 6,
        knock_join_rule=n >= 7,
        restricted_join_rule=n >= 8,
        restricted_join_rule_fix=n >= 9,
        knock_restricted_join_rule=n >= 10,
        enforce_int_power_levels=n >= 10,
        implicit_room_creator=n >= 11,
        updated_redaction_rules=n >= 11,
        redacts_in_content=n >= 11,
        room_id_from_create_event=n >= 12,
        create_event_in_auth_events=n < 12,
        privileged_creators=n >= 12,
    )


KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {str(n): _version(str(n), n) for n in range(1, 13)}

DEFAULT_ROOM_VERSION = KNOWN_ROOM_VERSIONS["12"]


def get_room_version(identifier: str) -> RoomVersion | None:
    """The version for an identifier, or None when the version is unknown to us."""
    return KNOWN_ROOM_VERSIONS.get(identifier)
