"""Routing (client_api/registrar.py): the registrar's table lookup matches exactly what
aiohttp's own router would match for the same routes in the same order, and every route
of the client application goes through the registrar (CORS, Matrix errors)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_urldispatcher import MatchInfoError

import homeserver.server as server_module
from client_api.endpoint import Endpoint
from client_api.registrar import CLIENT_PREFIX, Registrar, _Fallback
from client_api.routing import Template
from homeserver.server import Homeserver
from tests.conftest import make_config

METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
# Values for every `{name}` of a path: plain, percent-encoded slash and percent, braces
# (not a segment for aiohttp), a decoded newline, and an empty segment.
VALUES = ("!room%3Aserver", "a%2Fb%25", "%7Bx%7D", "a%0Ab", "")
TAILS = ("", "a/b", "a%0Ab", "a%2Fb/")


class RecordingRegistrar(Registrar):
    """Also registers every route the plain aiohttp way on `reference`, in the same order."""

    last: RecordingRegistrar

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.reference = web.Application()
        self.paths: list[str] = []
        self._wrapped: dict[int, Any] = {}
        RecordingRegistrar.last = self

    def _wrap(self, endpoint: Endpoint) -> Any:
        wrapped = self._wrapped[id(endpoint)] = super()._wrap(endpoint)
        return wrapped

    def add_routes(self, app: web.Application, endpoints: Any, prefix: str = CLIENT_PREFIX) -> None:
        endpoints = list(endpoints)
        super().add_routes(app, endpoints, prefix)
        for endpoint in endpoints:
            for path in endpoint.paths:
                self.reference.router.add_route(endpoint.method, prefix + path,
                                                self._wrapped[id(endpoint)])
                self.paths.append(prefix + path)

    def add_plain_routes(self, app: web.Application, add: Any) -> None:
        super().add_plain_routes(app, add)
        before = len(self.reference.router.resources())
        add(self.reference)
        self.paths += [r.canonical for r in list(self.reference.router.resources())[before:]]


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[web.Application, RecordingRegistrar]:
    monkeypatch.setattr(server_module, "Registrar", RecordingRegistrar)
    hs = Homeserver(make_config(tmp_path, {"engine": "sqlite", "path": "hs.db"}))
    return hs.client_app(), RecordingRegistrar.last


def concrete_paths(template: str) -> set[str]:
    """Request paths near a route's path: its variables filled in several ways, plus a
    segment more, a trailing slash and a segment less."""
    paths = set()
    for value, tail in itertools.product(VALUES, TAILS):
        path = re.sub(r"\{[^{}:]+:\.\*\}", tail, template)
        paths.add(re.sub(r"\{[^{}]+\}", value, path))
    path = min(paths)
    return paths | {path + "/extra", path + "/", path.rpartition("/")[0] or "/"}


async def outcome(app: web.Application, method: str, path: str) -> tuple[Any, ...]:
    request = make_mocked_request(method, path, app=app)
    match = await app.router.resolve(request)
    if isinstance(match, MatchInfoError):
        return ("error", match.http_exception.status)
    if isinstance(match.route.resource, _Fallback):
        return ("error", (await match.handler(request)).status)
    handler = match.handler
    # Plain routes are wrapped in the real app: compare them by name.
    key = handler.__name__ if handler.__qualname__.startswith("_plain.") else handler
    return ("route", key, dict(match))


async def test_table_lookup_matches_aiohttp_routing(apps: tuple[web.Application, RecordingRegistrar]) -> None:
    app, registrar = apps
    reference = registrar.reference
    paths = set().union(*(concrete_paths(p) for p in registrar.paths))
    paths |= {"/", "//", "/not-matrix", "/_matrix", "/_matrix/client", "/_matrix/client/v3/rooms",
              "/_matrix/client/v3/rooms/", "/_matrix//client/v3/sync", "/_matrix/client/v3/sync/"}
    compared = matched = 0
    for path, method in itertools.product(sorted(paths), METHODS):
        expected = await outcome(reference, method, path)
        got = await outcome(app, method, path)
        if expected[0] == "route" and not expected[1].__qualname__.startswith("Registrar."):
            # a plain route of the reference: compare by name
            expected = ("route", expected[1].__name__, expected[2])
        assert got == expected, (method, path)
        compared += 1
        matched += expected[0] == "route"
    assert compared > 4_000 and matched > 500, (compared, matched)


async def handler(request: Any) -> dict[str, Any]:
    return {}


async def test_overlapping_paths_resolve_as_aiohttp_would() -> None:
    """Paths that several routes match: the earliest registered with the method wins,
    the same path under other variable names is still its own route, 405 lists all."""
    from homeserver.clock import FakeClock
    from homeserver.config import RateLimit
    from homeserver.ratelimit import RateLimiter
    from tests.client_api.sync_harness import FakeAuthenticator

    limiter = RateLimiter({"default": RateLimit(per_second=1, burst=1)}, FakeClock())
    registrar = RecordingRegistrar(FakeAuthenticator(), limiter, 1024)
    app = web.Application()
    registrar.add_routes(app, [Endpoint(m, (p,), handler) for m, p in (
        ("GET", "/v3/a/{x}/b"),
        ("GET", "/v3/a/c/{y}"),
        ("PUT", "/v3/a/c/{y}"),
        ("PUT", "/v3/a/{z}/b"),
        ("POST", "/v3/a/{x}/{rest:.*}"),
        ("GET", "/v3/a/{x}/{rest:.*}"),
        ("DELETE", "/v3/a/{x}/b"),
        ("GET", "/v3/a/c/b"),
        ("PUT", "/v3/a"),
    )])
    paths = {"/_matrix/client/v3/a" + rest for rest in (
        "", "/", "/c", "/c/b", "/c/d", "/x/b", "/c/b/", "/c/b/e", "/x/y/z", "/%7B/b", "/c/%7B")}
    for path, method in itertools.product(sorted(paths), METHODS):
        assert await outcome(app, method, path) == await outcome(registrar.reference, method, path), (
            method, path)


async def test_every_route_goes_through_the_registrar(apps: tuple[web.Application, RecordingRegistrar]) -> None:
    app, registrar = apps
    routes = list(app.router.routes())
    # All of the reference's routes, and the fallback.
    assert len(routes) == len(registrar.reference.router.routes()) + 1
    for route in routes:
        assert route.handler.__module__ == "client_api.registrar", route


async def test_options_preflight_on_any_path(apps: tuple[web.Application, RecordingRegistrar]) -> None:
    app, _ = apps
    for path in ("/_matrix/client/v3/sync", "/_matrix/client/v3/rooms/!r:x/send/m.room.message/1",
                 "/_matrix/client/v1/media/download/x/y", "/nowhere"):
        request = make_mocked_request("OPTIONS", path, app=app)
        match = await app.router.resolve(request)
        response = await match.handler(request)
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_unsupported_paths_are_refused() -> None:
    with pytest.raises(ValueError):
        Template.parse("/a/{tail:.*}/b")
    with pytest.raises(ValueError):
        Template.parse("/a/{id:[0-9]+}")
    with pytest.raises(ValueError):
        Template.parse("/a/prefix{id}")
