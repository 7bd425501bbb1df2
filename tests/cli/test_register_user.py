"""`register-user` creates accounts that can then log in to the running server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.cli.conftest import client_port, edit_config, run_cli, spawn_cli
from tests.cli.test_run import wait_until_serving

PASSWORD = "correct horse battery"


async def _login(port: int, user: str, password: str) -> tuple[int, dict[str, Any]]:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": password}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/_matrix/client/v3/login", json=body) as r:
            return r.status, await r.json()


async def test_register_then_log_in(generated_config: Path, database_settings: dict[str, Any]) -> None:
    if database_settings["engine"] == "postgres":
        edit_config(generated_config, database=database_settings)
    config = str(generated_config)

    assert await run_cli("register-user", "-c", config, "alice", "--password", PASSWORD,
                         "--admin") == (0, "@alice:cli.test\n", "")
    # A full user ID on this server is accepted too.
    assert (await run_cli("register-user", "-c", config, "@bob:cli.test", "--password",
                          PASSWORD))[:2] == (0, "@bob:cli.test\n")
    # Without --password it prompts twice (read from stdin when there is no terminal).
    status, out, _ = await run_cli("register-user", "-c", config, "carol",
                                   stdin=f"{PASSWORD}\n{PASSWORD}\n".encode())
    assert (status, out) == (0, "@carol:cli.test\n")

    proc = await spawn_cli("run", "-c", config)
    try:
        port = client_port(generated_config)
        await wait_until_serving(proc, f"http://127.0.0.1:{port}/_matrix/client/versions")
        for user in ("alice", "bob", "carol"):
            status, body = await _login(port, user, PASSWORD)
            assert status == 200, body
            assert body["user_id"] == f"@{user}:cli.test"
        assert (await _login(port, "alice", "wrong password"))[0] == 403
    finally:
        proc.kill()
        await proc.communicate()


async def test_user_errors_are_one_line(generated_config: Path) -> None:
    config = str(generated_config)
    assert (await run_cli("register-user", "-c", config, "dave", "--password", PASSWORD))[0] == 0

    cases = [
        (["dave", "--password", PASSWORD], "error: M_USER_IN_USE: "),
        (["Not Valid!", "--password", PASSWORD], "error: M_INVALID_USERNAME: "),
        (["erin", "--password", "short"], "error: M_WEAK_PASSWORD: "),
        (["@frank:elsewhere.test", "--password", PASSWORD],
         "error: @frank:elsewhere.test is not a user ID on this server (cli.test)"),
    ]
    for args, expected in cases:
        status, out, err = await run_cli("register-user", "-c", config, *args)
        assert (status, out) == (1, ""), args
        assert len(err.splitlines()) == 1 and err.startswith(expected), (args, err)

    status, out, err = await run_cli("register-user", "-c", config, "grace",
                                     stdin=f"{PASSWORD}\nsomething else\n".encode())
    assert (status, out) == (1, "")
    assert err.splitlines()[-1] == "error: passwords do not match"
