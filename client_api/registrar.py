"""Turns endpoint tables into an aiohttp application.

Everything cross-cutting happens here, once: CORS, request IDs, body caps, JSON parsing,
access-token auth, rate limits and the mapping of every error to the Matrix error format
(spec: https://spec.matrix.org/v1.19/client-server-api/#api-standards).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import orjson
from aiohttp import web

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonResponse, parse_json_object
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


def error_response(err: MatrixError) -> web.Response:
    headers = {}
    if err.status == 429 and "retry_after_ms" in err.extra:
        headers["Retry-After"] = str(max(1, int(err.extra["retry_after_ms"]) // 1000))
    return json_response(err.to_json(), err.status, headers)


def access_token_from(request: web.Request) -> str | None:
    """Bearer header first; the `access_token` query parameter is deprecated but allowed."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return request.query.get("access_token") or None


@web.middleware
async def cors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """CORS for every client API response; preflight requests are answered here."""
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=204)
    else:
        response = await handler(request)
    response.headers.update(CORS_HEADERS)
    return response


@web.middleware
async def matrix_error_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Request IDs and the Matrix error format for every request, routed or not.

    Shared by the client and federation listeners: both speak the same error format.
    """
    token = request_id.set(f"{request.method}-{secrets.token_hex(4)}")
    try:
        return await _dispatch(request, handler)
    finally:
        request_id.reset(token)


async def _dispatch(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except MatrixError as e:
        if e.status >= 500:
            logger.error("%s %s: %s", request.method, request.path, e.error)
        return error_response(e)
    except web.HTTPMethodNotAllowed:
        return error_response(MethodNotAllowed("Unrecognized request: method not allowed"))
    except web.HTTPNotFound:
        return error_response(Unrecognized("Unrecognized request"))
    except web.HTTPRequestEntityTooLarge:
        return error_response(TooLarge("Request body too large"))
    except web.HTTPException as e:
        if e.status >= 400:
            return json_response({"errcode": "M_UNKNOWN", "error": e.reason}, e.status)
        raise
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return json_response({"errcode": "M_UNKNOWN", "error": "Internal server error"}, 500)


class Registrar:
    """Wraps each endpoint's handler with auth, body parsing and rate limiting."""

    def __init__(self, authenticator: Authenticator, rate_limiter: RateLimiter, max_body_bytes: int):
        self._auth = authenticator
        self._limiter = rate_limiter
        self._max_body = max_body_bytes

    def add_routes(self, app: web.Application, endpoints: Iterable[Endpoint], prefix: str = CLIENT_PREFIX) -> None:
        for endpoint in endpoints:
            wrapped = self._wrap(endpoint)
            for path in endpoint.paths:
                app.router.add_route(endpoint.method, prefix + path, wrapped)

    def _wrap(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def route(http: web.Request) -> web.StreamResponse:
            requester = await self._requester(http, endpoint.auth)
            if endpoint.rate_limit is not None:
                key = requester.user_id if requester else (http.remote or "unknown")
                self._limiter.check(endpoint.rate_limit, key)
            body: dict[str, Any] = {}
            # DELETE too: e.g. DELETE /devices/{deviceId} carries the UIAA `auth` body.
            if endpoint.json_body and http.method in ("POST", "PUT", "DELETE"):
                body = parse_json_object(await self._read_body(http))
            result = await endpoint.handler(ClientRequest(http, requester, http.match_info, body))
            if isinstance(result, JsonResponse):
                return json_response(result.body, result.status, dict(result.headers))
            return json_response(result)

        route.__name__ = endpoint.handler.__name__
        return route

    async def _read_body(self, http: web.Request) -> bytes:
        if http.content_length is not None and http.content_length > self._max_body:
            raise TooLarge(f"Request body over {self._max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in http.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self._max_body:
                raise TooLarge(f"Request body over {self._max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

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


def create_app(max_body_bytes: int) -> web.Application:
    # aiohttp's own cap is set a little above ours so that our handler produces the
    # Matrix error (M_TOO_LARGE) for most oversized bodies.
    # CORS is outermost so that error responses carry its headers too.
    return web.Application(middlewares=[cors_middleware, matrix_error_middleware],
                           client_max_size=max_body_bytes + 1024)
