"""Route lookup for the client application: one aiohttp resource per index key.

aiohttp indexes a resource under its path up to the last "/" before the first variable
and tries the resources under a key one by one, a regex each: /rooms/{roomId}/send/...
was the 16th of 24 under /_matrix/client/v3/rooms. A `Bucket` is the one resource
under such a key for every table path sharing it; it finds the path by its segment
shape in a dict. Matching is aiohttp's: `{name}` is one non-empty segment without
braces, `{name:.*}` (last segment only) is the rest of the path, values are decoded as
aiohttp decodes them, and among paths that match, the earliest registered with the
request's method wins (405 if there is none). tests/client_api/test_registrar_routing.py
compares it with aiohttp's own router.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from yarl import URL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_VARIABLE = re.compile(r"\{([_a-zA-Z][_a-zA-Z0-9]*)(:\.\*)?\}")
_LITERAL = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]*")


def _unquote(value: str) -> str:
    # What aiohttp does to a matched value of the already-decoded path (`path_safe`).
    if "%" not in value:
        return value
    return value.replace("%2F", "/").replace("%25", "%")


class Template:
    """A table path relative to its bucket key: literal and `{name}` segments by
    position, and an optional trailing `{name:.*}`."""

    def __init__(self, key: str, segments: list[str], variables: list[tuple[int, str]],
                 tail: str | None):
        self.key = key
        self.segments = segments  # literal values; "" where a variable is
        self.size = len(segments)  # fixed segments (the tail excluded)
        literal_at = tuple(i for i in range(self.size) if i not in dict(variables))
        self.getter = _getter(literal_at)
        self.literals = self.getter(segments)
        self.variables = variables
        self.tail = tail
        self.routes: dict[str, tuple[int, web.ResourceRoute]] = {}

    @classmethod
    def parse(cls, path: str) -> Template:
        # The key aiohttp would index this path under.
        key = path.partition("{")[0].rpartition("/")[0] if "{" in path else path
        key = key.rstrip("/") or "/"
        rest = path[0 if key == "/" else len(key):]
        segments = rest[1:].split("/") if rest else []
        variables, tail = [], None
        for i, segment in enumerate(segments):
            if (match := _VARIABLE.fullmatch(segment)) is not None:
                if match.group(2) and i != len(segments) - 1:
                    raise ValueError(f"{path}: {{name:.*}} must be the last segment")
                if match.group(2):
                    tail = match.group(1)
                else:
                    variables.append((i, match.group(1)))
                segments[i] = ""
            elif not _LITERAL.fullmatch(segment):
                raise ValueError(f"{path}: unsupported segment {segment!r}")
        if tail is not None:
            segments.pop()
        return cls(key, segments, variables, tail)

    def shape(self) -> tuple[object, ...]:
        return (self.size, tuple(self.segments), tuple(self.variables), self.tail)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """Path values if the literals (already known to be equal) come with valid variables."""
        params = {}
        for i, name in self.variables:
            value = segments[i]
            if not value or "{" in value or "}" in value:
                return None
            params[name] = _unquote(value)
        if self.tail is not None:
            tail = "/".join(segments[self.size:])
            if "\n" in tail:  # aiohttp's `.*` stops at a newline (a decoded %0A)
                return None
            params[self.tail] = _unquote(tail)
        return params


class Resource(web.AbstractResource):
    """What aiohttp asks of a resource beyond `resolve`, for the two kinds below."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    @property
    def canonical(self) -> str:
        # Gives `key` as aiohttp's index key (the path up to the last "/" before a "{").
        return ("" if self.key == "/" else self.key) + "/{path}"

    def routes(self) -> list[web.ResourceRoute]:
        raise NotImplementedError

    def url_for(self, **kwargs: str) -> URL:
        raise NotImplementedError("table routes are not reversible")

    def add_prefix(self, prefix: str) -> None:
        raise NotImplementedError("table routes are not mounted in sub-applications")

    def get_info(self) -> dict[str, Any]:  # type: ignore[override]
        return {"path": self.key, "methods": sorted({r.method for r in self.routes()})}

    def raw_match(self, path: str) -> bool:
        return False  # never reused by aiohttp's add_route

    def __len__(self) -> int:
        return len(self.routes())

    def __iter__(self) -> Iterator[web.ResourceRoute]:
        return iter(self.routes())


class Bucket(Resource):
    def __init__(self, key: str):
        super().__init__(key)
        self._cut = 0 if key == "/" else len(key)
        self._templates: dict[tuple[object, ...], Template] = {}
        # Segment count -> literal positions' getter -> literal values -> templates.
        self._fixed: dict[int, dict[Callable[[list[str]], object], dict[object, list[Template]]]] = {}
        self._tails: list[Template] = []
        self._count = 0

    def add(self, template: Template, method: str, handler: Handler) -> None:
        template = self._templates.setdefault(template.shape(), template)
        route = web.ResourceRoute(method, handler, self)
        if route.method in template.routes:
            raise ValueError(f"{route.method} {self.key}: path registered twice")
        template.routes[route.method] = (self._count, route)
        self._count += 1
        if len(template.routes) > 1:
            return
        if template.tail is not None:
            self._tails.append(template)
            return
        table = self._fixed.setdefault(template.size, {}).setdefault(template.getter, {})
        table.setdefault(template.literals, []).append(template)

    def routes(self) -> list[web.ResourceRoute]:
        return [route for t in self._templates.values() for _, route in t.routes.values()]

    async def resolve(self, request: web.Request) -> tuple[web.UrlMappingMatchInfo | None, set[str]]:
        path = request.rel_url.path_safe
        rest = path[self._cut:]
        if not path.startswith(self.key) or (rest and rest[0] != "/"):
            return None, set()
        segments = rest[1:].split("/") if rest else []
        found = []
        for getter, table in self._fixed.get(len(segments), _NO_GROUPS).items():
            for template in table.get(getter(segments), ()):
                if (params := template.match(segments)) is not None:
                    found.append((template, params))
        for template in self._tails:
            if (len(segments) > template.size and template.getter(segments) == template.literals
                    and (params := template.match(segments)) is not None):
                found.append((template, params))
        method = request.method
        best: tuple[int, web.ResourceRoute, dict[str, str]] | None = None
        for template, params in found:
            entry = template.routes.get(method)
            if entry is not None and (best is None or entry[0] < best[0]):
                best = (entry[0], entry[1], params)
        if best is not None:
            return web.UrlMappingMatchInfo(best[2], best[1]), set()
        return None, {method for template, _ in found for method in template.routes}


_getters: dict[tuple[int, ...], Callable[[list[str]], object]] = {}
_NO_GROUPS: dict[Callable[[list[str]], object], dict[object, list[Template]]] = {}


def _getter(positions: tuple[int, ...]) -> Callable[[list[str]], object]:
    """One shared getter per set of literal positions, so that it can key a dict."""
    if positions not in _getters:
        _getters[positions] = operator.itemgetter(*positions) if positions else _no_literals
    return _getters[positions]


def _no_literals(segments: list[str]) -> object:
    return ()


