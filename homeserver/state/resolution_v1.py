"""State resolution v1 (room version 1).

Spec: https://spec.matrix.org/v1.19/rooms/v1/#state-resolution . Known to reset state
in some forks; kept only so that version-1 rooms resolve as other servers resolve them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion
from homeserver.state.auth_graph import AuthGraph
from homeserver.state.iterative_auth import RoomContext, StateMap

# The event types whose conflicts are resolved first, in this order, because the
# outcome of each feeds the auth checks of the next.
_AUTH_TYPES = ("m.room.power_levels", "m.room.join_rules", "m.room.member")


def separate_v1(
    state_sets: Sequence[Mapping[tuple[str, str], str]],
) -> tuple[StateMap, dict[tuple[str, str], set[str]]]:
    """v1 conflicts are keys with *different* event IDs across the sets; a key that
    some sets lack is not a conflict (unlike v2)."""
    ids_by_key: dict[tuple[str, str], set[str]] = {}
    for s in state_sets:
        for key, eid in s.items():
            ids_by_key.setdefault(key, set()).add(eid)
    unconflicted: StateMap = {}
    conflicted: dict[tuple[str, str], set[str]] = {}
    for key, ids in ids_by_key.items():
        if len(ids) == 1:
            unconflicted[key] = next(iter(ids))
        else:
            conflicted[key] = ids
    return unconflicted, conflicted


def _sha1(event_id: str) -> str:
    return hashlib.sha1(event_id.encode("utf-8")).hexdigest()


def _depth_then_sha1(events: list[Pdu]) -> list[Pdu]:
    """Ascending depth, then descending sha1(event_id)."""
    by_hash = sorted(events, key=lambda e: _sha1(e.event_id), reverse=True)
    return sorted(by_hash, key=lambda e: e.depth)


def _resolve_auth_key(ctx: RoomContext, events: list[Pdu], state: StateMap) -> None:
    """Take the earliest event, then later ones while each is allowed on top."""
    ordered = _depth_then_sha1(events)
    key = ordered[0].state_pair()
    state[key] = ordered[0].event_id
    for ev in ordered[1:]:
        if not ctx.is_allowed(ev, state, use_cited=False):
            break
        state[key] = ev.event_id


def _resolve_other_key(ctx: RoomContext, events: list[Pdu], state: StateMap) -> None:
    """The deepest (then lowest sha1) event that is allowed in the state so far.

    The spec does not say what happens when none is allowed; like Synapse we then keep
    the shallowest one so the key does not vanish.
    """
    ordered = list(reversed(_depth_then_sha1(events)))
    for ev in ordered:
        if ctx.is_allowed(ev, state, use_cited=False):
            state[ev.state_pair()] = ev.event_id
            return
    state[ordered[-1].state_pair()] = ordered[-1].event_id


def resolve_v1(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[tuple[str, str], str]],
    graph: AuthGraph,
) -> StateMap:
    """Build R from the unconflicted union, then settle the conflicts type by type."""
    unconflicted, conflicted_ids = separate_v1(state_sets)
    conflicted: dict[tuple[str, str], list[Pdu]] = {}
    for key, ids in conflicted_ids.items():
        # Unknown events cannot be checked, so they take no part.
        events = [ev for eid in ids if (ev := graph.event(eid)) is not None]
        if events:
            conflicted[key] = events
    if not conflicted:
        return unconflicted
    room_id = next(iter(conflicted.values()))[0].room_id
    ctx = RoomContext(graph, room_version, room_id)
    state = dict(unconflicted)
    for auth_type in _AUTH_TYPES:
        for key in sorted(k for k in conflicted if k[0] == auth_type):
            _resolve_auth_key(ctx, conflicted[key], state)
    for key in sorted(k for k in conflicted if k[0] not in _AUTH_TYPES):
        _resolve_other_key(ctx, conflicted[key], state)
    return state
