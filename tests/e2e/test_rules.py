"""Pure rules: key-backup version parsing and signed-object checks. (The key-backup
replacement rule is in SQL: tests/e2e/test_key_backup_replacement.py.)"""

from __future__ import annotations

import signedjson.key
import signedjson.sign

from homeserver.e2e.key_backup import parse_version
from homeserver.e2e.signed_json import has_valid_signature, is_public_key


def test_parse_version() -> None:
    assert parse_version("12") == 12
    for bad in ("", "-1", "1.0", "x", "²", "9" * 30, None, 5):
        assert parse_version(bad) is None


def test_signature_checks() -> None:
    key = signedjson.key.generate_signing_key("DEV")
    public = signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(key))
    assert is_public_key(public) and not is_public_key(public[:-1]) and not is_public_key("!" * 43)
    signed = signedjson.sign.sign_json({"key": "k", "unsigned": {"a": 1}}, "@u:x", key)
    assert has_valid_signature(signed, "@u:x", "DEV", public)
    assert has_valid_signature({**signed, "unsigned": {"b": 2}}, "@u:x", "DEV", public)
    assert not has_valid_signature({**signed, "key": "other"}, "@u:x", "DEV", public)
    assert not has_valid_signature(signed, "@v:x", "DEV", public)
    assert not has_valid_signature({**signed, "signatures": "x"}, "@u:x", "DEV", public)
    assert not has_valid_signature(signed, "@u:x", "DEV", "not a key")
