"""Validate bodies against the Matrix spec's OpenAPI files (../shared/matrix-spec).

    validate_response("registration.yaml", "/register", "post", body)
    validate_response("login.yaml", "/login", "post", body, status="200")

`$ref`s between the spec's YAML files (`definitions/...`, `../client-server/...`) are
resolved by loading the referenced file on demand. Tests that use this skip when the
spec data is not present (set DEVNET_MATRIX_SPEC_DIR to point elsewhere).
"""

from __future__ import annotations

import functools
import json
import os
import re
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


# --- Systematic response validation -------------------------------------------------
#
# `check_response(method, path, status, body)` finds the spec operation serving a request
# path (each file's `servers` basePath + its path templates; `/r0/` is accepted for `/v3/`)
# and validates the body against that status's documented schema. Statuses the spec does
# not document, and paths it does not describe (unstable/MSC endpoints), are not checked.
# The endpoint-test and integration fixtures run it on every JSON response
# (`validating_middleware`).

# Deliberate deviations and spec errata: (operation, JSON path, schema keyword, reason).
# The operation is "METHOD basePath+template" as in the failure messages; in the JSON path
# `*` matches any one key or index. An error exactly at an excluded JSON path, raised by
# that schema keyword, is ignored; nothing else is. "null" stands for a `type` error on a
# null value only; "oneOf" for a value valid under more than one alternative only.
_DEVICE_NULLS = ("client_api/devices.py sends null for an unset display_name/last_seen_*: "
                 "matrix-nio's Device schema requires the keys; Synapse does the same")
_DEVICE_FIELDS = ("display_name", "last_seen_ip", "last_seen_ts")
EXCLUSIONS: list[tuple[str, str, str, str]] = [
    *[("GET /_matrix/client/v3/devices", f"devices/*/{field}", "null", _DEVICE_NULLS)
      for field in _DEVICE_FIELDS],
    *[("GET /_matrix/client/v3/devices/{deviceId}", field, "null", _DEVICE_NULLS)
      for field in _DEVICE_FIELDS],
    ("GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}", "", "oneOf",
     "spec erratum: the 200 schema is oneOf [any object, state event], and a whole event "
     "(?format=event) is also an object, so it matches both; it should be anyOf"),
]


@functools.cache
def _operation_index() -> tuple[tuple[re.Pattern[str], str, str, str, str, int], ...]:
    """(path regex, method, operation name, file, spec path key, specificity) for every
    operation."""
    index: list[tuple[re.Pattern[str], str, str, str, str, int]] = []
    if not CLIENT_SERVER.is_dir():
        return ()
    for path in sorted(CLIENT_SERVER.glob("*.yaml")):
        spec = _load_yaml(str(path))
        bases = [server.get("variables", {}).get("basePath", {}).get("default", "")
                 for server in spec.get("servers", [])] or [""]
        for base in bases:
            for template, operations in (spec.get("paths") or {}).items():
                full = base + template
                pattern = "".join(
                    "[^/]*" if part.startswith("{") else re.escape(part)
                    for part in re.split(r"(\{[^}]+\})", full))
                pattern = pattern.replace("/v3/", "/(?:v3|r0)/")
                if full.endswith("/state/{eventType}/{stateKey}"):
                    # An empty state key's trailing slash is optional.
                    pattern = pattern.removesuffix("/[^/]*") + "(?:/[^/]*)?"
                literal = len(re.sub(r"\{[^}]+\}", "", full))
                for method in operations:
                    if method in ("get", "put", "post", "delete", "patch"):
                        index.append((re.compile(pattern), method.upper(),
                                      f"{method.upper()} {full}", path.name, template, literal))
    return tuple(index)


def find_operations(method: str, raw_path: str) -> list[tuple[str, str, str]]:
    """The most specific matching operations as (operation name, file, spec path)."""
    matches = [(literal, name, file, key)
               for regex, m, name, file, key, literal in _operation_index()
               if m == method.upper() and regex.fullmatch(raw_path)]
    if not matches:
        return []
    best = max(match[0] for match in matches)
    return [(name, file, key) for literal, name, file, key in matches if literal == best]


@functools.cache
def _response_validator(api_file: str, spec_path: str, method: str,
                        status: str) -> jsonschema.Draft202012Validator | None:
    """The validator for one documented response, or None if the spec has no JSON schema
    for that status."""
    spec = _load_yaml(str(CLIENT_SERVER / api_file))
    responses = spec["paths"][spec_path][method.lower()].get("responses", {})
    if status not in responses:
        return None
    pointer_parts: tuple[str, ...] = ("paths", spec_path, method.lower(), "responses", status)
    response = responses[status]
    if "$ref" in response:
        ref = response["$ref"]
        if not ref.startswith("#/"):
            return None
        pointer_parts = tuple(p.replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/"))
        response = spec
        for part in pointer_parts:
            response = response[part]
    if "schema" not in response.get("content", {}).get("application/json", {}):
        return None
    uri = (CLIENT_SERVER / api_file).as_uri()
    registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$ref": uri + "#" + _pointer(*pointer_parts, "content", "application/json",
                                           "schema")}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _excluded(operation: str, error: jsonschema.ValidationError) -> bool:
    path = [str(p) for p in error.absolute_path]
    kind = str(error.validator)
    if kind == "type" and error.instance is None:
        kind = "null"
    elif kind == "oneOf" and error.context:  # valid under none: a real mismatch
        kind = "oneOf-none"
    for excluded_operation, json_path, keyword, _reason in EXCLUSIONS:
        if excluded_operation != operation or keyword != kind:
            continue
        parts = json_path.split("/") if json_path else []
        if len(path) == len(parts) and all(
                p == "*" or p == q for p, q in zip(parts, path, strict=True)):
            return True
    return False


def check_response(method: str, raw_path: str, status: int, body: Any) -> str | None:
    """None if `body` matches the spec (or the spec does not document this response);
    else a message naming the operation, path, status and schema errors."""
    errcode = body.get("errcode") if isinstance(body, dict) else None
    if status == 401 and errcode in ("M_MISSING_TOKEN", "M_UNKNOWN_TOKEN"):
        # Any authenticated endpoint answers a bad access token this way (spec: "Using
        # access tokens"); an operation's documented 401 is its UIAA response.
        if isinstance(body.get("error", ""), str):
            return None
        return f"{method} {raw_path} -> 401 {errcode}: `error` is not a string"
    problems: list[str] = []
    for operation, api_file, spec_path in find_operations(method, raw_path):
        validator = _response_validator(api_file, spec_path, method, str(status))
        if validator is None:
            return None
        errors = [e for e in validator.iter_errors(body)
                  if not _excluded(operation, e)]
        if not errors:
            return None
        details = "; ".join(dict.fromkeys(
            f"at /{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:300]}"
            for e in errors[:5]))
        problems.append(f"{operation} ({api_file}): {raw_path} -> {status}"
                        f"{' ' + str(errcode) if errcode else ''}: {details}")
    return " | ".join(problems) or None


def validating_middleware(failures: list[str]) -> Any:
    """An aiohttp middleware that appends to `failures` a message for every JSON response
    whose body does not match the spec. Insert it first (outermost) so that it sees the
    bodies that error middlewares produce."""
    from aiohttp import web

    def inspect(request: web.Request, response: web.StreamResponse) -> None:
        if not isinstance(response, web.Response) or response.content_type != "application/json":
            return
        raw = response.body
        if not isinstance(raw, (bytes, bytearray)):
            return
        try:
            body = json.loads(raw)
        except ValueError:
            failures.append(f"{request.method} {request.path} -> {response.status}: "
                            "Content-Type application/json but the body is not JSON")
            return
        problem = check_response(request.method, request.rel_url.raw_path, response.status, body)
        if problem is not None:
            failures.append(problem)

    @web.middleware
    async def validate(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            inspect(request, exc)
            raise
        inspect(request, response)
        return response  # type: ignore[no-any-return]

    return validate
