"""One room as the space hierarchy sees it: its summary, whether the requester may see
it, and its valid `m.space.child` links in the spec's order.

Spec: https://spec.matrix.org/v1.19/client-server-api/#mspacechild and
#ordering-of-children-within-a-space .
"""

from __future__ import annotations

from typing import Any

import attrs

from homeserver.events.pdu import Pdu
from homeserver.events.redaction import redact
from homeserver.rooms.directory import directory_entry
from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Connection

JsonDict = dict[str, Any]
SPACE_TYPE = "m.space"
CHILD_TYPE = "m.space.child"
# The state a summary is made of (all with an empty state key).
SUMMARY_TYPES = (
    "m.room.create", "m.room.name", "m.room.topic", "m.room.canonical_alias", "m.room.avatar",
    "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.encryption",
)
# Join rules under which anyone may join or ask to (spec: GET /hierarchy `rooms`).
OPEN_JOIN_RULES = ("public", "knock", "knock_restricted")
RESTRICTED_JOIN_RULES = ("restricted", "knock_restricted")
MAX_ORDER_LENGTH = 50


@attrs.frozen
class SpaceChild:
    room_id: str
    suggested: bool
    sort_key: tuple[int, str, int, str]
    # The stripped state event with origin_server_ts, as `children_state` lists it.
    stripped: JsonDict


@attrs.frozen
class RoomSummary:
    room_id: str
    room_version: str
    state: dict[str, JsonDict]  # event type -> content, redactions applied
    membership: str | None
    children: tuple[SpaceChild, ...]  # empty unless the room is a space

    @property
    def join_rule(self) -> str | None:
        rule = self.state.get("m.room.join_rules", {}).get("join_rule")
        return rule if isinstance(rule, str) else None

    def allowed_room_ids(self) -> list[str]:
        """Rooms whose members may join, for restricted join rules."""
        if self.join_rule not in RESTRICTED_JOIN_RULES:
            return []
        allow = self.state.get("m.room.join_rules", {}).get("allow")
        if not isinstance(allow, list):
            return []
        return [a["room_id"] for a in allow if isinstance(a, dict) and a.get("type") == "m.room_membership"
                and isinstance(a.get("room_id"), str) and a["room_id"].startswith("!")]

    def to_json(self, num_joined: int, children: list[SpaceChild]) -> JsonDict:
        """A SpaceHierarchyRoomsChunk."""
        entry = directory_entry(self.room_id, self.state, num_joined)
        entry["room_version"] = self.room_version
        if self.state.get("m.room.encryption", {}).get("algorithm") == "m.megolm.v1.aes-sha2":
            entry["encryption"] = "m.megolm.v1.aes-sha2"
        allowed = self.allowed_room_ids()
        if allowed:
            entry["allowed_room_ids"] = allowed
        entry["children_state"] = [c.stripped for c in children]
        return entry


def _valid_order(order: object) -> str | None:
    if (isinstance(order, str) and 0 < len(order) <= MAX_ORDER_LENGTH
            and all(0x20 <= ord(ch) <= 0x7E for ch in order)):
        return order
    return None


def space_child(pdu: Pdu, content: JsonDict) -> SpaceChild | None:
    """The link an m.space.child event makes, or None when it makes none: a child without
    a non-empty `via` list is not part of the space (how clients remove children)."""
    room_id = pdu.state_key
    via = content.get("via")
    if not room_id or not room_id.startswith("!") or not isinstance(via, list) or not via \
            or not all(isinstance(v, str) for v in via):
        return None
    order = _valid_order(content.get("order"))
    # Children with a valid order come first, by order; then by the event's age; the
    # room ID breaks ties, so every server shows the same order.
    sort_key = (0 if order is not None else 1, order or "", pdu.origin_server_ts, room_id)
    stripped = {"type": CHILD_TYPE, "state_key": room_id, "content": content,
                "sender": pdu.sender, "origin_server_ts": pdu.origin_server_ts}
    return SpaceChild(room_id, content.get("suggested") is True, sort_key, stripped)


class SpaceSummaries:
    def __init__(self, stores: RoomStores, loader: ClientEventLoader):
        self._stores = stores
        self._loader = loader

    async def summary(self, conn: Connection, room_id: str, user_id: str) -> RoomSummary | None:
        """The room's summary, or None if this server has no state for it."""
        room = await self._stores.rooms.get(conn, room_id)
        if room is None or room.current_snapshot_id is None:
            return None
        entries = await self._stores.current_state.get_entries(
            conn, room_id, [(t, "") for t in SUMMARY_TYPES])
        contents = await self._contents(conn, list(entries.values()))
        state = {t: contents[e][1] for (t, _), e in entries.items() if e in contents}
        membership = await self._stores.memberships.get(conn, room_id, user_id)
        children: tuple[SpaceChild, ...] = ()
        if state.get("m.room.create", {}).get("type") == SPACE_TYPE:
            child_ids = await self._stores.current_state.get_state_of_type(conn, room_id, CHILD_TYPE)
            found = [space_child(pdu, content)
                     for pdu, content in (await self._contents(conn, list(child_ids.values()))).values()]
            children = tuple(sorted((c for c in found if c is not None), key=lambda c: c.sort_key))
        return RoomSummary(room_id, room.room_version, state,
                           None if membership is None else membership.membership, children)

    async def may_see(self, conn: Connection, summary: RoomSummary, user_id: str) -> bool:
        """Whether the requester may see the room in a hierarchy: joined or invited, able
        to join or knock, or the room is world-readable (spec: GET /hierarchy `rooms`)."""
        if summary.membership == "ban":
            return False
        if summary.membership in ("join", "invite"):
            return True
        if summary.join_rule in OPEN_JOIN_RULES:
            return True
        visibility = summary.state.get("m.room.history_visibility", {}).get("history_visibility")
        if visibility == "world_readable":
            return True
        for allowed in summary.allowed_room_ids():
            membership = await self._stores.memberships.get(conn, allowed, user_id)
            if membership is not None and membership.membership == "join":
                return True
        return False

    async def num_joined(self, conn: Connection, room_id: str) -> int:
        return len(await self._stores.memberships.members(conn, room_id, ("join",)))

    async def _contents(self, conn: Connection, event_ids: list[str]) -> dict[str, tuple[Pdu, JsonDict]]:
        """event_id -> (pdu, content with any applicable redaction applied)."""
        if not event_ids:
            return {}
        pdus = [s.pdu for s in (await self._stores.events.get_many(conn, event_ids)).values()]
        redacted = await self._loader.applied_redactions(conn, pdus)
        found: dict[str, tuple[Pdu, JsonDict]] = {}
        for pdu in pdus:
            source = redact(pdu.get_json(), pdu.room_version) if pdu.event_id in redacted else pdu.get_json()
            content = source.get("content")
            found[pdu.event_id] = (pdu, content if isinstance(content, dict) else {})
        return found
