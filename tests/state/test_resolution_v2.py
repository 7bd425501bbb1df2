"""The classic state-resolution scenarios, told again for v2 (rooms 2 and 11) and v2.1
(room 12). Each builds a fork from the common opening (`classic_room`) and checks the
state at the merge.

Spec: https://spec.matrix.org/v1.19/rooms/v2/#state-resolution
"""

from __future__ import annotations

import pytest

from tests.state.resolution_dag import (
    ALICE,
    BOB,
    CHARLIE,
    EVE,
    JR,
    PL,
    TOPIC,
    ZARA,
    classic_room,
    member_key,
)

V2_VERSIONS = ["2", "11", "12"]

pytestmark = pytest.mark.parametrize("version", V2_VERSIONS)


def test_ban_beats_power_levels_sent_by_the_banned_user(version: str) -> None:
    """Alice promotes Bob, then bans him; concurrently Bob re-sends power levels.
    Alice outranks Bob, so her ban is applied first and Bob's event no longer passes."""
    dag = classic_room(version)
    dag.power_levels("PA", ALICE, {BOB: 50}, ["START"])
    dag.member("MA", ALICE, "join", ["PA"])
    dag.member("MB", BOB, "ban", ["MA"], sender=ALICE)
    dag.power_levels("PB", BOB, {BOB: 50}, ["PA"])

    state = dag.resolve("MB", "PB")

    assert state[PL] == dag.id("PA")
    assert state[member_key(BOB)] == dag.id("MB")
    assert state[member_key(ALICE)] == dag.id("MA")


def test_join_rule_evasion(version: str) -> None:
    """Eve joins while Alice concurrently makes the room private: the join rule is a
    power event and is applied first, so Eve's join fails on the merged state."""
    dag = classic_room(version)
    dag.add("JR", "m.room.join_rules", ALICE, {"join_rule": "invite"}, "", ["START"])
    dag.member("ME", EVE, "join", ["START"])

    state = dag.resolve("JR", "ME")

    assert state[JR] == dag.id("JR")
    assert member_key(EVE) not in state


def test_offtopic_power_levels(version: str) -> None:
    """A linear power-levels history A → B → C merged with A alone resolves to C: the
    auth difference brings B in, and replaying A, B, C in order keeps C valid."""
    dag = classic_room(version)
    dag.power_levels("PA", ALICE, {BOB: 50}, ["START"])
    dag.power_levels("PB", BOB, {BOB: 50, CHARLIE: 50}, ["PA"])
    dag.power_levels("PC", CHARLIE, {BOB: 50, CHARLIE: 0}, ["PB"])

    state = dag.resolve("PC", "PA")

    assert state[PL] == dag.id("PC")


def test_topic_basic(version: str) -> None:
    """Alice demotes Bob while Bob re-sends power levels. Alice's levels win; of the
    two topics, the one built on the newer power levels is applied last."""
    dag = classic_room(version)
    dag.topic("T1", ALICE, ["START"])
    dag.power_levels("PA1", ALICE, {BOB: 50}, ["T1"])
    dag.topic("T2", ALICE, ["PA1"])
    dag.power_levels("PA2", ALICE, {BOB: 0}, ["T2"])
    dag.power_levels("PB", BOB, {BOB: 50}, ["PA1"])

    state = dag.resolve("PA2", "PB")

    assert state[PL] == dag.id("PA2")
    assert state[TOPIC] == dag.id("T2")


def test_topic_reset(version: str) -> None:
    """Bob changes the topic and is then banned; merged with a branch that still has
    the first topic, Bob's topic fails (he is banned) and the old topic stays."""
    dag = classic_room(version)
    dag.topic("T1", ALICE, ["START"])
    dag.power_levels("PA", ALICE, {BOB: 50}, ["T1"])
    dag.topic("T2", BOB, ["PA"])
    dag.member("MB", BOB, "ban", ["T2"], sender=ALICE)

    state = dag.resolve("MB", "T1")

    assert state[TOPIC] == dag.id("T1")
    assert state[member_key(BOB)] == dag.id("MB")
    assert state[PL] == dag.id("PA")


def test_topic_after_a_message_merge(version: str) -> None:
    """The basic topic fork, then a message merging both sides and a fresh topic from
    Alice: her latest topic and her power levels are the state."""
    dag = classic_room(version)
    dag.topic("T1", ALICE, ["START"])
    dag.power_levels("PA1", ALICE, {BOB: 50}, ["T1"])
    dag.topic("T2", ALICE, ["PA1"])
    dag.power_levels("PA2", ALICE, {BOB: 0}, ["T2"])
    dag.power_levels("PB", BOB, {BOB: 50}, ["PA1"])
    dag.topic("T3", BOB, ["PB"])
    dag.add("MZ1", "m.room.message", ZARA, {"body": "hi"}, None, ["PA2", "T3"])
    dag.topic("T4", ALICE, ["MZ1"])

    state = dag.resolve("T4", "MZ1")

    assert state[TOPIC] == dag.id("T4")
    assert state[PL] == dag.id("PA2")


def test_mainline_sort(version: str) -> None:
    """Alice raises the level needed to change power levels, so Bob's concurrent power
    levels fail. Bob's topic sits earlier on the resolved mainline than Alice's T3, so
    T3 is applied last and wins."""
    dag = classic_room(version)
    dag.topic("T1", ALICE, ["START"])
    dag.power_levels("PA1", ALICE, {BOB: 50}, ["T1"])
    dag.topic("T2", ALICE, ["PA1"])
    dag.power_levels(
        "PA2", ALICE, {BOB: 50}, ["T2"], content={"events": {"m.room.power_levels": 100}}
    )
    dag.topic("T3", ALICE, ["PA2"])
    dag.power_levels("PB", BOB, {BOB: 50}, ["PA1"])
    dag.topic("T4", BOB, ["PB"])

    state = dag.resolve("T3", "T4")

    assert state[PL] == dag.id("PA2")
    assert state[TOPIC] == dag.id("T3")


def test_concurrent_joins_are_both_kept(version: str) -> None:
    """Two users join the public room on different branches: no power event is in
    conflict and both joins pass, so both are in the merged state."""
    dag = classic_room(version)
    dag.member("JE", EVE, "join", ["START"])
    dag.member("JX", "@xavier:x.test", "join", ["START"])

    state = dag.resolve("JE", "JX")

    assert state[member_key(EVE)] == dag.id("JE")
    assert state[member_key("@xavier:x.test")] == dag.id("JX")


def test_adding_a_join_to_an_existing_conflicted_room(version: str) -> None:
    """A room with conflicting topics gets a join whose prev events are both branch
    heads; resolving the join's state against one old branch keeps the join and the
    topic the merge chose."""
    dag = classic_room(version)
    dag.topic("TA", ALICE, ["START"])
    dag.topic("TB", ALICE, ["START"])
    dag.member("JE", EVE, "join", ["TA", "TB"])
    merged_topic = dag.state_after[dag.id("JE")][TOPIC]
    assert merged_topic == dag.id("TB")  # the later of two equal-power topics

    state = dag.resolve("JE", "TA")

    assert state[member_key(EVE)] == dag.id("JE")
    assert state[TOPIC] == merged_topic


def test_unknown_conflicted_events_are_ignored(version: str) -> None:
    """An event we do not have cannot take part: the known side of the conflict wins,
    and unconflicted state passes through untouched."""
    dag = classic_room(version)
    dag.topic("T1", ALICE, ["START"])
    known = dag.state_after[dag.id("T1")]
    other = dict(known)
    other[TOPIC] = dag.id("NOT_HERE")

    state = dag.resolve_maps([known, other])

    assert state == known


def test_resolution_does_not_depend_on_state_set_order(version: str) -> None:
    dag = classic_room(version)
    dag.topic("T1", ALICE, ["START"])
    dag.power_levels("PA", ALICE, {BOB: 50}, ["T1"])
    dag.topic("T2", BOB, ["PA"])
    dag.member("MB", BOB, "ban", ["T2"], sender=ALICE)
    sets = [dag.state_after[dag.id(n)] for n in ("MB", "T1", "T2")]

    assert dag.resolve_maps(sets) == dag.resolve_maps(list(reversed(sets)))


def test_step_1_follows_auth_events_only_within_the_full_conflicted_set(version: str) -> None:
    """Charlie joins twice concurrently (JA, JB), then sends power levels PL2 citing JB;
    Alice's kick of Zara (a power event) cites PL2, which both states share. JB is
    reachable from the kick only through PL2: outside the full conflicted set in v2, so
    JB stays out of X (the network's reading of step 1, docs/differential.md D7) and
    the mainline pass orders JA then JB by timestamp: JB wins. In v2.1 PL2 lies on the
    path kick → JB between conflicted events, so the conflicted subgraph brings PL2 and
    JB into X; JB is applied in the power pass and JA last, on the mainline."""
    dag = classic_room(version)
    dag.power_levels("PA", ALICE, {CHARLIE: 50}, ["START"])
    dag.member("JA", CHARLIE, "join", ["PA"])
    dag.member("JB", CHARLIE, "join", ["PA"])
    dag.power_levels("PL2", CHARLIE, {CHARLIE: 50}, ["JB"], content={"ban": 40})
    dag.member("KICK", ZARA, "leave", ["PL2"], sender=ALICE)
    with_pl2 = {**dag.state_after[dag.id("JA")], PL: dag.id("PL2")}

    state = dag.resolve_maps([with_pl2, dag.state_after[dag.id("KICK")]])

    assert state[PL] == dag.id("PL2")
    assert state[member_key(ZARA)] == dag.id("KICK")
    assert state[member_key(CHARLIE)] == dag.id("JA" if version == "12" else "JB")
