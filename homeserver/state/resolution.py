"""State resolution: the room state before an event with several prev_events.

Spec: https://spec.matrix.org/v1.19/server-server-api/#room-state-resolution and the
per-version algorithms (https://spec.matrix.org/v1.19/rooms/). Pure code: events come
from `get_event`, which returns None for events we do not have; those are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion, StateResAlgorithm
from homeserver.state.auth_graph import AuthGraph, auth_chain
from homeserver.state.resolution_v1 import resolve_v1
from homeserver.state.resolution_v2 import resolve_v2

__all__ = ["auth_chain", "resolve_state"]


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[tuple[str, str], str]],
    get_event: Callable[[str], Pdu | None],
) -> dict[tuple[str, str], str]:
    """Resolve state maps `(type, state_key) -> event_id` into one, with the algorithm
    of the room version."""
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    graph = AuthGraph(get_event)
    if room_version.state_res is StateResAlgorithm.V1:
        return resolve_v1(room_version, state_sets, graph)
    return resolve_v2(room_version, state_sets, graph)
