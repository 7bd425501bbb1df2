"""Who an event's push rules are evaluated for, and the room facts evaluation needs.

Read once per room per evaluator pass (`RoomAudience.load`), not once per event: the
evaluator reads the room's current state, as it always has (evaluation follows the
commit, so even one event at a time saw the state after it, not at it), so every event of
a pass would read the same rows. Display names come from the members' m.room.member
events through `DisplayNames`, a memo keyed by event ID: an event's JSON never changes
(a redaction is stored beside it), so an entry can never go stale.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import attrs

from homeserver.events.pdu import Pdu
from homeserver.push.conditions import EventContext
from homeserver.rooms.stores import RoomStores
from homeserver.state.power_levels import get_user_power_level
from homeserver.storage.database import Connection

DISPLAY_NAME_MEMO_SIZE = 100_000
AUDIENCE_CACHE_ROOMS = 1_000
_POWER_LEVELS = ("m.room.power_levels", "")
_CREATE = ("m.room.create", "")


class DisplayNames:
    """Member event ID -> the display name it sets (bounded LRU)."""

    def __init__(self, stores: RoomStores, size: int = DISPLAY_NAME_MEMO_SIZE):
        self._stores = stores
        self._size = size
        self._names: OrderedDict[str, str | None] = OrderedDict()

    async def of(self, conn: Connection, member_events: dict[str, str]) -> dict[str, str | None]:
        """user ID -> display name, for `member_events` (user ID -> member event ID)."""
        names = self._names
        missing = [e for e in member_events.values() if e not in names]
        if missing:
            pdus = await self._stores.events.get_pdus(conn, missing)
            for event_id in missing:
                member = pdus.get(event_id)
                name = member.content.get("displayname") if member is not None else None
                names[event_id] = name if isinstance(name, str) else None
        out = {}
        for user_id, event_id in member_events.items():
            out[user_id] = names[event_id]
            names.move_to_end(event_id)
        while len(names) > self._size:
            names.popitem(last=False)
        return out


@attrs.define
class RoomAudience:
    room_id: str
    # Local joined members, each with its m.room.member event.
    local_members: dict[str, str]
    member_count: int
    power_levels: Pdu | None
    create: Pdu | None
    names: dict[str, str | None] | None = None

    @classmethod
    async def load(cls, conn: Connection, stores: RoomStores, room_id: str,
                   suffix: str, cache: AudienceCache | None = None,
                   snapshot_id: int | None = None) -> RoomAudience:
        """The room's audience at its current state. With `cache`, reused while the
        room's current state snapshot is the same one: a snapshot ID names one exact
        state, so an entry for it can never be stale. `snapshot_id`: the room's current
        snapshot if the caller knows it (else it is read)."""
        if cache is not None and snapshot_id is None:
            room = await stores.rooms.get(conn, room_id)
            snapshot_id = room.current_snapshot_id if room is not None else None
        if cache is not None:
            cached = cache.get(room_id, snapshot_id)
            if cached is not None:
                return attrs.evolve(cached, names=None)
        members = await stores.memberships.joined(conn, room_id)
        state = await stores.current_state.get_entries(conn, room_id, [_POWER_LEVELS, _CREATE])
        pdus = await stores.events.get_pdus(conn, list(state.values()))
        audience = cls(room_id, {u: e for u, e in members.items() if u.endswith(suffix)},
                       len(members), pdus.get(state.get(_POWER_LEVELS, "")),
                       pdus.get(state.get(_CREATE, "")))
        if cache is not None and snapshot_id is not None:
            cache.put(room_id, snapshot_id, audience)
        return attrs.evolve(audience, names=None)

    def targets(self, pdu: Pdu, suffix: str) -> list[str]:
        """The local users to evaluate for: joined members but the sender, and the
        invitee of an invite."""
        targets = [u for u in self.local_members if u != pdu.sender]
        if (pdu.type == "m.room.member" and pdu.membership == "invite"
                and pdu.state_key is not None and pdu.state_key.endswith(suffix)
                and pdu.state_key not in targets):
            targets.append(pdu.state_key)
        return targets

    def context(self, pdu: Pdu) -> EventContext:
        levels: Any = self.power_levels.content.get("notifications") if self.power_levels else None
        return EventContext(
            event=pdu.get_json(), member_count=self.member_count,
            sender_power=get_user_power_level(pdu.sender, self.power_levels, self.create),
            notification_levels=levels if isinstance(levels, dict) else {})

    async def display_names(self, conn: Connection, memo: DisplayNames) -> dict[str, str | None]:
        """Local joined members' display names (read on first use)."""
        if self.names is None:
            self.names = await memo.of(conn, self.local_members)
        return self.names


class AudienceCache:
    """room ID -> (current state snapshot ID, its RoomAudience), bounded LRU.

    Spares a busy room the member list read on every evaluator pass; the room row
    (one indexed read) tells whether the snapshot moved."""

    def __init__(self, size: int = AUDIENCE_CACHE_ROOMS):
        self._size = size
        self._entries: OrderedDict[str, tuple[int, RoomAudience]] = OrderedDict()

    def get(self, room_id: str, snapshot_id: int | None) -> RoomAudience | None:
        entry = self._entries.get(room_id)
        if entry is None or snapshot_id is None or entry[0] != snapshot_id:
            return None
        self._entries.move_to_end(room_id)
        return entry[1]

    def put(self, room_id: str, snapshot_id: int, audience: RoomAudience) -> None:
        self._entries[room_id] = (snapshot_id, audience)
        self._entries.move_to_end(room_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
