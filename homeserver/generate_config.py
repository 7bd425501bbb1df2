"""`generate-config`: a minimal working config plus the files it points at.

Writes the YAML config, a fresh ed25519 signing key, a VAPID key for web push, random
secrets and a self-signed TLS certificate for the federation listener. Paths in the config are relative to the
config file so the whole directory can be moved. Every other option keeps its default;
config.sample.yaml documents them all.
"""

from __future__ import annotations

import errno
import os
import secrets

import attrs
import yaml

from homeserver.config import ConfigError
from homeserver.signing_key import generate_signing_key_file
from homeserver.types import is_valid_server_name

REGISTRATION_POLICIES = ("disabled", "token", "open")

_HEADER = """\
# DevNet homeserver config, written by `devnet-homeserver generate-config`.
# Relative paths are relative to this file. Every option, with its default, is
# documented in config.sample.yaml. Both listeners bind to loopback: set
# listeners.federation.bind (and a certificate other servers trust) to federate.
"""


@attrs.frozen
class GeneratedFiles:
    config_path: str
    signing_key_path: str
    tls_cert_path: str
    tls_key_path: str
    database_path: str
    vapid_key_path: str


def generate_config(server_name: str, config_path: str, data_dir: str | None = None, *,
                    registration_policy: str = "disabled") -> GeneratedFiles:
    """Write a config for `server_name`; FileExistsError when the config already exists."""
    if not is_valid_server_name(server_name):
        raise ConfigError(f"server_name: not a valid Matrix server name: {server_name!r}")
    if registration_policy not in REGISTRATION_POLICIES:
        raise ConfigError(f"registration.policy: must be one of {', '.join(REGISTRATION_POLICIES)}")
    config_path = os.path.abspath(config_path)
    if os.path.exists(config_path):
        raise FileExistsError(errno.EEXIST, "config file exists", config_path)
    config_dir = os.path.dirname(config_path)
    data_dir = os.path.abspath(data_dir) if data_dir else config_dir
    os.makedirs(config_dir, exist_ok=True)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    files = GeneratedFiles(
        config_path=config_path,
        signing_key_path=os.path.join(data_dir, f"{server_name}.signing.key"),
        tls_cert_path=os.path.join(data_dir, f"{server_name}.tls.crt"),
        tls_key_path=os.path.join(data_dir, f"{server_name}.tls.key"),
        database_path=os.path.join(data_dir, "homeserver.db"),
        vapid_key_path=os.path.join(data_dir, f"{server_name}.vapid.key"),
    )
    # An existing key is kept: other servers have cached it, and events signed with it
    # would stop verifying if it were replaced.
    if not os.path.exists(files.signing_key_path):
        generate_signing_key_file(files.signing_key_path)
    # Imported here: both need `cryptography`, which a running server loads only if it
    # sends web pushes (keeps idle memory down; docs/benchmarks.md).
    from homeserver.push.vapid import write_vapid_key
    from homeserver.tls import write_self_signed_cert

    # Kept too: browsers' push subscriptions may be bound to this key.
    if not os.path.exists(files.vapid_key_path):
        write_vapid_key(files.vapid_key_path)
    if not (os.path.exists(files.tls_cert_path) and os.path.exists(files.tls_key_path)):
        write_self_signed_cert(server_name, files.tls_cert_path, files.tls_key_path)
    text = _HEADER + yaml.safe_dump(_config_dict(server_name, files, config_dir, registration_policy),
                                    sort_keys=False, default_flow_style=False)
    # O_EXCL: never clobber a config that appeared since the check above; 0600 because
    # it holds the registration shared secret.
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return files


def _config_dict(server_name: str, files: GeneratedFiles, config_dir: str,
                 registration_policy: str) -> dict[str, object]:
    def rel(path: str) -> str:
        return os.path.relpath(path, config_dir)

    return {
        "server_name": server_name,
        "signing_key_path": rel(files.signing_key_path),
        "listeners": {
            "client": {"bind": "127.0.0.1", "port": 8008},
            "federation": {"bind": "127.0.0.1", "port": 8448,
                           "tls_cert_path": rel(files.tls_cert_path),
                           "tls_key_path": rel(files.tls_key_path)},
        },
        "database": {"engine": "sqlite", "path": rel(files.database_path)},
        "registration": {"policy": registration_policy,
                         "shared_secret": secrets.token_urlsafe(32)},
        "push": {"vapid_private_key_path": rel(files.vapid_key_path)},
        "log_level": "INFO",
    }
