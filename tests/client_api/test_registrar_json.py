"""Response encoding (client_api/registrar.py): the fast path and its fallback give the
same JSON for everything a handler may return."""

from __future__ import annotations

import json

import pytest

from client_api.registrar import encode_json, json_response


@pytest.mark.parametrize("body", [
    {"a": 1, "b": [1, 2.5, None, True], "c": {"d": "é ☃ \U0001F600"}},
    {"tuple": (1, 2), "nested": [{"x": ""}]},
    {1: "integer key"},                 # orjson refuses non-str keys
    {"big": 2**70},                     # beyond 64 bits
    {"lone": "\ud800"},                 # a lone surrogate is not encodable as UTF-8
])
def test_encode_json_round_trips(body: object) -> None:
    encoded = encode_json(body)
    assert json.loads(encoded) == json.loads(json.dumps(body))
    # Compact, and byte for byte what `json` gives (ASCII-escaped only on the fallback).
    ascii_form = json.dumps(body, separators=(",", ":")).encode()
    utf8_form = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    assert encoded in (utf8_form, ascii_form)


def test_json_response_is_utf8_json() -> None:
    response = json_response({"k": "é"}, 201, {"X-Test": "1"})
    assert response.status == 201
    assert response.content_type == "application/json"
    assert response.charset == "utf-8"
    assert response.body == '{"k":"é"}'.encode()
    assert response.headers["X-Test"] == "1"
