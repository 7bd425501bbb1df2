"""State resolution v1 (room version 1).

Spec: https://spec.matrix.org/v1.19/rooms/v1/#state-resolution . Known to reset state
in some forks; kept only so that version-1 rooms resolve as other servers resolve them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion
from homeserver.state.auth_graph import AuthGraph
from homeserver.state.iterative_auth import RoomContext, StateMap

POWER_LEVELS = ("m.room.power_levels", "")
JOIN_RULES = "m.room.join_rules"
MEMBER = "m.room.member"


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


def _resolve_auth_key(ctx: RoomContext, events: list[Pdu], r: StateMap) -> str:
    """Take the earliest event, then later ones while each is allowed in R updated
    with the previous one."""
    ordered = _depth_then_sha1(events)
    key = ordered[0].state_pair()
    # The key is conflicted, so absent from R: set it in R while checking and remove it
    # afterwards, rather than copying R for each of a pass's (maybe thousands of) keys.
    assert key not in r
    try:
        r[key] = ordered[0].event_id
        for ev in ordered[1:]:
            if not ctx.is_allowed(ev, r, use_cited=False):
                break
            r[key] = ev.event_id
        return r[key]
    finally:
        del r[key]


def _resolve_other_key(ctx: RoomContext, events: list[Pdu], r: StateMap) -> str:
    """The deepest (then lowest sha1) event that is allowed in R.

    The spec does not say what happens when none is allowed; like Synapse we then keep
    the shallowest one so the key does not vanish.
    """
    ordered = list(reversed(_depth_then_sha1(events)))
    for ev in ordered:
        if ctx.is_allowed(ev, r, use_cited=False):
            return ev.event_id
    return ordered[-1].event_id


def _resolve_pass(
    ctx: RoomContext,
    conflicted: Mapping[tuple[str, str], list[Pdu]],
    keys: Iterable[tuple[str, str]],
    r: StateMap,
    resolve_key: Callable[[RoomContext, list[Pdu], StateMap], str],
) -> None:
    """Resolve every key of one pass against the same R, then update R (in place) with
    all of them at once: no key of a pass sees another key's outcome (see resolve_v1)."""
    outcome = {key: resolve_key(ctx, conflicted[key], r) for key in keys}
    r.update(outcome)


def resolve_v1(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[tuple[str, str], str]],
    graph: AuthGraph,
) -> StateMap:
    """Build R from the unconflicted union, then settle the conflicts pass by pass:
    power levels, join rules, members, then everything else.

    The spec says to "repeat the above process" for the member conflicts but not in
    which order the member keys are taken, nor whether R already holds the outcome of
    other member keys; the outcome depends on it when one conflicted member event's
    auth reads another conflicted membership (a kick by a user whose own membership is
    conflicted). Every server in a room must resolve identically, so we follow the
    network's (Synapse's) reading: each key of a pass is checked against R as it stood
    before that pass, and R takes the pass's outcomes together (docs/differential.md,
    D8). Likewise only the `m.room.power_levels` key with an empty state key is
    resolved with the power-levels pass (any other state key is an ordinary event),
    and a key with a single known event takes it without entering R.
    """
    unconflicted, conflicted_ids = separate_v1(state_sets)
    conflicted: dict[tuple[str, str], list[Pdu]] = {}
    lone: StateMap = {}
    for key, ids in conflicted_ids.items():
        # Unknown events cannot be checked, so they take no part; a key left with one
        # known event is settled without a check.
        events = [ev for eid in ids if (ev := graph.event(eid)) is not None]
        if len(events) > 1:
            conflicted[key] = events
        elif events:
            lone[key] = events[0].event_id
    if not conflicted:
        return {**unconflicted, **lone}
    room_id = next(iter(conflicted.values()))[0].room_id
    ctx = RoomContext(graph, room_version, room_id)
    passes = (
        [k for k in conflicted if k == POWER_LEVELS],
        sorted(k for k in conflicted if k[0] == JOIN_RULES),
        sorted(k for k in conflicted if k[0] == MEMBER),
    )
    r = unconflicted
    for keys in passes:
        _resolve_pass(ctx, conflicted, keys, r, _resolve_auth_key)
    done = {k for keys in passes for k in keys}
    others = sorted(k for k in conflicted if k not in done)
    _resolve_pass(ctx, conflicted, others, r, _resolve_other_key)
    r.update(lone)
    return r
