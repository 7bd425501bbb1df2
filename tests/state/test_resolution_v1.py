"""State resolution v1 (room version 1).

Spec: https://spec.matrix.org/v1.19/rooms/v1/#state-resolution
"""

from __future__ import annotations

from tests.state.resolution_dag import ALICE, BOB, PL, TOPIC, classic_room, member_key


def test_a_key_missing_from_one_state_is_not_a_conflict() -> None:
    dag = classic_room("1")
    dag.topic("T1", ALICE, ["START"])
    dag.member("JE", "@eve:e.test", "join", ["START"])

    state = dag.resolve("T1", "JE")

    assert state[TOPIC] == dag.id("T1")
    assert state[member_key("@eve:e.test")] == dag.id("JE")


def test_the_deepest_allowed_topic_wins() -> None:
    dag = classic_room("1")
    dag.topic("T1", ALICE, ["START"])
    dag.topic("T2", ALICE, ["T1"])
    dag.topic("T3", ALICE, ["START"])

    assert dag.resolve("T2", "T3")[TOPIC] == dag.id("T2")


def test_a_deeper_topic_that_fails_auth_loses() -> None:
    """Alice makes topics need 100; on a longer branch Bob (50) keeps changing the
    topic. The power levels resolve to Alice's, so Bob's deeper topics fail."""
    dag = classic_room("1")
    dag.power_levels("PA", ALICE, {BOB: 50}, ["START"])
    dag.power_levels("PA2", ALICE, {BOB: 50}, ["PA"], content={"events": {"m.room.topic": 100}})
    dag.topic("TA", ALICE, ["PA2"])
    dag.topic("TB1", BOB, ["PA"])
    dag.topic("TB2", BOB, ["TB1"])
    dag.topic("TB3", BOB, ["TB2"])

    state = dag.resolve("TA", "TB3")

    assert state[PL] == dag.id("PA2")
    assert state[TOPIC] == dag.id("TA")


def test_power_levels_from_a_demoted_user_lose() -> None:
    """Alice demotes Bob while Bob re-sends power levels at the same depth: whichever
    of the two sorts first, Alice's demotion ends up in the state."""
    dag = classic_room("1")
    dag.power_levels("PA", ALICE, {BOB: 50}, ["START"])
    dag.power_levels("PA2", ALICE, {BOB: 0}, ["PA"])
    dag.power_levels("PB", BOB, {BOB: 50}, ["PA"])

    assert dag.resolve("PA2", "PB")[PL] == dag.id("PA2")


def test_a_later_allowed_ban_replaces_a_join() -> None:
    dag = classic_room("1")
    dag.power_levels("PA", ALICE, {BOB: 50}, ["START"])
    dag.member("BAN", "@eve:e.test", "ban", ["PA"], sender=ALICE)
    dag.member("JE", "@eve:e.test", "join", ["START"])

    state = dag.resolve("BAN", "JE")

    assert state[member_key("@eve:e.test")] == dag.id("BAN")
