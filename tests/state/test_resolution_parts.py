"""The building blocks of state resolution: the auth chain, the auth difference, the
separation into (un)conflicted state, and the two orderings.

Spec: https://spec.matrix.org/v1.19/rooms/v2/#definitions
"""

from __future__ import annotations

from homeserver.state.auth_graph import AuthGraph, auth_difference
from homeserver.state.ordering import Mainline, mainline_sort, reverse_topological_power_sort
from homeserver.state.resolution import auth_chain
from homeserver.state.resolution_v1 import separate_v1
from homeserver.state.resolution_v2 import is_power_event, separate
from tests.state.resolution_dag import ALICE, BOB, CHARLIE, classic_room


def test_auth_chain_excludes_the_starting_event() -> None:
    dag = classic_room("12")
    chain = auth_chain([dag.id("IMB")], dag.get)
    # v12 events never cite the create event, so it is not in the chain either.
    assert chain == {dag.id(n) for n in ("IPOWER", "IJR", "IMA")}


def test_auth_chain_before_v12_reaches_the_create_event() -> None:
    dag = classic_room("11")
    assert auth_chain([dag.id("IMB")], dag.get) == {
        dag.id(n) for n in ("CREATE", "IPOWER", "IJR", "IMA")
    }


def test_auth_chain_skips_unknown_events() -> None:
    dag = classic_room("11")
    assert auth_chain([dag.id("MISSING")], dag.get) == set()


def test_separate_treats_a_missing_key_as_a_conflict_in_v2_only() -> None:
    a = {("t", ""): "$1", ("u", ""): "$2"}
    b = {("t", ""): "$1"}
    assert separate([a, b]) == ({("t", ""): "$1"}, {("u", ""): {"$2"}})
    assert separate_v1([a, b]) == ({("t", ""): "$1", ("u", ""): "$2"}, {})


def test_auth_difference_is_what_only_some_sides_depend_on() -> None:
    dag = classic_room("11")
    dag.power_levels("PA", ALICE, {BOB: 50}, ["START"])
    dag.power_levels("PB", BOB, {BOB: 50, CHARLIE: 50}, ["PA"])
    dag.power_levels("PC", ALICE, {BOB: 50}, ["START"])
    left, right = dag.state_after[dag.id("PB")], dag.state_after[dag.id("PC")]
    unconflicted, _ = separate([left, right])
    per_set = [
        {left[k] for k in left if k not in unconflicted},
        {right[k] for k in right if k not in unconflicted},
    ]

    diff = auth_difference(AuthGraph(dag.get), set(unconflicted.values()), per_set)

    assert diff == {dag.id(n) for n in ("PA", "PB", "PC")}


def test_power_events() -> None:
    dag = classic_room("11")
    kick = dag.member("KICK", CHARLIE, "leave", ["START"], sender=ALICE)
    leave = dag.member("LEAVE", BOB, "leave", ["START"])
    assert is_power_event(dag.events[dag.id("IPOWER")])
    assert is_power_event(dag.events[dag.id("IJR")])
    assert is_power_event(kick)
    assert not is_power_event(leave)
    assert not is_power_event(dag.events[dag.id("IMB")])


def test_reverse_topological_order_puts_auth_events_first_then_power() -> None:
    dag = classic_room("11")
    dag.power_levels("PA", ALICE, {BOB: 50}, ["START"])
    dag.topic("TB", BOB, ["PA"])  # Bob (50) sent earlier than Alice's topic below
    dag.topic("TA", ALICE, ["PA"])
    graph = AuthGraph(dag.get)
    ids = {dag.id(n) for n in ("PA", "TB", "TA")}
    ctx_power = {ALICE: 100, BOB: 50}

    order = reverse_topological_power_sort(graph, ids, lambda ev: ctx_power[ev.sender])

    assert order == [dag.id("PA"), dag.id("TA"), dag.id("TB")]


def test_mainline_positions_and_sort() -> None:
    dag = classic_room("11")
    dag.power_levels("PA", ALICE, {BOB: 50}, ["START"])
    dag.topic("T_OLD", ALICE, ["START"])  # cites IPOWER: further down the mainline
    dag.topic("T_NEW", ALICE, ["PA"])  # cites PA: the tip of the mainline
    dag.power_levels("PX", ALICE, {BOB: 40}, ["START"])  # a side branch off IPOWER
    dag.topic("T_SIDE", ALICE, ["PX"])
    graph = AuthGraph(dag.get)
    mainline = Mainline(graph, dag.id("PA"))

    assert mainline.position(dag.id("T_NEW")) == 0
    assert mainline.position(dag.id("T_OLD")) == 1
    assert mainline.position(dag.id("T_SIDE")) == 1  # via PX → IPOWER
    assert mainline.position(dag.id("CREATE")) == float("inf")
    ordered = mainline_sort(graph, [dag.id(n) for n in ("T_NEW", "T_SIDE", "T_OLD")], dag.id("PA"))
    # Equal positions fall back to the timestamp: T_OLD was sent before T_SIDE.
    assert ordered == [dag.id("T_OLD"), dag.id("T_SIDE"), dag.id("T_NEW")]


def test_mainline_without_power_levels_orders_by_time() -> None:
    dag = classic_room("11")
    dag.topic("T1", ALICE, ["START"])
    dag.topic("T2", ALICE, ["START"])
    ordered = mainline_sort(AuthGraph(dag.get), [dag.id("T2"), dag.id("T1")], None)
    assert ordered == [dag.id("T1"), dag.id("T2")]
