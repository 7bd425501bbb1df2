"""Auth rules agree with Synapse on random room histories, in every room version.

Each candidate event of a random history (joins, leaves, invites, kicks, bans, knocks,
power-level, join-rule, topic and name changes, redactions, ...) is authorised by us
and by Synapse against its auth events; see room_sim.RoomSim.authorise.
Spec: https://spec.matrix.org/v1.19/rooms/ (each version's "Authorisation rules").
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
@given(script=scripts(ROOM_VERSIONS, max_actions=40, merge_probability=0.0))
def test_auth_rules_match_synapse(synapse_oracle: SynapseOracle, script: Script) -> None:
    sim = RoomSim(script.room_version, synapse_oracle)
    play(sim, script)
