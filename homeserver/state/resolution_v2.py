"""State resolution v2 (room versions 2–11) and v2.1 (room version 12).

Spec: https://spec.matrix.org/v1.19/rooms/v2/#state-resolution and
https://spec.matrix.org/v1.19/rooms/v12/#state-resolution (MSC4297). v2.1 differs in
two places, both flags here: the full conflicted set also holds the conflicted state
subgraph, and the first iterative auth pass starts from an empty state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion, StateResAlgorithm
from homeserver.state.auth_graph import AuthGraph, auth_difference, conflicted_subgraph
from homeserver.state.iterative_auth import (
    POWER_LEVELS,
    RoomContext,
    StateMap,
    iterative_auth_checks,
)
from homeserver.state.ordering import mainline_sort, reverse_topological_power_sort


def separate(
    state_sets: Sequence[Mapping[tuple[str, str], str]],
) -> tuple[StateMap, dict[tuple[str, str], set[str]]]:
    """Split into the unconflicted state map and the conflicted events per key.

    A key missing from some state set is conflicted: "present in every Sᵢ with the
    same value" is the spec's condition for being unconflicted.
    """
    unconflicted: StateMap = {}
    conflicted: dict[tuple[str, str], set[str]] = {}
    keys = set().union(*state_sets) if state_sets else set()
    for key in keys:
        ids = {s.get(key) for s in state_sets}
        if len(ids) == 1 and None not in ids:
            unconflicted[key] = next(iter(ids))  # type: ignore[assignment]
        else:
            ids.discard(None)
            conflicted[key] = ids  # type: ignore[assignment]
    return unconflicted, conflicted


def is_power_event(event: Pdu) -> bool:
    """Power events: those that may take an ability away from someone."""
    if event.state_key == "" and event.type in ("m.room.power_levels", "m.room.join_rules"):
        return True
    return (
        event.type == "m.room.member"
        and event.membership in ("leave", "ban")
        and event.sender != event.state_key
    )


def full_conflicted_set(
    graph: AuthGraph,
    algorithm: StateResAlgorithm,
    state_sets: Sequence[Mapping[tuple[str, str], str]],
    unconflicted: StateMap,
    conflicted_ids: set[str],
) -> set[str]:
    """The conflicted state set ∪ auth difference (∪ conflicted subgraph for v2.1),
    limited to events we know."""
    unconflicted_ids = set(unconflicted.values())
    per_set = [{e for e in s.values() if e not in unconflicted_ids} for s in state_sets]
    full = conflicted_ids | auth_difference(graph, unconflicted_ids, per_set)
    if algorithm is StateResAlgorithm.V2_1:
        full |= conflicted_subgraph(graph, conflicted_ids)
    return {e for e in full if graph.event(e) is not None}


def resolve_v2(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[tuple[str, str], str]],
    graph: AuthGraph,
) -> StateMap:
    """The five steps of the v2 algorithm (see the module docstring for v2.1)."""
    unconflicted, conflicted = separate(state_sets)
    conflicted_ids = {e for ids in conflicted.values() for e in ids if graph.event(e) is not None}
    if not conflicted_ids:
        return unconflicted
    algorithm = room_version.state_res
    full = full_conflicted_set(graph, algorithm, state_sets, unconflicted, conflicted_ids)
    ctx = RoomContext(graph, room_version, _room_id(graph, conflicted_ids))

    # Step 1: "For each such power event P, enlarge X by adding the events in the auth
    # chain of P which also belong to the full conflicted set", then sort X by reverse
    # topological power ordering over "the DAG formed by auth events". The spec does
    # not say whether a path through an event *outside* the full conflicted set counts.
    # Every server in a room must pick the same X, and the network (Synapse's
    # `_add_event_and_auth_chain_to_graph`, followed by other implementations) walks
    # the auth DAG restricted to the full conflicted set: a conflicted event reached
    # only through an unconflicted one (say a member event behind an unconflicted
    # power-levels event) stays out of X and is mainline-sorted in step 3. So do we
    # (docs/differential.md, D7). One multi-source walk serves all power events.
    power = {e for e in full if is_power_event(_known(graph, e))}
    selected = graph.closure(power, within=full)
    power_order = reverse_topological_power_sort(graph, selected, ctx.sender_power)

    # Step 2: v2.1 starts empty so that unconflicted state cannot veto conflicted power
    # events that were valid where they were sent (the "state reset" family of bugs).
    base: StateMap = {} if algorithm is StateResAlgorithm.V2_1 else unconflicted
    partial = iterative_auth_checks(ctx, power_order, base)

    # Steps 3–4: everything else, ordered along the resolved power levels' mainline.
    rest = mainline_sort(graph, full - selected, partial.get(POWER_LEVELS))
    resolved = iterative_auth_checks(ctx, rest, partial)

    # Step 5: the unconflicted state always wins.
    resolved.update(unconflicted)
    return resolved


def _known(graph: AuthGraph, event_id: str) -> Pdu:
    ev = graph.event(event_id)
    assert ev is not None, "the full conflicted set holds known events only"
    return ev


def _room_id(graph: AuthGraph, event_ids: set[str]) -> str | None:
    for eid in event_ids:
        ev = graph.event(eid)
        if ev is not None:
            return ev.room_id
    return None
