"""Turns endpoint tables into an aiohttp application.

Everything cross-cutting happens here, once: CORS, request IDs, body caps, JSON parsing,
access-token auth, rate limits and the mapping of every error to the Matrix error format
(spec: https://spec.matrix.org/v1.19/client-server-api/#api-standards).

The client application has no aiohttp middleware: each route this module makes does all
of the above in one frame, and a catch-all resource answers CORS preflights and unknown
paths or methods (404/405 M_UNRECOGNIZED). Middlewares cost three extra coroutine frames
on every request, and per-request CPU is what limits the send benchmark.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import orjson
from aiohttp import web
from multidict import CIMultiDict

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonResponse, parse_json_object
from client_api.routing import Bucket, Resource, Template
from homeserver.accounts.requester import Requester
from homeserver.errors import (
    GuestAccessForbidden,
    MatrixError,
    MethodNotAllowed,
    MissingToken,
    TooLarge,
    Unrecognized,
)
from homeserver.log_context import request_id
from homeserver.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

CLIENT_PREFIX = "/_matrix/client"

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}
# Every JSON answer of the client API starts as a copy of these (one C-level copy
# instead of parsing a content type and adding three headers per response).
_CLIENT_JSON_HEADERS = CIMultiDict({"Content-Type": "application/json; charset=utf-8",
                                    **CORS_HEADERS})
_BODY_METHODS = frozenset(("POST", "PUT", "DELETE"))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Request IDs only tell log lines apart: a counter from a random start is unique within
# the process and as unlikely as random IDs to repeat across processes.
_request_ids = itertools.count(secrets.randbits(32))


def _new_request_id(method: str) -> str:
    return f"{method}-{next(_request_ids) & 0xFFFFFFFF:08x}"


class Authenticator(Protocol):
    async def authenticate(self, access_token: str) -> Requester: ...


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=encode_json(body), status=status, content_type="application/json",
                        charset="utf-8", headers=headers)


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON. orjson is several times faster than `json` on big /sync
    bodies; what it refuses (integer dict keys, integers beyond 64 bits, lone
    surrogates) goes through `json`, escaped to ASCII so any string encodes."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":")).encode()


def _error_headers(err: MatrixError) -> dict[str, str]:
    if err.status == 429 and "retry_after_ms" in err.extra:
        return {"Retry-After": str(max(1, int(err.extra["retry_after_ms"]) // 1000))}
    return {}


def _client_json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A client API JSON response, CORS headers included."""
    response = web.Response(body=encode_json(body), status=status, headers=_CLIENT_JSON_HEADERS)
    if headers:
        response.headers.update(headers)
    return response


def _client_error(err: MatrixError) -> web.Response:
    return _client_json(err.to_json(), err.status, _error_headers(err))


def _failure(request: web.Request, exc: Exception, cors: bool) -> web.Response | None:
    """The Matrix error answering `exc`, or None for a non-error HTTPException (re-raised).

    Called from an `except` block, so unexpected errors are logged with their traceback."""
    respond = _client_json if cors else json_response
    if isinstance(exc, MatrixError):
        if exc.status >= 500:
            logger.error("%s %s: %s", request.method, request.path, exc.error)
        err = exc
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        err = MethodNotAllowed("Unrecognized request: method not allowed")
    elif isinstance(exc, web.HTTPNotFound):
        err = Unrecognized("Unrecognized request")
    elif isinstance(exc, web.HTTPRequestEntityTooLarge):
        err = TooLarge("Request body too large")
    elif isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        return respond({"errcode": "M_UNKNOWN", "error": exc.reason}, exc.status)
    else:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return respond({"errcode": "M_UNKNOWN", "error": "Internal server error"}, 500)
    return respond(err.to_json(), err.status, _error_headers(err))


def access_token_from(request: web.Request) -> str | None:
    """Bearer header first; the `access_token` query parameter is deprecated but allowed."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if token and scheme.lower() == "bearer":
            return token
        return None
    return request.query.get("access_token") or None


@web.middleware
async def matrix_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request IDs and the Matrix error format for every request, routed or not: the
    federation listener's counterpart of what client API routes do themselves."""
    token = request_id.set(_new_request_id(request.method))
    try:
        return await handler(request)
    except Exception as exc:
        response = _failure(request, exc, cors=False)
        if response is None:
            raise
        return response
    finally:
        request_id.reset(token)


class Registrar:
    """Wraps each endpoint's handler with auth, body parsing, rate limiting, CORS and
    the error format, and routes the table's paths (client_api/routing.py)."""

    def __init__(self, authenticator: Authenticator, rate_limiter: RateLimiter, max_body_bytes: int):
        self._auth = authenticator
        self._limiter = rate_limiter
        self._max_body = max_body_bytes

    def add_routes(self, app: web.Application, endpoints: Iterable[Endpoint], prefix: str = CLIENT_PREFIX) -> None:
        buckets = {r.key: r for r in app.router.resources() if isinstance(r, Bucket)}
        for endpoint in endpoints:
            wrapped = self._wrap(endpoint)
            for path in endpoint.paths:
                template = Template.parse(prefix + path)
                bucket = buckets.get(template.key)
                if bucket is None:
                    bucket = buckets[template.key] = Bucket(template.key)
                    app.router.register_resource(bucket)
                bucket.add(template, endpoint.method, wrapped)

    def add_plain_routes(self, app: web.Application, add: Callable[[web.Application], object]) -> None:
        """Routes that answer with more than JSON (files, WebSockets): `add` registers them
        on a scratch application; they are copied here behind CORS and the error format."""
        scratch = web.Application()
        add(scratch)
        for resource in scratch.router.resources():
            path = _plain_path(resource)
            for route in resource:
                app.router.add_route(route.method, path, _plain(route.handler))

    def _wrap(self, endpoint: Endpoint) -> Handler:
        handler, auth, action = endpoint.handler, endpoint.auth, endpoint.rate_limit
        json_body = endpoint.json_body
        requester_for, limiter, read_body = self._requester, self._limiter, self._read_body

        async def route(http: web.Request) -> web.StreamResponse:
            token = request_id.set(_new_request_id(http.method))
            try:
                requester = None if auth is Auth.NONE else await requester_for(http, auth)
                if action is not None:
                    limiter.check(action, requester.user_id if requester else (http.remote or "unknown"))
                body: dict[str, Any] = {}
                # DELETE too: e.g. DELETE /devices/{deviceId} carries the UIAA `auth` body.
                if json_body and http.method in _BODY_METHODS:
                    body = parse_json_object(await read_body(http))
                result = await handler(ClientRequest(http, requester, http.match_info, body))
                if isinstance(result, JsonResponse):
                    return _client_json(result.body, result.status, result.headers)
                return _client_json(result)
            except Exception as exc:
                response = _failure(http, exc, cors=True)
                if response is None:
                    raise
                return response
            finally:
                request_id.reset(token)

        route.__name__ = endpoint.handler.__name__
        return route

    async def _read_body(self, http: web.Request) -> bytes:
        if http.content_length is not None and http.content_length > self._max_body:
            raise TooLarge(f"Request body over {self._max_body} bytes")
        content = http.content
        if content.is_eof():
            # The usual case: a small body arrived with the headers and is all buffered.
            raw = content.read_nowait()
        else:
            chunks: list[bytes] = []
            size = 0
            async for chunk in content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > self._max_body:
                    raise TooLarge(f"Request body over {self._max_body} bytes")
                chunks.append(chunk)
            raw = b"".join(chunks)
        if len(raw) > self._max_body:
            raise TooLarge(f"Request body over {self._max_body} bytes")
        return raw

    async def _requester(self, http: web.Request, auth: Auth) -> Requester | None:
        if auth is Auth.NONE:
            return None
        token = access_token_from(http)
        if token is None:
            if auth is Auth.OPTIONAL:
                return None
            raise MissingToken("Missing access token")
        requester = await self._auth.authenticate(token)
        if requester.is_guest and auth is Auth.REQUIRED:
            raise GuestAccessForbidden("Guest access not allowed")
        return requester


def _plain_path(resource: web.AbstractResource) -> str:
    """The path to register a copy of `resource` under (custom regexes would not survive)."""
    if isinstance(resource, web.PlainResource):
        return resource.canonical
    if isinstance(resource, web.DynamicResource):
        path = resource.canonical
        if web.DynamicResource(path).get_info()["pattern"] == resource.get_info()["pattern"]:
            return path
    raise ValueError(f"cannot copy {resource!r}")


def _plain(handler: Handler) -> Handler:
    async def route(request: web.Request) -> web.StreamResponse:
        token = request_id.set(_new_request_id(request.method))
        try:
            response = await handler(request)
        except Exception as exc:
            error = _failure(request, exc, cors=True)
            if error is None:
                raise
            return error
        finally:
            request_id.reset(token)
        response.headers.update(CORS_HEADERS)
        return response

    route.__name__ = handler.__name__
    return route


class _Fallback(Resource):
    """Indexed under "/", so reached only when no other resource matched: CORS
    preflights (204) and unknown paths or methods (404/405 M_UNRECOGNIZED)."""

    def __init__(self, router: web.UrlDispatcher):
        super().__init__("/")
        self._router = router
        self._route = web.ResourceRoute("*", self._answer, self)

    def routes(self) -> list[web.ResourceRoute]:
        return [self._route]

    async def resolve(self, request: web.Request) -> tuple[web.UrlMappingMatchInfo | None, set[str]]:
        return web.UrlMappingMatchInfo({}, self._route), set()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=CORS_HEADERS)
        allowed: set[str] = set()
        for resource in self._router.resources():
            if resource is not self:
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            return _client_error(MethodNotAllowed("Unrecognized request: method not allowed"))
        return _client_error(Unrecognized("Unrecognized request"))


def create_app(max_body_bytes: int) -> web.Application:
    # aiohttp's own cap is set a little above ours so that our handler produces the
    # Matrix error (M_TOO_LARGE) for most oversized bodies.
    app = web.Application(client_max_size=max_body_bytes + 1024)
    app.router.register_resource(_Fallback(app.router))
    return app
