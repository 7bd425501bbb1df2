"""The documented Synapse deviations (docs/differential.md), pinned by small examples.

Each deviation test shows our spec answer and Synapse's different one on a minimal
input, so a change on either side is noticed: if Synapse is fixed, or if we decide to
follow it, the corresponding exclusion in deviations.py must go too. D7 and D8 went
that way (we follow Synapse where the spec is ambiguous); their examples stay here as
agreement tests, the smallest inputs on which the two readings part.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.state.resolution import resolve_state
from tests.differential.oracle import SynapseOracle
from tests.differential.room_sim import CREATOR, Node, RoomSim, StateMap

ALICE, BOB, DAN, ERIN = CREATOR, "@bob:b.example", "@dan:c.example", "@erin:b.example"


def _ev(type: str, sender: str, state_key: str | None, content: dict[str, Any], **kw: Any) -> Any:
    return lambda _before: dict(
        type=type, sender=sender, state_key=state_key, content=content, **kw
    )


def _member(sender: str, target: str, membership: str) -> Any:
    return _ev("m.room.member", sender, target, {"membership": membership})


def _chain(sim: RoomSim, parent: Node | None, *makes: Any) -> Node:
    node = parent
    for make in makes:
        added = sim.add([node] if node else [], make)
        assert added is not None, "the example's events must be allowed"
        node = added
    assert node is not None
    return node


def _start(sim: RoomSim, users: dict[str, int]) -> Node:
    v = int(sim.rv.identifier)
    create = {"room_version": sim.rv.identifier, **({"creator": ALICE} if v <= 10 else {})}
    return _chain(
        sim,
        None,
        _ev("m.room.create", ALICE, "", create),
        _member(ALICE, ALICE, "join"),
        _ev("m.room.power_levels", ALICE, "", {"users": users}),
        _ev("m.room.join_rules", ALICE, "", {"join_rule": "public"}),
    )


def _both(sim: RoomSim, oracle: SynapseOracle, sets: list[StateMap]) -> tuple[StateMap, StateMap]:
    ours = resolve_state(sim.rv, sets, sim.events.get)
    theirs = oracle.call(
        "resolve",
        room_version=sim.rv.identifier,
        state_sets=[[[t, k, e] for (t, k), e in s.items()] for s in sets],
        events=[e.get_json() for e in sim.events.values()],
    )
    return ours, {(t, k): e for t, k, e in theirs}


def test_d7_power_event_auth_chain_through_unconflicted_event(
    synapse_oracle: SynapseOracle,
) -> None:
    """Dan joins twice concurrently (JA, then JB), then sends power levels PL2 citing JB.
    Alice's kick of Erin (a power event) cites PL2. JB is reachable from the kick only
    through PL2, which is unconflicted: it stays out of step 1's set X (the network's
    reading, D7), so the mainline pass orders JA and JB by timestamp and JB wins. (Had
    X taken JB in, the mainline pass would have applied JA last.)"""
    sim = RoomSim("10", synapse_oracle)
    base = _chain(
        sim,
        _start(sim, {ALICE: 100, DAN: 50}),
        _member(DAN, DAN, "join"),
        _member(ERIN, ERIN, "join"),
    )
    ja = _chain(sim, base, _member(DAN, DAN, "join"))
    jb = _chain(sim, base, _member(DAN, DAN, "join"))
    pl2 = _chain(
        sim, jb, _ev("m.room.power_levels", DAN, "", {"users": {ALICE: 100, DAN: 50}, "ban": 40})
    )
    kick = _chain(sim, pl2, _member(ALICE, ERIN, "leave"))
    s1 = {**ja.state_after, ("m.room.power_levels", ""): pl2.pdu.event_id}
    s2 = kick.state_after
    ours, theirs = _both(sim, synapse_oracle, [s1, s2])
    assert ours[("m.room.member", DAN)] == jb.pdu.event_id
    assert ours == theirs


def test_d8_room_v1_member_conflicts_read_each_other(synapse_oracle: SynapseOracle) -> None:
    """Room v1: Alice's membership is conflicted (two joins) and so is Bob's (his join
    against Alice's kick). Every member key is checked against R as it stood before the
    member pass (the network's reading, D8), where Alice is absent, so her kick is not
    allowed and Bob's join stays. (Resolving Alice first and updating R as we go would
    have allowed the kick.)"""
    sim = RoomSim("1", synapse_oracle)
    base = _chain(sim, _start(sim, {ALICE: 100}), _member(BOB, BOB, "join"))
    rejoin = _chain(sim, base, _member(ALICE, ALICE, "join"))
    other = _chain(sim, base, _member(ALICE, ALICE, "join"), _member(ALICE, BOB, "leave"))
    ours, theirs = _both(sim, synapse_oracle, [rejoin.state_after, other.state_after])
    assert ours[("m.room.member", BOB)] == base.pdu.event_id  # Bob's join
    assert ours == theirs


def test_d4_unfederated_room_member_event_for_remote_target(synapse_oracle: SynapseOracle) -> None:
    """m.federate false: a local user invites a remote one. The spec checks only the
    sender's server; Synapse also rejects a remote target."""
    sim = RoomSim("11", synapse_oracle)
    create = {"room_version": "11", "m.federate": False}
    node = _chain(
        sim,
        None,
        _ev("m.room.create", ALICE, "", create),
        _member(ALICE, ALICE, "join"),
    )
    assert sim.add([node], _member(ALICE, BOB, "invite")) is None
    assert sim.deviations["D4"] == 1
    assert KNOWN_ROOM_VERSIONS["11"].implicit_room_creator
