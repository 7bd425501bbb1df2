"""Validate bodies against the Matrix spec's OpenAPI files (../shared/matrix-spec).

    validate_response("registration.yaml", "/register", "post", body)
    validate_response("login.yaml", "/login", "post", body, status="200")

`$ref`s between the spec's YAML files (`definitions/...`, `../client-server/...`) are
resolved by loading the referenced file on demand. Tests that use this skip when the
spec data is not present (set DEVNET_MATRIX_SPEC_DIR to point elsewhere).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_DIR = Path(os.environ.get(
    "DEVNET_MATRIX_SPEC_DIR",
    Path(__file__).resolve().parents[2] / "shared" / "matrix-spec" / "data" / "api"))
CLIENT_SERVER = SPEC_DIR / "client-server"


@functools.cache
def _load_yaml(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _retrieve(uri: str) -> Resource[Any]:
    path = url2pathname(urlparse(uri).path)
    return Resource.from_contents(_load_yaml(path), default_specification=DRAFT202012)


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _validate(api_file: str, pointer: str, body: Any) -> None:
    path = CLIENT_SERVER / api_file
    if not path.exists():
        pytest.skip(f"Matrix spec data not found at {path}")
    uri = path.as_uri()
    registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": uri + "#" + pointer}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(body)


def validate_response(api_file: str, path: str, method: str, body: Any, *,
                      status: str = "200") -> None:
    """Raise jsonschema.ValidationError unless `body` matches the documented response."""
    _validate(api_file, _pointer("paths", path, method.lower(), "responses", status, "content",
                                 "application/json", "schema"), body)


def validate_request(api_file: str, path: str, method: str, body: Any) -> None:
    _validate(api_file, _pointer("paths", path, method.lower(), "requestBody", "content",
                                 "application/json", "schema"), body)


def validate_definition(relative_path: str, body: Any) -> None:
    """Validate against a whole definitions file, e.g. "definitions/client_device.yaml"."""
    _validate(relative_path, "", body)
