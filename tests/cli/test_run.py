"""`run` as a real subprocess: serves the client and federation APIs, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from homeserver.config import load_config
from homeserver.events.signing import decode_verify_key_base64, get_verify_key, key_id, verify_json
from homeserver.signing_key import load_signing_key
from tests.cli.conftest import client_port, edit_config, free_port, run_cli, spawn_cli

START_TIMEOUT_S = 30


async def wait_until_serving(proc: asyncio.subprocess.Process, url: str) -> None:
    """Poll `url` until it answers; fail early if the server exits instead."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                assert proc.stderr is not None
                pytest.fail(f"server exited with {proc.returncode}: {(await proc.stderr.read()).decode()}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"server did not answer {url} within {START_TIMEOUT_S}s")


@pytest.fixture
async def server_config(generated_config: Path, database_settings: dict[str, Any]) -> Path:
    """The generated config on the engine under test."""
    if database_settings["engine"] == "postgres":
        edit_config(generated_config, database=database_settings)
    return generated_config


@pytest.fixture
async def running(server_config: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await spawn_cli("run", "-c", str(server_config))
    try:
        port = client_port(server_config)
        await wait_until_serving(proc, f"http://127.0.0.1:{port}/_matrix/client/versions")
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def test_serves_until_sigterm(server_config: Path, running: asyncio.subprocess.Process) -> None:
    config = load_config(str(server_config))
    client, federation = config.client_listener, config.federation_listener
    assert federation is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{client.port}/_matrix/client/versions") as r:
            assert r.status == 200
            assert "v1.1" in (await r.json())["versions"]
        # The federation listener speaks TLS with the generated self-signed certificate.
        base = f"https://127.0.0.1:{federation.port}"
        async with session.get(f"{base}/_matrix/federation/v1/version", ssl=False) as r:
            assert r.status == 200
            assert (await r.json())["server"]["name"] == "DevNet"
        async with session.get(f"{base}/_matrix/federation/v1/nope", ssl=False) as r:
            assert r.status == 404
            assert (await r.json())["errcode"] == "M_UNRECOGNIZED"
        async with session.get(f"{base}/_matrix/key/v2/server", ssl=False) as r:
            assert r.status == 200
            keys = await r.json()

    # The key document is self-signed with the key from the config's signing key file.
    own_key = get_verify_key(load_signing_key(config.signing_key_path))
    assert keys["server_name"] == "cli.test"
    assert list(keys["verify_keys"]) == [key_id(own_key)]
    published = decode_verify_key_base64("ed25519", own_key.version,
                                         keys["verify_keys"][key_id(own_key)]["key"])
    assert published.encode() == own_key.encode()
    verify_json(keys, "cli.test", published)
    assert keys["valid_until_ts"] > time.time() * 1000

    running.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(running.communicate(), 30)
    assert running.returncode == 0, err.decode()
    log = err.decode()
    assert f"client API listening on http://127.0.0.1:{client.port}" in log
    assert f"federation API listening on https://127.0.0.1:{federation.port}" in log
    assert "Traceback" not in log


async def test_sigint_also_stops_cleanly(running: asyncio.subprocess.Process) -> None:
    running.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(running.communicate(), 30)
    assert running.returncode == 0, err.decode()
    assert "received SIGINT, shutting down" in err.decode()


async def test_busy_port_is_one_line(generated_config: Path) -> None:
    port = client_port(generated_config)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        status, _, err = await run_cli("run", "-c", str(generated_config))
    assert status == 1
    assert err.splitlines()[-1].startswith("error: cannot start: ")
    assert "Traceback" not in err


@pytest.mark.parametrize(("database", "expected"), [
    ({"engine": "postgres", "dsn": "postgresql://nobody:x@127.0.0.1:{port}/none"},
     "error: cannot connect to PostgreSQL: "),
    ({"engine": "sqlite", "path": "no/such/dir/homeserver.db"}, "error: cannot open SQLite database "),
])
async def test_unusable_database_is_one_line(generated_config: Path, database: dict[str, str],
                                             expected: str) -> None:
    if "dsn" in database:
        database = {**database, "dsn": database["dsn"].format(port=free_port())}
    edit_config(generated_config, database=database)
    status, _, err = await run_cli("run", "-c", str(generated_config))
    assert status == 1
    assert err.splitlines()[-1].startswith(expected), err
    assert "Traceback" not in err
