"""The side-by-side benchmark harness (bench/, scripts/bench) runs end to end.

DevNet only, on SQLite, with tiny counts (`--scale 0.01`): a real server process driven
through bench/client.py by every workload. No timing is asserted, only that each
workload ran and produced its numbers. Synapse is left out so CI stays fast (building
its venv takes minutes and one tiny run of it another ~40 s); its side of the harness is
covered by the config test below, which needs only the Synapse oracle venv that
tests/differential/ already uses.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import yaml

from bench import run
from bench.servers import Synapse


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_harness_runs_every_workload_against_devnet(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    code = run.main(["--scale", "0.01", "--db", "sqlite", "--servers", "devnet",
                     "--out", str(out), "--workdir", str(tmp_path / "work"),
                     "--port", str(_free_port())])
    report = json.loads(out.read_text())
    metrics = report["results"]["sqlite"]["devnet"]
    assert code == 0, metrics.get("errors")
    for key in ("w1_send_throughput_msg_s", "w2_delivery_p99_ms", "w3_idle_p50_ms",
                "w4_fanout_p99_ms", "w5_cold_ms", "w5_warm_ms", "w6_join_p50_ms",
                "w6_fanout_p99_ms", "w6_state_rows_per_join", "w7_rss_idle_mb", "w7_rss_peak_mb",
                "w8_ws_p50_ms"):
        assert isinstance(metrics.get(key), int | float), key
    assert metrics["w2_lost"] == 0
    assert metrics["w4_missing"] == 0
    assert metrics["w5_rooms"] == metrics["counts"]["sync_rooms"]
    assert metrics["rate_limited_requests"] == 0
    assert "| 1 send throughput |" in report["tables"]["sqlite"]
    probe = report["meta"]["machine_probe"]["sqlite"]
    for key in ("python_loop_ms", "wake_rt_ms", "warm_rt_ms"):
        assert probe[key] > 0, key
    # Each server's metrics carry the probe taken right before it ran, shown in the table.
    assert metrics["machine_probe"] == probe
    assert "| machine before the server: Python loop |" in report["tables"]["sqlite"].replace("|   ", "| ")
    # PostgreSQL is probed where the DSN answers, else the probe says why not.
    assert ("pg_wake_rt_ms" in probe) != ("pg_error" in probe)


@pytest.mark.synapse
def test_synapse_config_opens_registration_and_lifts_every_rate_limit(tmp_path: Path) -> None:
    from tests.differential.oracle import build_oracle_python

    server = Synapse(tmp_path / "synapse", 18999, "sqlite", None, python=build_oracle_python())
    server.prepare()
    cfg = yaml.safe_load((tmp_path / "synapse" / "homeserver.yaml").read_text())
    assert cfg["enable_registration"] and cfg["enable_registration_without_verification"]
    assert cfg["listeners"] == [{"port": 18999, "bind_addresses": ["127.0.0.1"], "type": "http",
                                 "tls": False, "x_forwarded": False,
                                 "resources": [{"names": ["client"], "compress": False}]}]
    assert cfg["bcrypt_rounds"] == 4 and cfg["presence"] == {"enabled": True}
    # Every rc_* option Synapse reads is present and effectively unlimited.
    source = Path(server.python).parent.parent.glob("lib/python*/site-packages/synapse/config/ratelimiting.py")
    text = next(source).read_text()
    # (rc_messages and rc_remote_media_downloads are internal names, not option keys.)
    read = {m.split(".")[0] for m in re.findall(r'"(rc_[a-z_0-9.]+)"', text)} - {
        "rc_messages", "rc_messages_per_second", "rc_message_burst_count", "rc_remote_media_downloads"}
    assert read <= set(cfg), read - set(cfg)
    for key in read - {"rc_federation"}:
        limits = cfg[key].values() if "per_second" not in cfg[key] else [cfg[key]]
        assert all(lim["per_second"] >= 1e6 and lim["burst_count"] >= 1e6 for lim in limits), key
