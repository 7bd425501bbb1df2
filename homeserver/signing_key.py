"""The server's ed25519 signing key file (`ed25519 <version> <unpadded base64 seed>`)."""

from __future__ import annotations

import os
import secrets

import signedjson.key
from signedjson.types import SigningKey


def generate_signing_key_file(path: str) -> None:
    version = "a_" + secrets.token_hex(2)
    key = signedjson.key.generate_signing_key(version)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        signedjson.key.write_signing_keys(f, [key])


def load_signing_key(path: str) -> SigningKey:
    with open(path) as f:
        keys = signedjson.key.read_signing_keys(f)
    if not keys:
        raise ValueError(f"no signing key in {path}")
    return keys[0]
