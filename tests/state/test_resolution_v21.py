"""State resolution v2.1 (room 12, MSC4297): the state resets it fixes, checked against
v2 (room 11) which still resets.

Spec: https://spec.matrix.org/v1.19/rooms/v12/#state-resolution
"""

from __future__ import annotations

from typing import Any

from homeserver.state.auth_graph import AuthGraph, conflicted_subgraph
from tests.state.resolution_dag import (
    ALICE,
    BOB,
    CHARLIE,
    EVE,
    JR,
    PL,
    ZARA,
    Dag,
    member_key,
)


def _bare_room(version: str) -> Dag:
    dag = Dag(version)
    create: dict[str, Any] = {"room_version": version}
    dag.add("CREATE", "m.room.create", ALICE, create, "")
    dag.member("MA", ALICE, "join", ["CREATE"])
    return dag


def _join_rules_fork(
    version: str,
) -> tuple[Dag, dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """Alice opens the room, Bob joins, Alice switches to invite-only and leaves. A
    faulty peer then hands us a state that still has the old public join rule."""
    dag = _bare_room(version)
    dag.power_levels("P", ALICE, {BOB: 100}, ["MA"])
    dag.add("JR1", "m.room.join_rules", ALICE, {"join_rule": "public"}, "", ["P"])
    dag.member("MB", BOB, "join", ["JR1"])
    dag.add("JR2", "m.room.join_rules", ALICE, {"join_rule": "invite"}, "", ["MB"])
    dag.member("LA", ALICE, "leave", ["JR2"])
    correct = dict(dag.state_after[dag.id("LA")])
    wrong = dict(correct)
    wrong[JR] = dag.id("JR1")
    return dag, correct, wrong


def test_v21_keeps_conflicted_join_rules_whose_sender_has_left() -> None:
    """Starting the power pass from an empty state lets both join rules be checked
    against their own auth events (Alice was joined then): the newer one wins."""
    dag, correct, wrong = _join_rules_fork("12")

    state = dag.resolve_maps([correct, wrong])

    assert state[JR] == dag.id("JR2")
    assert state == correct


def test_v2_resets_join_rules_whose_sender_has_left() -> None:
    """The bug v2.1 fixes: v2 checks both join rules against the unconflicted state,
    where Alice has left, so both fail and the room loses its join rule."""
    dag, correct, wrong = _join_rules_fork("11")

    state = dag.resolve_maps([correct, wrong])

    assert JR not in state


def _dodgy_rename_fork(version: str) -> tuple[Dag, list[dict[tuple[str, str], str]]]:
    """Bob (promoted by Alice) promotes Charlie; Eve joins under those power levels,
    then renames herself citing the *oldest* power levels. A state taken after the
    rename can carry those old power levels; Zara's branch has the newest ones."""
    dag = _bare_room(version)
    dag.power_levels("P1", ALICE, {}, ["MA"])
    dag.add("JR", "m.room.join_rules", ALICE, {"join_rule": "public"}, "", ["P1"])
    dag.member("MB", BOB, "join", ["JR"])
    dag.member("MC", CHARLIE, "join", ["MB"])
    dag.power_levels("P2", ALICE, {BOB: 50}, ["MC"])
    dag.power_levels("P3", BOB, {BOB: 50, CHARLIE: 50}, ["P2"])
    dag.member("ME1", EVE, "join", ["P3"])
    old_auth = ["P1", "JR", "ME1"]
    if dag.rv.create_event_in_auth_events:
        old_auth.append("CREATE")
    dag.add(
        "ME2",
        "m.room.member",
        EVE,
        {"membership": "join", "displayname": "eve"},
        EVE,
        ["ME1"],
        auth=old_auth,
    )
    dag.member("MZ", ZARA, "join", ["P3"])
    dodgy = dict(dag.state_after[dag.id("MC")])
    dodgy[member_key(EVE)] = dag.id("ME2")
    sensible = dict(dag.state_after[dag.id("MZ")])
    return dag, [dodgy, sensible]


def test_v21_replays_the_conflicted_subgraph() -> None:
    """P2 and ME1 lie between conflicted events, so v2.1 replays them: P3 stays valid
    and wins, and ME1 (on the newest mainline) is applied after ME2."""
    dag, sets = _dodgy_rename_fork("12")

    state = dag.resolve_maps(sets)

    assert state[PL] == dag.id("P3")
    assert state[member_key(EVE)] == dag.id("ME1")
    assert state[member_key(ZARA)] == dag.id("MZ")


def test_v2_resets_power_levels_in_the_same_fork() -> None:
    """Without the subgraph, v2 sorts P3 against P1 alone and checks it against P1,
    where Bob has no power: the room's power levels reset to P1."""
    dag, sets = _dodgy_rename_fork("11")

    state = dag.resolve_maps(sets)

    assert state[PL] == dag.id("P1")


def test_conflicted_subgraph_is_the_paths_between_conflicted_events() -> None:
    dag, sets = _dodgy_rename_fork("12")
    conflicted = {dag.id(n) for n in ("P1", "P3", "ME2", "MZ")}

    subgraph = conflicted_subgraph(AuthGraph(dag.get), conflicted)

    # P3 → P2 → P1 and ME2 → ME1 → P3 are the obvious paths; Bob's join and the join
    # rule are on paths too (P3 cites Bob's join, which cites P1).
    on_paths = {dag.id(n) for n in ("P2", "ME1", "MB", "JR")}
    assert subgraph == conflicted | on_paths
    assert dag.id("CREATE") not in subgraph
