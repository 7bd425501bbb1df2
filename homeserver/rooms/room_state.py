"""The state an event is checked against: "the state before the event".

For a local event whose prev_events are all the room's forward extremities that state is
the room's current state, read from `current_state`. Otherwise (more extremities than
an event may cite, or a received event) it is the resolution of the prev events' states,
stored as a snapshot so later reads are cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.stores import RoomStores
from homeserver.state.resolution import resolve_state
from homeserver.storage.database import Connection
from homeserver.storage.state import StateMap, diff_states

StateKey = tuple[str, str]


@attrs.frozen
class StateBefore:
    room_id: str
    snapshot_id: int
    # The snapshot is the room's current state, so `current_state` can answer reads.
    is_current: bool
    prev_event_ids: tuple[str, ...]


async def read_entries(conn: Connection, stores: RoomStores, before: StateBefore,
                       keys: Sequence[StateKey]) -> StateMap:
    if before.is_current:
        return await stores.current_state.get_entries(conn, before.room_id, list(keys))
    return await stores.state.get_entries(conn, before.snapshot_id, list(keys))


async def read_entry(conn: Connection, stores: RoomStores, before: StateBefore,
                     key: StateKey) -> str | None:
    return (await read_entries(conn, stores, before, [key])).get(key)


async def resolve_snapshots(conn: Connection, stores: RoomStores, room_id: str,
                            room_version: RoomVersion, snapshot_ids: Sequence[int]) -> int:
    """One snapshot holding the resolution of several (deduplicated when they agree)."""
    unique = list(dict.fromkeys(snapshot_ids))
    if len(unique) == 1:
        return unique[0]
    maps = [await stores.state.get_state(conn, s) for s in unique]
    events = await _load_auth_closure(conn, stores, maps)
    resolved = resolve_state(room_version, maps, events.get)
    return await stores.state.create_snapshot(conn, room_id, unique[0], diff_states(maps[0], resolved))


async def state_after_events(conn: Connection, stores: RoomStores, room_id: str,
                             room_version: RoomVersion, event_ids: Sequence[str]) -> int | None:
    """The resolved state after a set of events (None when none of them has state)."""
    snapshots = []
    for event_id in event_ids:
        event_state = await stores.state.get_event_state(conn, event_id)
        if event_state is not None:
            snapshots.append(event_state.after)
    if not snapshots:
        return None
    return await resolve_snapshots(conn, stores, room_id, room_version, snapshots)


async def _load_auth_closure(conn: Connection, stores: RoomStores,
                             maps: Sequence[StateMap]) -> dict[str, Pdu]:
    """The state events and their whole auth chains: what state resolution may look at."""
    loaded: dict[str, Pdu] = {}
    missing: set[str] = set()
    wanted = {event_id for m in maps for event_id in m.values()}
    while wanted:
        found = await stores.events.get_pdus(conn, list(wanted))
        loaded.update(found)
        # Events we do not have stay unknown: resolution ignores them.
        missing |= wanted - found.keys()
        wanted = {a for pdu in found.values() for a in pdu.auth_event_ids} - loaded.keys() - missing
    return loaded
