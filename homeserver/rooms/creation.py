"""POST /createRoom: the initial events of a new room, in the order the spec lists.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3createroom .
Everything the request can get wrong is checked before the first event, so a bad request
never leaves a half-made room behind.

DevNet adds one preset, `im.devnet.channel`: a public room where only moderators post
(events_default 50). It is made only of standard events, so stock clients see an
ordinary room whose composer is disabled for ordinary members.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from homeserver.errors import (
    BadJson,
    InvalidParam,
    MatrixError,
    RoomInUse,
    UnsupportedRoomVersion,
)
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, RoomVersion, get_room_version
from homeserver.rooms.content_checks import check_power_levels, check_state_content
from homeserver.rooms.persistence import EventPersister
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Database
from homeserver.types import RoomAlias, UserID

JsonDict = dict[str, Any]
# Returns {"displayname": ..., "avatar_url": ...} (either may be absent) for join events.
ProfileLookup = Callable[[str], Awaitable[JsonDict]]

CHANNEL_PRESET = "im.devnet.channel"


@attrs.frozen
class Preset:
    join_rule: str
    history_visibility: str
    guest_access: str | None
    invite_level: int
    events_default: int
    # trusted_private_chat: invitees get the creator's power.
    invitees_are_admins: bool = False


PRESETS: dict[str, Preset] = {
    # Private rooms let members invite friends (invite 0), like most clients expect.
    "private_chat": Preset("invite", "shared", "can_join", 0, 0),
    "trusted_private_chat": Preset("invite", "shared", "can_join", 0, 0, invitees_are_admins=True),
    "public_chat": Preset("public", "shared", "forbidden", 50, 0),
    CHANNEL_PRESET: Preset("public", "shared", "forbidden", 50, 50),
}


@attrs.frozen
class StateEventSpec:
    type: str
    state_key: str
    content: JsonDict


@attrs.frozen
class CreateRoomRequest:
    preset: str | None = None
    visibility: str = "private"
    room_version: str | None = None
    name: str | None = None
    topic: str | None = None
    room_alias_name: str | None = None
    invite: tuple[str, ...] = ()
    is_direct: bool = False
    creation_content: JsonDict = attrs.field(factory=dict)
    initial_state: tuple[StateEventSpec, ...] = ()
    power_level_content_override: JsonDict | None = None


class RoomCreator:
    def __init__(self, db: Database, stores: RoomStores, persister: EventPersister, *,
                 server_name: str, profile_lookup: ProfileLookup | None = None):
        self._db = db
        self._stores = stores
        self._persister = persister
        self._server_name = server_name
        self._profile_lookup = profile_lookup

    async def create_room(self, creator: str, request: CreateRoomRequest) -> str:
        """POST /_matrix/client/v3/createRoom — returns the new room ID."""
        room_version = resolve_room_version(request.room_version)
        preset = _preset(request)
        invitees = [str(UserID.parse(u)) for u in request.invite]
        alias = await self._check_alias(request.room_alias_name)
        create_content = self._create_content(room_version, creator, request, preset, invitees)
        power_levels = _power_levels(room_version, creator, preset, invitees, request, create_content)
        initial = _initial_state(room_version, request)

        created = await self._persister.create_room(
            room_version=room_version, sender=creator, content=create_content,
            is_public=request.visibility == "public")
        room_id = created.room_id

        async def state(event_type: str, content: JsonDict, state_key: str = "", sender: str = creator) -> None:
            await self._persister.send({"type": event_type, "room_id": room_id, "sender": sender,
                                        "state_key": state_key, "content": content})

        await state("m.room.member", await self._member_content(creator, "join"), creator)
        await state("m.room.power_levels", power_levels)
        if alias is not None:
            async with self._db.transaction() as conn:
                if not await self._stores.aliases.create(conn, alias, room_id, creator, created.pdu.origin_server_ts):
                    raise RoomInUse("Room alias already taken")
            await state("m.room.canonical_alias", {"alias": alias})
        preset_state: dict[str, JsonDict] = {
            "m.room.join_rules": {"join_rule": preset.join_rule},
            "m.room.history_visibility": {"history_visibility": preset.history_visibility},
        }
        if preset.guest_access is not None:
            preset_state["m.room.guest_access"] = {"guest_access": preset.guest_access}
        explicit = {(e.type, e.state_key) for e in initial}
        for event_type, content in preset_state.items():
            if (event_type, "") not in explicit:
                await state(event_type, content)
        for spec in initial:
            await state(spec.type, spec.content, spec.state_key)
        if request.name is not None:
            await state("m.room.name", {"name": request.name})
        if request.topic is not None:
            await state("m.room.topic", {"topic": request.topic, "m.topic": {
                "m.text": [{"mimetype": "text/plain", "body": request.topic}]}})
        for invitee in invitees:
            invite = await self._member_content(invitee, "invite")
            if request.is_direct:
                invite["is_direct"] = True
            await state("m.room.member", invite, invitee)
        return room_id

    def _create_content(self, room_version: RoomVersion, creator: str, request: CreateRoomRequest,
                        preset: Preset, invitees: list[str]) -> JsonDict:
        content = dict(request.creation_content)
        content["room_version"] = room_version.identifier
        if room_version.implicit_room_creator:
            content.pop("creator", None)
        else:
            content["creator"] = creator
        if room_version.privileged_creators:
            extra = content.get("additional_creators", [])
            if not isinstance(extra, list) or not all(isinstance(u, str) for u in extra):
                raise BadJson("additional_creators must be a list of user IDs")
            extra = [str(UserID.parse(u)) for u in extra]
            if preset.invitees_are_admins:
                extra += invitees
            extra = [u for u in dict.fromkeys(extra) if u != creator]
            if extra:
                content["additional_creators"] = extra
            else:
                content.pop("additional_creators", None)
        return content

    async def _check_alias(self, localpart: str | None) -> str | None:
        if localpart is None:
            return None
        if not localpart or ":" in localpart:
            raise InvalidParam("Invalid room_alias_name")
        alias = str(RoomAlias.parse(f"#{localpart}:{self._server_name}"))
        async with self._db.connection() as conn:
            if await self._stores.aliases.get(conn, alias) is not None:
                raise RoomInUse("Room alias already taken")
        return alias

    async def _member_content(self, user_id: str, membership: str) -> JsonDict:
        return await member_content(self._profile_lookup, user_id, membership)


async def member_content(lookup: ProfileLookup | None, user_id: str, membership: str) -> JsonDict:
    """m.room.member content with the user's displayname and avatar, when known."""
    content: JsonDict = {"membership": membership}
    if lookup is None:
        return content
    try:
        profile = await lookup(user_id)
    except MatrixError:
        # No profile (e.g. a remote user): the membership is still valid without one.
        return content
    for key in ("displayname", "avatar_url"):
        if isinstance(profile.get(key), str):
            content[key] = profile[key]
    return content


def resolve_room_version(identifier: str | None) -> RoomVersion:
    if identifier is None:
        return DEFAULT_ROOM_VERSION
    room_version = get_room_version(identifier)
    if room_version is None:
        raise UnsupportedRoomVersion(f"Unknown room version {identifier!r}")
    return room_version


def _preset(request: CreateRoomRequest) -> Preset:
    name = request.preset
    if name is None:
        # Spec: the default preset follows the visibility.
        name = "public_chat" if request.visibility == "public" else "private_chat"
    if name not in PRESETS:
        raise BadJson(f"Unknown preset {name!r}")
    return PRESETS[name]


def _power_levels(room_version: RoomVersion, creator: str, preset: Preset, invitees: list[str],
                  request: CreateRoomRequest, create_content: JsonDict) -> JsonDict:
    creators = {creator, *create_content.get("additional_creators", [])}
    users: dict[str, int] = {}
    if not room_version.privileged_creators:
        # From v12 the creators' power is implicit (infinite) and may not be listed.
        users[creator] = 100
        if preset.invitees_are_admins:
            users.update({u: 100 for u in invitees})
    events = {
        "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
        "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
        "m.room.server_acl": 100, "m.room.encryption": 100,
    }
    if room_version.privileged_creators:
        # Only creators (infinite power) may upgrade a v12 room by default.
        events["m.room.tombstone"] = 150
    content: JsonDict = {
        "users": users, "users_default": 0, "events": events,
        "events_default": preset.events_default, "state_default": 50,
        "ban": 50, "kick": 50, "redact": 50, "invite": preset.invite_level,
        "notifications": {"room": 50},
    }
    for spec in request.initial_state:
        if spec.type == "m.room.power_levels":
            content = dict(spec.content)
    if request.power_level_content_override is not None:
        content.update(request.power_level_content_override)
    check_power_levels(room_version, content, creators)
    return content


def _initial_state(room_version: RoomVersion, request: CreateRoomRequest) -> list[StateEventSpec]:
    """initial_state without power levels (merged into the power levels event instead)."""
    kept = []
    for spec in request.initial_state:
        if spec.type in ("m.room.create", "m.room.member"):
            raise BadJson(f"initial_state may not contain {spec.type}")
        if spec.type == "m.room.power_levels":
            continue
        check_state_content(room_version, spec.type, spec.content)
        kept.append(spec)
    return kept
