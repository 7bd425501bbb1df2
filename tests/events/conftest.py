"""Shared fixtures: the spec's test signing key and room versions."""

from __future__ import annotations

import pytest
from signedjson.types import SigningKey

from homeserver.events.signing import decode_signing_key_base64

# https://spec.matrix.org/v1.19/appendices/#signing-key
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_SERVER = "domain"


@pytest.fixture
def spec_key() -> SigningKey:
    return decode_signing_key_base64("ed25519", "1", SPEC_SEED)
