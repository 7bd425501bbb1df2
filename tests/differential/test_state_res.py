"""State resolution agrees with Synapse on random forked room histories.

Histories fork often (concurrent power-level changes, bans, joins, join-rule changes)
and merge often: every merge resolves its parents' states with our algorithm and
Synapse's, and the final leaves are resolved together. Auth of every event is compared
on the way. Spec: https://spec.matrix.org/v1.19/rooms/v2/#state-resolution (v1: rooms/v1,
v2.1: rooms/v12).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.differential.dag_actions import Script, play, scripts
from tests.differential.oracle import SynapseOracle
from tests.differential.room_sim import RoomSim
from tests.differential.strategies import ROOM_VERSIONS


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=scripts(ROOM_VERSIONS, max_actions=40, merge_probability=0.35))
def test_state_resolution_matches_synapse(synapse_oracle: SynapseOracle, script: Script) -> None:
    sim = RoomSim(script.room_version, synapse_oracle)
    play(sim, script)
