"""Benchmark: our state resolution against Synapse's on the same synthetic room.

Run: `.venv/bin/python bench/state_res_vs_synapse.py [n_state] [n_conflicted]
[room_version] [repeat]` (defaults 10000, 1000, 12, 3).

The room comes from `bench/state_res.make_synthetic_room`. Synapse runs in its own
virtual environment (scripts/synapse-oracle-venv) as a separate process, through
tests/differential/synapse_bridge.py; its time is measured inside that process around
the resolution alone, so neither JSON transfer nor event parsing is counted. On both
sides the events are parsed before the clock starts and the best of `repeat` runs is
reported. Synapse's auth-chain queries are answered by the bridge's in-memory store
(Synapse asks its database for them), which is counted on its side.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.state_res import make_synthetic_room  # noqa: E402
from homeserver.events.pdu import Pdu  # noqa: E402
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS  # noqa: E402
from homeserver.state.resolution import resolve_state  # noqa: E402
from tests.differential.oracle import SynapseOracle, build_oracle_python  # noqa: E402


def main() -> None:
    n_state = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n_conflicted = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    version = sys.argv[3] if len(sys.argv) > 3 else "12"
    repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    rv = KNOWN_ROOM_VERSIONS[version]

    state_sets, events = make_synthetic_room(n_state, n_conflicted, version)
    pdus = {eid: Pdu(ev, rv, event_id=eid) for eid, ev in events.items()}
    conflicted = {
        s[k]
        for k in set(state_sets[0]) | set(state_sets[1])
        for s in state_sets
        if k in s and state_sets[0].get(k) != state_sets[1].get(k)
    }

    ours_times = []
    ours: dict[tuple[str, str], str] = {}
    for _ in range(repeat):
        start = time.perf_counter()
        ours = resolve_state(rv, state_sets, pdus.get)
        ours_times.append(time.perf_counter() - start)

    oracle = SynapseOracle(build_oracle_python(), timeout=1800)
    try:
        reply = oracle.call_raw(
            "resolve",
            room_version=version,
            state_sets=[[[t, k, e] for (t, k), e in s.items()] for s in state_sets],
            events=list(events.values()),
            repeat=repeat,
        )
    finally:
        oracle.close()
    theirs = {(t, k): e for t, k, e in reply["result"]}
    synapse_s = reply["elapsed_s"]
    ours_s = min(ours_times)

    print(
        f"room v{version}: {len(events)} events, state {len(state_sets[0])}/"
        f"{len(state_sets[1])} entries, {len(conflicted)} conflicted events"
    )
    print(f"  DevNet  resolve_state: {ours_s * 1000:9.1f} ms (best of {repeat})")
    print(f"  Synapse {oracle.version:>13}: {synapse_s * 1000:9.1f} ms (best of {repeat})")
    print(f"  ratio Synapse/DevNet: {synapse_s / ours_s:.2f}x")
    if ours != theirs:
        differing = [k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)]
        print(f"  WARNING: results differ on {len(differing)} keys, e.g. {sorted(differing)[:3]}")
        sys.exit(1)
    print("  results identical")


if __name__ == "__main__":
    main()
