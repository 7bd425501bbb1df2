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


def test_member_conflicts_are_checked_against_the_state_before_the_member_pass() -> None:
    """Alice's membership is conflicted (two rejoins), and so is Bob's (his join
    against Alice's kick). Each member key is checked against R as it stood before the
    member pass, where Alice has no membership, so her kick fails whatever the order of
    the keys (the network's reading, docs/differential.md D8)."""
    dag = classic_room("1")
    dag.member("RA", ALICE, "join", ["START"])
    dag.member("RB", ALICE, "join", ["START"])
    dag.member("KICK", BOB, "leave", ["RB"], sender=ALICE)

    state = dag.resolve("RA", "KICK")

    assert state[member_key(BOB)] == dag.id("IMB")
    assert state[member_key(ALICE)] in (dag.id("RA"), dag.id("RB"))
    assert dag.resolve("KICK", "RA") == state


def test_only_the_empty_state_key_power_levels_take_the_power_pass() -> None:
    """Power levels under another state key have no auth meaning: like any other
    event, the deepest allowed one wins. The power pass would have stopped at X1,
    before Bob's (level 0) XB, and never reached Alice's deeper X2."""
    dag = classic_room("1")
    levels = {"users": {ALICE: 100}}
    dag.add("X1", "m.room.power_levels", ALICE, levels, "x", ["START"])
    dag.add("XB", "m.room.power_levels", BOB, levels, "x", ["X1"], valid=False)
    dag.add("X2", "m.room.power_levels", ALICE, levels, "x", ["XB"])
    key = ("m.room.power_levels", "x")
    sets = [{**dag.state_after[dag.id("START")], key: dag.id(n)} for n in ("X1", "XB", "X2")]

    assert dag.resolve_maps(sets)[key] == dag.id("X2")
