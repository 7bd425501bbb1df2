"""Side-by-side benchmark: DevNet against Synapse, same workloads, same run.

Usage (normally through ./scripts/bench, which also builds Synapse's venv):

    python -m bench.run [--scale 1.0] [--db sqlite,postgres] [--servers devnet,synapse]
                        [--synapse-python PATH] [--pg-dsn DSN] [--out bench/results/latest.json]
                        [--profile DIR]

For each database kind, each server in turn gets the machine to itself: a fresh config
and database, start, all workloads (bench/workloads.py), stop. Then a table (workload,
DevNet, Synapse, ratio) is printed and everything is written as JSON. The ratio is
"how many times better DevNet is": Synapse/DevNet for times and sizes, DevNet/Synapse for
throughput; above 1 means DevNet is ahead.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.client import new_session
from bench.machine_probe import describe, probe
from bench.servers import REPO, DevNet, Server, Synapse, python_version, recreate_pg_database
from bench.workloads import Bench, Counts

DEFAULT_PG_DSN = "postgresql://devnet:devnet@127.0.0.1/devnet_test"
PY_SPY = REPO / ".cache" / "bench-tools" / "bin" / "py-spy"

# (label, metric key, unit, better) -- better: "lower" or "higher"; None: informative only.
ROWS: list[tuple[str, str, str, str | None]] = [
    ("1 send throughput", "w1_send_throughput_msg_s", "msg/s", "higher"),
    ("1 server CPU per message", "w1_server_cpu_ms_per_msg", "ms", "lower"),
    ("1 client CPU per message (bench process)", "w1_client_cpu_ms_per_msg", "ms", "lower"),
    ("2 delivery under load p50", "w2_delivery_p50_ms", "ms", "lower"),
    ("2 delivery under load p95", "w2_delivery_p95_ms", "ms", "lower"),
    ("2 delivery under load p99", "w2_delivery_p99_ms", "ms", "lower"),
    ("3 idle delivery median", "w3_idle_p50_ms", "ms", "lower"),
    ("4 fan-out p50", "w4_fanout_p50_ms", "ms", "lower"),
    ("4 fan-out p99", "w4_fanout_p99_ms", "ms", "lower"),
    ("4 fan-out all received", "w4_fanout_all_ms", "ms", "lower"),
    ("5 initial sync cold", "w5_cold_ms", "ms", "lower"),
    ("5 initial sync warm", "w5_warm_ms", "ms", "lower"),
    ("6 join p50", "w6_join_p50_ms", "ms", "lower"),
    ("6 join p99", "w6_join_p99_ms", "ms", "lower"),
    ("6 join mean, last window", "w6_join_last_window_mean_ms", "ms", "lower"),
    ("6 fan-out p50", "w6_fanout_p50_ms", "ms", "lower"),
    ("6 fan-out p99", "w6_fanout_p99_ms", "ms", "lower"),
    ("6 rows per join (late)", "w6_rows_per_join", "rows", "lower"),
    ("6 state rows per join (late)", "w6_state_rows_per_join", "rows", "lower"),
    ("6 state rows per join (early)", "w6_per_join_first.state_rows", "rows", "lower"),
    ("6 bytes per join (late)", "w6_bytes_per_join", "B", "lower"),
    ("7 RSS idle", "w7_rss_idle_mb", "MiB", "lower"),
    ("7 RSS idle after restart", "w7_rss_idle_after_restart_mb", "MiB", "lower"),
    ("7 RSS peak", "w7_rss_peak_mb", "MiB", "lower"),
    ("8 WebSocket idle delivery median", "w8_ws_p50_ms", "ms", None),
    ("  register (per user)", "register_per_user_ms", "ms", "lower"),
    # The machine's speed right before each server ran (bench/machine_probe.py): a ratio
    # is comparable only when the two servers ran at the same speed.
    ("  machine before the server: Python loop", "machine_probe.python_loop_ms", "ms", None),
    ("  machine before the server: PostgreSQL SELECT 1 after 50 ms",
     "machine_probe.pg_wake_rt_ms", "ms", None),
    ("  server CPU time, whole run", "server_cpu_s", "s", "lower"),
]


def get(metrics: dict[str, Any], key: str) -> Any:
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def ratio(dev: Any, syn: Any, better: str | None) -> float | None:
    if better is None or not isinstance(dev, int | float) or not isinstance(syn, int | float):
        return None
    if better == "higher":
        return round(dev / syn, 2) if syn else None
    if dev <= 0:
        return None if syn <= 0 else float("inf")
    return round(syn / dev, 2)


def goals(dev: dict[str, Any], syn: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Issue 5's goals, each with the measured value and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(goal: str, value: Any, met: bool | None) -> None:
        out.append({"goal": goal, "value": value, "met": met})

    def r(key: str, better: str) -> float | None:
        return ratio(get(dev, key), get(syn, key), better) if syn else None

    def at_least(x: float | None, bound: float) -> bool | None:
        return None if x is None else x >= bound

    add("send throughput >= 20x Synapse", r("w1_send_throughput_msg_s", "higher"),
        at_least(r("w1_send_throughput_msg_s", "higher"), 20))
    add("delivery p99 under load <= 1/10 of Synapse", r("w2_delivery_p99_ms", "lower"),
        at_least(r("w2_delivery_p99_ms", "lower"), 10))
    idle = get(dev, "w3_idle_p50_ms")
    add("idle delivery median <= 5 ms", idle, None if idle is None else idle <= 5)
    add("fan-out p99 <= 1/10 of Synapse", r("w4_fanout_p99_ms", "lower"),
        at_least(r("w4_fanout_p99_ms", "lower"), 10))
    add("initial sync >= 10x faster (cold)", r("w5_cold_ms", "lower"), at_least(r("w5_cold_ms", "lower"), 10))
    add("initial sync >= 10x faster (warm)", r("w5_warm_ms", "lower"), at_least(r("w5_warm_ms", "lower"), 10))
    first, last = get(dev, "w6_per_join_first.state_rows"), get(dev, "w6_state_rows_per_join")
    o1 = None if first is None or last is None else last <= max(2 * first, first + 3)
    add("membership change in a big room adds O(1) state rows",
        {"early": first, "late": last}, o1)
    add("RSS idle <= 1/2 of Synapse", r("w7_rss_idle_mb", "lower"), at_least(r("w7_rss_idle_mb", "lower"), 2))
    add("RSS peak <= 1/2 of Synapse", r("w7_rss_peak_mb", "lower"), at_least(r("w7_rss_peak_mb", "lower"), 2))
    return out


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == float("inf"):
            return "inf"
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(db: str, dev: dict[str, Any], syn: dict[str, Any] | None) -> str:
    lines = [f"## {db}", "",
             "| workload | unit | DevNet | Synapse | ratio (x better) |",
             "|---|---|---:|---:|---:|"]
    for label, key, unit, better in ROWS:
        d = get(dev, key)
        s = get(syn, key) if syn else None
        if d is None and s is None:
            continue
        lines.append(f"| {label} | {unit} | {fmt(d)} | {fmt(s)} | {fmt(ratio(d, s, better))} |")
    lines += ["", "| goal | value | met |", "|---|---|---|"]
    for g in goals(dev, syn):
        met = {True: "yes", False: "**no**", None: "-"}[g["met"]]
        lines.append(f"| {g['goal']} | {fmt(g['value'])} | {met} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        mem_kb = 0
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": python_version()}


def pg_version(dsn: str) -> str:
    out = subprocess.run(["psql", dsn, "-Atc", "SHOW server_version"], capture_output=True, text=True)
    return out.stdout.strip() or "?"


# Profile spans: the workload hooks (bench/workloads.py) that start and stop py-spy.
PROFILE_SPANS = {
    "w1": ("before_load", "after_load"),
    "w1-4": ("before_load", "after_fanout"),
    "w3": ("before_idle", "after_idle"),
    "w6": ("before_big_room", "after_big_room"),
}


class Profiler:
    """py-spy attached to the DevNet process between two hooks (PROFILE_SPANS).

    `--gil`: only samples that hold the GIL, i.e. Python CPU time; without it py-spy
    here also counts threads blocked in queue.get and epoll (its idle detection misses
    them), which buries the real costs."""

    def __init__(self, out_dir: Path, db: str, span: str = "w1-4"):
        self.out = out_dir / f"devnet-{db}-{span}.txt"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, pid: int) -> subprocess.Popen[bytes]:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([str(PY_SPY), "record", "--pid", str(pid), "--rate", os.environ.get("DEVNET_PYSPY_RATE", "200"), "--gil",
                                 "--format", "raw", "--output", str(self.out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def start(self, server: Server) -> None:
        self.proc = self._spawn(server.pid)
        await asyncio.sleep(1.0)

    async def stop(self, server: Server) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            await asyncio.to_thread(self.proc.wait, 60)
            self.proc = None


async def run_server(server: Server, counts: Counts, admin_dsn: str, log: Callable[[str], None],
                     hooks: dict[str, Callable[[Server], Awaitable[None]]] | None,
                     skip: list[str]) -> dict[str, Any]:
    if server.db_kind == "postgres":
        server.pg_dsn = await recreate_pg_database(admin_dsn, f"bench_{server.kind}")
    server.prepare()
    session = new_session()
    try:
        bench = Bench(server, session, counts, log, hooks=hooks, skip=skip)
        try:
            return await bench.run(websocket=server.kind == "devnet")
        finally:
            await server.stop()
    finally:
        await session.close()


def command_line(argv: list[str]) -> str:
    """The ./scripts/bench command that made this run (without the venv path it adds)."""
    shown, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--synapse-python":
            skip = True
        elif not a.startswith("--synapse-python="):
            shown.append(shlex.quote(a))
    return " ".join(["./scripts/bench", *shown])


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")


def dump_tasks() -> None:
    """SIGUSR1: print every asyncio task's stack (to see where a run is waiting)."""
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=sys.stderr)


async def main_async(args: argparse.Namespace) -> int:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    counts = Counts.scaled(args.scale)
    workroot = Path(args.workdir)
    dbs = [d for d in args.db.split(",") if d]
    kinds = [s for s in args.servers.split(",") if s]
    if "synapse" in kinds and not args.synapse_python:
        print("bench: --synapse-python is needed to run Synapse (scripts/bench passes it)", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.time()
    results: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {}
    probes: dict[str, dict[str, Any]] = {}
    for db in dbs:
        results[db] = {}
        probes[db] = await probe(args.pg_dsn)
        log(f"[{db}] {describe(probes[db])}")
        for i, kind in enumerate(kinds):
            workdir = workroot / f"{db}-{kind}"
            port = args.port + i
            server: Server
            if kind == "devnet":
                server = DevNet(workdir, port, db, None)
            else:
                server = Synapse(workdir, port, db, None, python=args.synapse_python)
            versions[kind] = server.version()
            hooks = None
            if args.profile and kind == "devnet":
                prof = Profiler(Path(args.profile), db, args.profile_span)
                start, stop = PROFILE_SPANS[args.profile_span]
                hooks = {start: prof.start, stop: prof.stop}
            log(f"[{db}] {kind} {versions[kind]}: port {port}, scale {args.scale}")
            # The machine can change speed between the two servers' runs (minutes apart):
            # each server's own probe goes into its metrics and the table.
            measured = probes[db] if i == 0 else await probe(args.pg_dsn)
            if i > 0:
                log(f"[{db}] before {kind}: {describe(measured)}")
            t0 = time.perf_counter()
            results[db][kind] = await run_server(server, counts, args.pg_dsn, log, hooks,
                                                 [w for w in args.skip.split(",") if w])
            results[db][kind]["machine_probe"] = measured
            log(f"[{db}] {kind} done in {time.perf_counter() - t0:.0f}s")
        if "devnet" in results[db]:
            print(table(db, results[db]["devnet"], results[db].get("synapse")), flush=True)
            print(flush=True)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(sys.argv[1:]),
        "scale": args.scale, "counts": counts.__dict__, "machine": machine(), "versions": versions,
        "postgres": pg_version(args.pg_dsn) if "postgres" in dbs else None,
        "wall_time_s": round(time.time() - started),
        # The machine's speed before each database's servers ran (bench/machine_probe.py);
        # each server's own probe is in its metrics ("machine_probe").
        "machine_probe": probes,
    }
    report = {"meta": meta, "results": results,
              "goals": {db: goals(r["devnet"], r.get("synapse")) for db, r in results.items() if "devnet" in r},
              "tables": {db: table(db, r["devnet"], r.get("synapse"))
                         for db, r in results.items() if "devnet" in r}}
    write_json(Path(args.out), report)
    log(f"wrote {args.out} ({meta['wall_time_s']}s)")
    failed = [f"{db}/{k}: {list(m['errors'])}" for db, r in results.items() for k, m in r.items()
              if m.get("errors")]
    if failed:
        log("workload failures: " + "; ".join(failed))
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply every count (default 1.0)")
    p.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both (default)")
    p.add_argument("--servers", default="devnet,synapse", help="devnet, synapse or both (default)")
    p.add_argument("--synapse-python", help="python of Synapse's own virtual environment")
    p.add_argument("--pg-dsn", default=os.environ.get("DEVNET_BENCH_PG_DSN", DEFAULT_PG_DSN),
                   help="a superuser DSN on the cluster; databases bench_devnet and bench_synapse "
                        "are (re)created on it")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "latest.json"))
    p.add_argument("--workdir", default=str(REPO / ".cache" / "bench-run"),
                   help="configs, logs and SQLite files of the servers")
    p.add_argument("--port", type=int, default=18008, help="first loopback port")
    p.add_argument("--skip", default="", metavar="w5,w6,...",
                   help="workloads to leave out (e.g. for a quick profile of 1-4)")
    p.add_argument("--profile", metavar="DIR",
                   help="record a py-spy profile of DevNet into DIR (see --profile-span)")
    p.add_argument("--profile-span", default="w1-4", choices=sorted(PROFILE_SPANS),
                   help="the workloads the profile covers (default w1-4)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir = os.path.abspath(args.workdir)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
