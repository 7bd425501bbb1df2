"""The oracle bridge itself: pinned Synapse, one reply per request, errors as data."""

from __future__ import annotations

import pytest

from tests.differential.oracle import VENV_SCRIPT, OracleError, SynapseOracle


def test_oracle_is_the_pinned_synapse(synapse_oracle: SynapseOracle) -> None:
    pinned = VENV_SCRIPT.read_text().split('SYNAPSE_VERSION="', 1)[1].split('"', 1)[0]
    assert synapse_oracle.version.split()[0] == pinned


def test_bad_requests_are_answered_and_the_bridge_keeps_serving(
    synapse_oracle: SynapseOracle,
) -> None:
    with pytest.raises(OracleError, match="unknown op"):
        synapse_oracle.call("no-such-op")
    with pytest.raises(OracleError, match="unknown room_version"):
        synapse_oracle.call("redact", room_version="99", event={})
    with pytest.raises(OracleError, match="Invalid event JSON"):
        synapse_oracle.call("event_id", room_version="11", event={"type": "x"})
    assert synapse_oracle.call("ping")["synapse_version"] == synapse_oracle.version
