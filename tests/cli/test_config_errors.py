"""A bad config stops `run` with ONE line naming the key, and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from homeserver.__main__ import main
from tests.cli.conftest import edit_config, run_cli


def _run_stderr(config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["run", "-c", str(config)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize(("change", "expected"), [
    ({"database": {"engine": "mysql"}},
     "config error: database.engine: must be one of sqlite, postgres, got 'mysql'"),
    ({"database": {"engine": "postgres"}}, "config error: database.dsn: is required"),
    ({"listeners": {"client": {"port": 70000}}},
     "config error: listeners.client.port: must be a TCP port (0-65535), got 70000"),
    ({"listeners": {"client": {"port": "http"}}},
     "config error: listeners.client.port: must be int, got 'http'"),
    ({"server_name": None}, "config error: server_name: is required"),
    ({"server_name": "bad name"}, "config error: server_name: not a valid Matrix server name: 'bad name'"),
    ({"registration": {"policy": "everyone"}},
     "config error: registration.policy: must be one of disabled, token, open, got 'everyone'"),
    ({"log_level": "LOUD"}, "config error: log_level: must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"),
])
def test_bad_value_names_the_key(generated_config: Path, capsys: pytest.CaptureFixture[str],
                                 change: dict[str, object], expected: str) -> None:
    edit_config(generated_config, **change)
    assert _run_stderr(generated_config, capsys) == expected


def test_not_a_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "homeserver.yaml"
    path.write_text("- just\n- a list\n")
    assert _run_stderr(path, capsys) == "config error: config: must be a mapping"


def test_bad_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "homeserver.yaml"
    path.write_text("server_name: [unclosed\n")
    assert _run_stderr(path, capsys).startswith(f"config error: {path}: not valid YAML: ")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    assert _run_stderr(path, capsys) == (
        f"config error: cannot read config file {path}: No such file or directory")


def test_missing_signing_key(generated_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = generated_config.parent / yaml.safe_load(generated_config.read_text())["signing_key_path"]
    key.unlink()
    assert _run_stderr(generated_config, capsys) == f"config error: signing_key_path: file not found: {key}"


def test_corrupt_signing_key(generated_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = generated_config.parent / yaml.safe_load(generated_config.read_text())["signing_key_path"]
    key.write_text("ed25519 a_1 notbase64\n")
    assert _run_stderr(generated_config, capsys).startswith(
        "config error: signing_key_path: not a usable signing key file: ")


async def test_real_command_prints_one_line(generated_config: Path) -> None:
    edit_config(generated_config, database={"engine": "mysql"})
    status, out, err = await run_cli("run", "-c", str(generated_config))
    assert (status, out) == (1, "")
    assert err == "config error: database.engine: must be one of sqlite, postgres, got 'mysql'\n"
