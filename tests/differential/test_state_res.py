"""State resolution agrees with Synapse on random forked room histories.

Histories fork often (concurrent power-level changes, bans, joins, join-rule changes)
and merge often: every merge resolves its parents' states with our algorithm and
Synapse's, and the final leaves are resolved together. Auth of every event is compared
on the way. Spec: https://spec.matrix.org/v1.19/rooms/v2/#state-resolution (v1: rooms/v1,
v2.1: rooms/v12).
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
@differential_settings(35)
@given(data=st.data())
def test_state_resolution_matches_synapse(
    synapse_oracle: SynapseOracle, room_version: str, data: st.DataObject
) -> None:
    script = data.draw(scripts([room_version], max_actions=60, merge_probability=0.35))
    sim = RoomSim(script.room_version, synapse_oracle)
    play(sim, script)
