"""Auth rules agree with Synapse on random room histories, in every room version.

Each candidate event of a random history (joins, leaves, invites, kicks, bans, knocks,
power-level, join-rule, topic and name changes, redactions, ...) is authorised by us
and by Synapse against its auth events; see room_sim.RoomSim.authorise.
Spec: https://spec.matrix.org/v1.19/rooms/ (each version's "Authorisation rules").
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.differential.dag_actions import play, scripts
from tests.differential.oracle import SynapseOracle
from tests.differential.room_sim import RoomSim
from tests.differential.strategies import ROOM_VERSIONS, differential_settings


@pytest.mark.parametrize("room_version", ROOM_VERSIONS)
@differential_settings(25)
@given(data=st.data())
def test_auth_rules_match_synapse(
    synapse_oracle: SynapseOracle, room_version: str, data: st.DataObject
) -> None:
    script = data.draw(scripts([room_version], max_actions=40, merge_probability=0.0))
    sim = RoomSim(script.room_version, synapse_oracle)
    play(sim, script)
