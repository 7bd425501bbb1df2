"""How fast this machine is right now, recorded with each database's part of a run.

The same code on this 2-vCPU VM has run at two speeds an hour apart (docs/benchmarks.md,
the ninth round): Python's speed moved by a quarter, and waking a process that slept
50 ms took 0.11 ms in one phase and 0.37 ms in the other. Latencies that start from an
idle server (workload 3) follow the second, throughput the first. The probe measures
both, before each database's servers run, so that a run's numbers can be read against
the machine's state at the time:

- `python_loop_ms`: a fixed piece of pure Python (integer arithmetic and dict updates),
  median of 7;
- `wake_rt_ms` / `warm_rt_ms`: a one-byte round trip through pipes to a child process
  that waits in a blocking read, after a 50 ms pause / right after the previous one,
  median of 40 each. Both servers pay this kind of wake-up on every idle request;
- `pg_wake_rt_ms` / `pg_warm_rt_ms`: the same for `SELECT 1` to PostgreSQL over the
  benchmark's DSN (when it answers), which DevNet pays for each backend an idle send
  wakes. In the ninth round this one moved with the phases (0.385, 0.111, 0.365 ms).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any

PAUSE_S = 0.05
ROUNDS = 40
# The child echoes each byte it reads until its input closes.
_ECHO = ("import os\n"
         "while True:\n"
         "    b = os.read(0, 1)\n"
         "    if not b:\n"
         "        break\n"
         "    os.write(1, b)\n")


def _python_loop() -> float:
    started = time.perf_counter()
    counts: dict[int, int] = {}
    total = 0
    for i in range(200_000):
        total += i * 7 % 13
        counts[i & 255] = counts.get(i & 255, 0) + 1
    if total < 0:  # keeps the work from being dead code to a reader
        raise AssertionError
    return time.perf_counter() - started


def _round_trips(pause: float) -> list[float]:
    child = subprocess.Popen([sys.executable, "-c", _ECHO], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, bufsize=0)
    assert child.stdin is not None and child.stdout is not None
    write, read = child.stdin.fileno(), child.stdout.fileno()
    samples = []
    try:
        os.write(write, b"x")  # the child has started and answers
        os.read(read, 1)
        for _ in range(ROUNDS):
            if pause:
                time.sleep(pause)
            started = time.perf_counter()
            os.write(write, b"x")
            os.read(read, 1)
            samples.append(time.perf_counter() - started)
    finally:
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()
    return samples


async def select_round_trips(conn: Any, pause: float, rounds: int = ROUNDS) -> list[float]:
    """`SELECT 1` round trips on an asyncpg connection, each after `pause` seconds
    (also bench/pg_round_trips.py)."""
    samples = []
    for _ in range(rounds):
        if pause:
            await asyncio.sleep(pause)
        started = time.perf_counter()
        await conn.execute("SELECT 1")
        samples.append(time.perf_counter() - started)
    return samples


async def _pg_round_trips(dsn: str, pause: float) -> list[float]:
    import asyncpg  # only where PostgreSQL is probed

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT 1")
        return await select_round_trips(conn, pause)
    finally:
        await conn.close()


def _ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e3, 3)


async def probe(pg_dsn: str | None = None) -> dict[str, Any]:
    """The machine's speed now (see the module docstring); takes about 5 s."""
    measured: dict[str, Any] = {
        "python_loop_ms": round(statistics.median(_python_loop() for _ in range(7)) * 1e3, 2),
        "wake_rt_ms": _ms(_round_trips(PAUSE_S)),
        "warm_rt_ms": _ms(_round_trips(0.0)),
    }
    if pg_dsn:
        try:
            measured["pg_wake_rt_ms"] = _ms(await _pg_round_trips(pg_dsn, PAUSE_S))
            measured["pg_warm_rt_ms"] = _ms(await _pg_round_trips(pg_dsn, 0.0))
        except Exception as e:  # no cluster here: the probe says so, and the run goes on
            measured["pg_error"] = str(e)[:200]
    return measured


def describe(measured: dict[str, Any]) -> str:
    text = (f"machine probe: Python loop {measured['python_loop_ms']:.1f} ms; round trip "
            f"to a process idle 50 ms {measured['wake_rt_ms']:.3f} ms "
            f"(warm {measured['warm_rt_ms']:.3f})")
    if "pg_wake_rt_ms" in measured:
        text += (f"; PostgreSQL SELECT 1 after 50 ms {measured['pg_wake_rt_ms']:.3f} ms "
                 f"(warm {measured['pg_warm_rt_ms']:.3f})")
    return text


if __name__ == "__main__":
    print(describe(asyncio.run(probe(sys.argv[1] if len(sys.argv) > 1 else None))))
