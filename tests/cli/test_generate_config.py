"""`generate-config` writes a config that loads, with its key, certificate and secrets."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from homeserver.__main__ import main
from homeserver.config import load_config
from homeserver.push.vapid import VapidKey
from homeserver.signing_key import load_signing_key


def test_generated_config_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "homeserver.yaml"
    assert main(["generate-config", "--server-name", "example.test", "--config", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out

    config = load_config(str(path))
    assert config.server_name == "example.test"
    assert config.database.engine == "sqlite"
    assert config.database.path == str(tmp_path / "homeserver.db")
    assert config.registration.policy == "disabled"
    assert config.registration.shared_secret and len(config.registration.shared_secret) >= 32
    load_signing_key(config.signing_key_path)
    federation = config.federation_listener
    assert federation is not None and federation.port == 8448
    assert federation.tls_cert_path and federation.tls_key_path
    cert = x509.load_pem_x509_certificate(Path(federation.tls_cert_path).read_bytes())
    assert cert.subject.rfc4514_string() == "CN=example.test"
    vapid_path = config.push.vapid_private_key_path
    assert vapid_path == str(tmp_path / "example.test.vapid.key")
    VapidKey.load_or_create(vapid_path)  # loads the generated key, creates nothing
    # Secrets are readable by their owner only.
    for secret in (path, Path(config.signing_key_path), Path(federation.tls_key_path),
                   Path(vapid_path)):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret


def test_secrets_differ_between_servers(tmp_path: Path) -> None:
    configs = []
    for name in ("a", "b"):
        path = tmp_path / name / "homeserver.yaml"
        assert main(["generate-config", "--server-name", f"{name}.test", "--config", str(path)]) == 0
        configs.append(load_config(str(path)))
    assert configs[0].registration.shared_secret != configs[1].registration.shared_secret
    keys = [load_signing_key(c.signing_key_path) for c in configs]
    assert keys[0].encode() != keys[1].encode()


def test_paths_are_relative_so_the_directory_can_move(tmp_path: Path) -> None:
    path = tmp_path / "old" / "conf" / "homeserver.yaml"
    data_dir = tmp_path / "old" / "data"
    assert main(["generate-config", "--server-name", "example.test", "--config", str(path),
                 "--data-dir", str(data_dir), "--registration", "open"]) == 0
    raw = yaml.safe_load(path.read_text())
    assert raw["signing_key_path"] == "../data/example.test.signing.key"
    assert raw["database"]["path"] == "../data/homeserver.db"

    shutil.move(tmp_path / "old", tmp_path / "new")
    config = load_config(str(tmp_path / "new" / "conf" / "homeserver.yaml"))
    assert config.signing_key_path == str(tmp_path / "new" / "data" / "example.test.signing.key")
    assert config.registration.policy == "open"


def test_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "homeserver.yaml"
    path.write_text("# mine\n")
    assert main(["generate-config", "--server-name", "example.test", "--config", str(path)]) == 1
    assert capsys.readouterr().err == f"error: {path} already exists; refusing to overwrite it\n"
    assert path.read_text() == "# mine\n"


def test_keeps_an_existing_signing_key(tmp_path: Path) -> None:
    path = tmp_path / "homeserver.yaml"
    assert main(["generate-config", "--server-name", "example.test", "--config", str(path)]) == 0
    key_before = load_signing_key(load_config(str(path)).signing_key_path).encode()
    path.unlink()
    assert main(["generate-config", "--server-name", "example.test", "--config", str(path)]) == 0
    assert load_signing_key(load_config(str(path)).signing_key_path).encode() == key_before


def test_rejects_an_invalid_server_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "homeserver.yaml"
    assert main(["generate-config", "--server-name", "not a name", "--config", str(path)]) == 1
    assert capsys.readouterr().err == "config error: server_name: not a valid Matrix server name: 'not a name'\n"
    assert not path.exists()
