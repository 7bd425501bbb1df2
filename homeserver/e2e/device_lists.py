"""Device-list tracking: who must re-download whose device keys.

Spec: https://spec.matrix.org/v1.19/client-server-api/#tracking-the-device-list-for-a-user
A client tracks the devices of every user it shares a room with. It must hear that a
user's device list changed when the user uploads or changes keys, adds or deletes a
device, or changes cross-signing keys; when it newly shares a room with someone (it has
never downloaded their keys); and that it no longer shares any room with someone (`left`:
it may stop tracking them). Both kinds of change are rows on the stream "device_lists",
so one position range answers /sync and /keys/changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from homeserver.e2e.signed_json import StreamNotifier
from homeserver.events.pdu import Pdu
from homeserver.storage.database import Connection, Database
from homeserver.storage.device_lists import DeviceListStore, RoomChange
from homeserver.storage.streams import current_position, next_position

DEVICE_LISTS = "device_lists"


class DeviceLists:
    def __init__(self, db: Database, store: DeviceListStore, notifier: StreamNotifier):
        self._db = db
        self._store = store
        self._notifier = notifier

    async def mark_changed(self, conn: Connection, user_ids: Iterable[str]) -> int:
        """Record, in the caller's transaction, that these users' devices changed; returns
        the position to pass to `notify_changed` after the commit."""
        position = await next_position(conn, DEVICE_LISTS)
        await self._store.add_changes(conn, position, sorted(set(user_ids)))
        return position

    async def notify_changed(self, user_ids: Iterable[str], position: int) -> None:
        """Wake the syncs of the users and of everyone in their rooms (after commit)."""
        users = set(user_ids)
        rooms: set[str] = set()
        async with self._db.connection() as conn:
            for user_id in users:
                rooms |= await self._store.joined_rooms(conn, user_id)
        self._notifier.notify(DEVICE_LISTS, position, users=users, rooms=rooms)

    async def devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """After-commit hook of device deletion: the devices' keys went with them (foreign
        key cascade); the user's contacts must hear that the device list changed."""
        if not device_ids:
            return
        async with self._db.transaction() as conn:
            position = await self.mark_changed(conn, [user_id])
        await self.notify_changed([user_id], position)

    async def on_member_event(self, conn: Connection, pdu: Pdu, stream_ordering: int) -> None:
        """A derived writer of the rooms persistence path (runs in its transaction):
        records joins and leaves so that sharing a room, or no longer sharing any, shows
        up as a device-list change. Profile changes (join -> join) are not recorded."""
        if pdu.type != "m.room.member" or pdu.state_key is None or pdu.rejected_reason:
            return
        joined = pdu.membership == "join"
        previous = await self._store.previous_membership(conn, pdu.room_id, pdu.state_key,
                                                         stream_ordering)
        if joined == (previous == "join"):
            return
        position = await next_position(conn, DEVICE_LISTS)
        await self._store.add_room_change(conn, position, pdu.room_id, pdu.state_key, joined)

    async def current_position(self) -> int:
        return await current_position(self._db, DEVICE_LISTS)

    async def device_list_changes(self, user_id: str, since_pos: int,
                                  to_pos: int) -> tuple[set[str], set[str]]:
        """(changed, left) between two device_lists positions, for /sync's `device_lists`
        and GET /keys/changes. `changed` holds users who now share a room with `user_id`
        (or the user themself) and whose devices changed or who newly share a room;
        `left` holds users with whom no room is shared any more."""
        if to_pos <= since_pos:
            return set(), set()
        store = self._store
        async with self._db.connection() as conn:
            sharing = await store.users_sharing_a_room(conn, user_id)
            key_changes = await store.changed_users(conn, since_pos, to_pos)
            mine = await store.room_changes_of_user(conn, user_id, since_pos, to_pos)
            my_rooms = await store.joined_rooms(conn, user_id)
            others = await store.room_changes_in_rooms(
                conn, sorted(my_rooms | {c.room_id for c in mine}), since_pos, to_pos)
            members = await store.joined_members(conn, sorted({c.room_id for c in mine}))
        gained, lost = _membership_deltas(user_id, mine, others, members)
        # The user's own join puts them among the room's members; newly sharing a room
        # with oneself is no news (their own key changes still are).
        changed = (key_changes & (sharing | {user_id})) | ((gained - {user_id}) & sharing)
        left = lost - sharing - {user_id}
        return changed, left


def _membership_deltas(user_id: str, mine: list[RoomChange], others: list[RoomChange],
                       members: dict[str, set[str]]) -> tuple[set[str], set[str]]:
    """Users who may have started (gained) or stopped (lost) sharing a room with `user_id`:
    the members of rooms the user joined or left, and users who joined or left the user's
    rooms. The caller settles each against the rooms shared now."""
    gained: set[str] = set()
    lost: set[str] = set()
    for change in mine:
        (gained if change.joined else lost).update(members.get(change.room_id, ()))
    for change in others:
        if change.user_id != user_id:
            (gained if change.joined else lost).add(change.user_id)
    return gained, lost
