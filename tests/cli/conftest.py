"""Helpers for driving `devnet-homeserver` as users do: generated configs, real subprocesses."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.__main__ import main

# The package root, so a subprocess imports this tree even when not installed.
REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def edit_config(path: Path, **sections: Any) -> None:
    """Merge top-level keys into a YAML config (dicts are merged one level deep)."""
    data = yaml.safe_load(path.read_text())
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data))


@pytest.fixture
def generated_config(tmp_path: Path) -> Path:
    """A config from `generate-config` on free ports, with cheap password hashing."""
    path = tmp_path / "homeserver.yaml"
    assert main(["generate-config", "--server-name", "cli.test", "--config", str(path)]) == 0
    data = yaml.safe_load(path.read_text())
    data["listeners"]["client"]["port"] = free_port()
    data["listeners"]["federation"]["port"] = free_port()
    data["auth"] = {"password_hash_time_cost": 1, "password_hash_memory_kib": 64,
                    "password_hash_parallelism": 1}
    path.write_text(yaml.safe_dump(data))
    return path


def client_port(config_path: Path) -> int:
    return int(yaml.safe_load(config_path.read_text())["listeners"]["client"]["port"])


async def run_cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run `python -m homeserver ARGS` to completion: (exit status, stdout, stderr)."""
    proc = await spawn_cli(*args, stdin=stdin is not None)
    async with asyncio.timeout(COMMAND_TIMEOUT_S):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def spawn_cli(*args: str, stdin: bool = False) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A new session has no controlling terminal, so getpass reads the piped stdin
    # instead of waiting on the developer's terminal.
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "homeserver", *args, env=env, cwd=str(REPO), start_new_session=True,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
