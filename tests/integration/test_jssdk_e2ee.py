"""Issue 6 acceptance with matrix-js-sdk and its Rust crypto (matrix-sdk-crypto-wasm), in
Node, against a DevNet on a real loopback port: the key backup round trip.

jssdk/backup_restore.mjs logs in a first device, bootstraps cross-signing (password UIA)
and secret storage with a new recovery key and a new key backup, sends encrypted messages
and waits until their room key is in the backup. A second device with a fresh crypto
store takes the recovery key, imports the cross-signing keys from secret storage and
signs itself, checks that the backup is trusted, restores it and decrypts the history
read through /messages. The first device must then see the second one as cross-signed
(device-list update, /keys/query) and a new message must reach the second device live
(/keys/claim, Olm to-device). The script prints what it saw as JSON; this test compares
it with what was sent. The server fixture fails the test on any 5xx or any response
that does not match the spec's schema.

The Node packages are pinned in jssdk/package-lock.json and installed by scripts/test
(`npm ci`). Without node or those packages the test skips, except under CI, where it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from nio import RegisterResponse

from tests.integration.conftest import MakeClient, Servers

JSSDK_DIR = Path(__file__).parent / "jssdk"
SCRIPT = JSSDK_DIR / "backup_restore.mjs"
PASSWORD = "correct horse battery"
# The script bounds each wait itself (and its whole run at 55 s); this only stops a hung
# process.
NODE_TIMEOUT_S = 90


def _node_or_skip() -> str:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed"
    elif not (JSSDK_DIR / "node_modules" / "matrix-js-sdk" / "package.json").exists():
        missing = f"matrix-js-sdk is not installed: run `npm ci` in {JSSDK_DIR}"
    if missing is None:
        assert node is not None
        return node
    if os.environ.get("CI", "") not in ("", "0", "false"):
        pytest.fail(f"{missing} (CI is set: the matrix-js-sdk test must run)", pytrace=False)
    pytest.skip(missing)


async def run_node(node: str, script: Path, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run a script of jssdk/ without blocking the event loop the server runs on."""
    process = await asyncio.create_subprocess_exec(
        node, str(script), json.dumps(arguments), cwd=JSSDK_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    log = stderr.decode(errors="replace")
    assert process.returncode == 0, (f"{script.name} exited with {process.returncode} (set "
                                     f"JSSDK_DEBUG=1 for the js-sdk's debug log):\n{log}")
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_key_backup_restored_on_a_new_device(servers: Servers,
                                                   nio_client: MakeClient) -> None:
    node = _node_or_skip()
    url = await servers.start()
    registered = await nio_client(url).register("alice", PASSWORD)
    assert isinstance(registered, RegisterResponse), registered

    result = await run_node(node, SCRIPT, {"baseUrl": url, "userId": registered.user_id,
                                           "password": PASSWORD})

    assert result["sdkVersion"] == _pinned_sdk_version()
    # The first cross-signing keys went up without auth, their replacement with the password.
    assert result["passwordAsked"] == [False, True]
    sent = {m["eventId"]: m["body"] for m in result["sent"]}
    assert len(sent) == 3
    # One megolm session carried all three messages; the backup held it and gave it back.
    assert result["restored"]["total"] == 1
    history = result["history"]
    assert {event_id: e["body"] for event_id, e in history.items()} == sent
    assert len({e["sessionId"] for e in history.values()}) == 1
    # A key from a backup is not proof of who sent the message: the SDK says so.
    assert {(e["shield"], e["shieldReason"]) for e in history.values()} == {
        ("GREY", "AUTHENTICITY_NOT_GUARANTEED")}
    # The live message came in a new session whose key arrived by Olm from the first
    # device, which the second one trusts through cross-signing: no shield at all.
    live = result["live"]
    assert live["received"]["body"] == live["body"] == "after the restore"
    assert live["received"]["sessionId"] not in {e["sessionId"] for e in history.values()}
    assert (live["received"]["shield"], live["received"]["shieldReason"]) == ("NONE", None)


def _pinned_sdk_version() -> str:
    lock = json.loads((JSSDK_DIR / "package-lock.json").read_text())
    version: str = lock["packages"]["node_modules/matrix-js-sdk"]["version"]
    return version
