"""Differential tests against Synapse, run as a separate process from its own venv.

The oracle venv is built on first use by scripts/synapse-oracle-venv (cached under
$DEVNET_CACHE or .cache/). When it cannot be built the tests skip locally, but fail when
CI is set: CI must never silently skip the differential suite.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.differential.oracle import SynapseOracle, build_oracle_python


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/differential/" in item.nodeid.replace(os.sep, "/"):
            item.add_marker(pytest.mark.synapse)


@pytest.fixture(scope="session")
def synapse_oracle() -> Iterator[SynapseOracle]:
    try:
        python = os.environ.get("DEVNET_SYNAPSE_ORACLE_PYTHON") or build_oracle_python()
        oracle = SynapseOracle(python)
    except Exception as e:  # noqa: BLE001 - any failure to start the oracle
        msg = f"Synapse oracle unavailable: {e}"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set: the differential suite must run)", pytrace=False)
        pytest.skip(msg)
    try:
        yield oracle
    finally:
        oracle.close()
