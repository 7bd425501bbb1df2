"""config.sample.yaml documents every option with its real default.

Commented-out options are written `#name: example` (no space after `#`), so they can be
told apart from prose and checked too.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import attrs
import yaml

from homeserver.config import DEFAULT_RATE_LIMITS, Config, load_config
from homeserver.signing_key import generate_signing_key_file
from tests.cli.conftest import REPO

SAMPLE = REPO / "config.sample.yaml"
_COMMENTED_OPTION = re.compile(r"^(\s*)#([a-z_]+:(\s.*)?)$", re.MULTILINE)

# Config fields that are read from a differently named place, or not from the file.
_FIELD_KEYS = {"client_listener": "listeners.client", "federation_listener": "listeners.federation",
               "config_dir": None}
# Keys that switch something rather than fill a field.
_SWITCHES = {"listeners.federation.enabled"}


def _sample(tmp_path: Path) -> Path:
    path = tmp_path / "homeserver.yaml"
    shutil.copy(SAMPLE, path)
    data = yaml.safe_load(SAMPLE.read_text())
    generate_signing_key_file(str(tmp_path / data["signing_key_path"]))
    return path


def _leaf_keys(data: Any, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return {prefix}
    keys: set[str] = set()
    for key, value in data.items():
        keys |= _leaf_keys(value, f"{prefix}.{key}" if prefix else key)
    return keys


def _config_keys(obj: Any, prefix: str = "") -> set[str]:
    """The YAML key of every attrs field reachable from `obj`."""
    keys: set[str] = set()
    for field in attrs.fields(type(obj)):
        key = _FIELD_KEYS.get(field.name, field.name) if not prefix else f"{prefix}.{field.name}"
        if key is None:
            continue
        value = getattr(obj, field.name)
        if attrs.has(type(value)):
            keys |= _config_keys(value, key)
        elif field.name == "rate_limits":
            keys |= {f"rate_limits.{action}.{f.name}" for action in value
                     for f in attrs.fields(type(value[action]))}
        else:
            keys.add(key)
    return keys


def test_sample_loads_and_equals_the_defaults(tmp_path: Path) -> None:
    path = _sample(tmp_path)
    config = load_config(str(path))
    minimal = yaml.safe_load(SAMPLE.read_text())
    defaults = Config.from_dict({"server_name": minimal["server_name"],
                                 "signing_key_path": minimal["signing_key_path"]}, str(tmp_path))
    assert config == defaults


def test_every_option_is_in_the_sample(tmp_path: Path) -> None:
    everything = yaml.safe_load(_COMMENTED_OPTION.sub(r"\1\2", SAMPLE.read_text()))
    documented = _leaf_keys(everything)
    defaults = Config.from_dict({"server_name": "example.org", "signing_key_path": "k"}, str(tmp_path))
    expected = _config_keys(defaults)
    assert {f"rate_limits.{a}.burst" for a in DEFAULT_RATE_LIMITS} <= expected
    assert expected - documented == set(), "options missing from config.sample.yaml"
    assert documented - expected - _SWITCHES == set(), "config.sample.yaml documents unknown options"


def test_commented_examples_are_valid(tmp_path: Path) -> None:
    everything = yaml.safe_load(_COMMENTED_OPTION.sub(r"\1\2", SAMPLE.read_text()))
    config = Config.from_dict(everything, str(tmp_path))
    assert config.public_baseurl == everything["public_baseurl"]
    assert config.registration.shared_secret == everything["registration"]["shared_secret"]
    assert config.client_listener.tls_cert_path == str(tmp_path / "client.tls.crt")
