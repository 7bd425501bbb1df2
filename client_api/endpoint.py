"""Endpoints declared as data: method, versioned paths, auth kind, rate limit, handler.

One registrar (client_api/registrar.py) turns the table into aiohttp routes and does
auth, body parsing, limits and error mapping for all of them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from aiohttp import web

from homeserver.accounts.requester import Requester
from homeserver.errors import BadJson, NotJson

JsonDict = dict[str, Any]


class Auth(enum.Enum):
    NONE = "none"  # no token looked at
    OPTIONAL = "optional"  # token used when present
    REQUIRED = "required"  # M_MISSING_TOKEN without one; guests refused
    GUEST_OK = "guest_ok"  # like REQUIRED but guest accounts are allowed


@attrs.frozen
class JsonResponse:
    """A non-200 or header-carrying JSON response (plain dicts mean 200)."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.define
class ClientRequest:
    """What a handler sees: the requester, path parameters, query and parsed JSON body."""

    http: web.Request
    requester: Requester | None
    path_params: Mapping[str, str]
    body: JsonDict

    @property
    def query(self) -> Mapping[str, str]:
        return self.http.query

    @property
    def user(self) -> Requester:
        """The requester of an authenticated endpoint (never None there)."""
        assert self.requester is not None
        return self.requester

    @property
    def client_ip(self) -> str:
        return self.http.remote or "unknown"


Handler = Callable[[ClientRequest], Awaitable["JsonDict | JsonResponse"]]


@attrs.frozen
class Endpoint:
    method: str
    # Paths under /_matrix/client, e.g. ("/v3/login", "/r0/login"); `{name}` captures.
    paths: tuple[str, ...]
    handler: Handler
    auth: Auth = Auth.REQUIRED
    # Action name in the `rate_limits` config, or None for no limit.
    rate_limit: str | None = None
    # Whether a JSON object body is parsed (PUT/POST); an empty body counts as {}.
    json_body: bool = True


def v3(path: str, *, r0: bool = True) -> tuple[str, ...]:
    """The usual spellings of a v3 endpoint: `/v3/...` plus the legacy `/r0/...`."""
    return (f"/v3{path}", f"/r0{path}") if r0 else (f"/v3{path}",)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads() with a hook builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json_object(raw: bytes) -> JsonDict:
    """Decode a request body: must be UTF-8 JSON (no NaN/Infinity) holding an object."""
    if not raw.strip():
        return {}
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NotJson("Content not JSON.") from None
    if not isinstance(value, dict):
        raise BadJson("Request body must be a JSON object")
    return value
