"""The test-side client of the Synapse oracle (tests/differential/synapse_bridge.py).

Synapse runs in its own virtual environment, as a separate process; we talk JSON lines
to it over a pipe and never import it.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BRIDGE = Path(__file__).resolve().parent / "synapse_bridge.py"
VENV_SCRIPT = REPO / "scripts" / "synapse-oracle-venv"


class OracleError(RuntimeError):
    """The bridge answered with an error (a malformed request or a Synapse crash)."""


def build_oracle_python(timeout: float = 1200) -> str:
    """Build the oracle venv if needed (idempotent) and return its python's path."""
    proc = subprocess.run(
        ["bash", str(VENV_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{VENV_SCRIPT.name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


class SynapseOracle:
    """One long-lived bridge process; `call()` sends a request and waits for its reply."""

    def __init__(self, python: str, timeout: float = 300):
        self.timeout = timeout
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        self._proc = subprocess.Popen(
            [python, "-u", str(BRIDGE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
            encoding="utf-8",
            env=env,
        )
        self._sel = selectors.DefaultSelector()
        assert self._proc.stdout is not None
        self._sel.register(self._proc.stdout, selectors.EVENT_READ)
        self._next_id = 0
        self.version: str = self.call("ping")["synapse_version"]

    def call_raw(self, op: str, **params: Any) -> dict[str, Any]:
        """The full reply (result plus extras such as `elapsed_s`)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._next_id += 1
        req = {"op": op, "id": self._next_id, **params}
        self._proc.stdin.write(json.dumps(req, ensure_ascii=False) + "\n")
        self._proc.stdin.flush()
        if not self._sel.select(self.timeout):
            raise OracleError(f"no answer from the Synapse oracle within {self.timeout}s")
        line = self._proc.stdout.readline()
        if not line:
            raise OracleError(f"the Synapse oracle exited ({self._proc.poll()})")
        reply = json.loads(line)
        if reply.get("id") != self._next_id:
            raise OracleError(f"reply out of order: {reply!r:.200}")
        if "error" in reply:
            raise OracleError(f"{reply['error']}\n{reply.get('traceback', '')}")
        return reply

    def call(self, op: str, **params: Any) -> Any:
        return self.call_raw(op, **params)["result"]

    def close(self) -> None:
        self._sel.close()
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()
