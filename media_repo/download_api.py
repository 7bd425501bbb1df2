"""Download and thumbnail endpoints: authenticated (spec v1.11) and legacy.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediadownloadservernamemediaid
They answer with a file, not JSON, so they are plain aiohttp routes rather than table
endpoints; auth follows the registrar exactly (same token extraction, same
Authenticator, guests allowed as for Auth.GUEST_OK), and errors are raised as
MatrixError for the registrar's plain-route wrapper (Registrar.add_plain_routes) to map.

Legacy unauthenticated /_matrix/media/v3/download|thumbnail serve media per
`media.legacy_unauthenticated_media`: all, none, or only media created before
`legacy_unauthenticated_cutoff_ms` (the spec's "freeze"); the rest is 404 M_NOT_FOUND
as the spec asks. Remote media is served only from the local cache (404 otherwise)
until federation fetches it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from client_api.registrar import Authenticator, access_token_from
from homeserver.errors import InvalidParam, MissingParam, MissingToken, NotFound
from homeserver.storage.media import MediaInfo
from homeserver.types import is_valid_server_name
from media_repo.repository import MediaRepository, is_valid_media_id
from media_repo.serving import serve_file
from media_repo.thumbnails import Thumbnails

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

AUTHENTICATED = "/_matrix/client/v1/media"
LEGACY = ("/_matrix/media/v3", "/_matrix/media/r0")


class MediaDownloads:
    def __init__(self, repository: MediaRepository, thumbnails: Thumbnails,
                 authenticator: Authenticator):
        self._repo = repository
        self._thumbnails = thumbnails
        self._auth = authenticator

    def add_routes(self, app: web.Application) -> None:
        for prefix, authenticated in ((AUTHENTICATED, True), *((p, False) for p in LEGACY)):
            download = self._download(authenticated)
            app.router.add_get(prefix + "/download/{serverName}/{mediaId}", download)
            app.router.add_get(prefix + "/download/{serverName}/{mediaId}/{fileName}", download)
            app.router.add_get(prefix + "/thumbnail/{serverName}/{mediaId}",
                               self._thumbnail(authenticated))

    def _download(self, authenticated: bool) -> Handler:
        async def get_content(request: web.Request) -> web.StreamResponse:
            """GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]"""
            media = await self._media(request, authenticated)
            filename = request.match_info.get("fileName") or media.filename
            assert media.sha256 is not None
            return serve_file(self._repo.path_for(media.sha256), media.content_type, filename,
                              authenticated=authenticated)
        return get_content

    def _thumbnail(self, authenticated: bool) -> Handler:
        async def get_content_thumbnail(request: web.Request) -> web.StreamResponse:
            """GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"""
            width, height = _dimension(request, "width"), _dimension(request, "height")
            method = request.query.get("method", "scale")
            if method not in ("scale", "crop"):
                raise InvalidParam("method must be scale or crop")
            animated = _boolean(request, "animated")
            media = await self._media(request, authenticated)
            thumb, path = await self._thumbnails.get(media, width, height, method, animated)
            return serve_file(path, thumb.content_type, None, authenticated=authenticated)
        return get_content_thumbnail

    async def _media(self, request: web.Request, authenticated: bool) -> MediaInfo:
        if authenticated:
            await self._authenticate(request)
        server_name, media_id = request.match_info["serverName"], request.match_info["mediaId"]
        if not is_valid_server_name(server_name):
            raise InvalidParam("Invalid server name")
        if not is_valid_media_id(media_id):
            raise InvalidParam("Invalid media ID")
        media = await self._repo.get(server_name, media_id, wait_ms=_timeout_ms(request))
        if not authenticated and not self._legacy_allowed(media):
            raise NotFound("Media not found (use the authenticated media endpoints)")
        return media

    async def _authenticate(self, request: web.Request) -> None:
        token = access_token_from(request)
        if token is None:
            raise MissingToken("Missing access token")
        # Guests may read media, as Auth.GUEST_OK endpoints allow them.
        await self._auth.authenticate(token)

    def _legacy_allowed(self, media: MediaInfo) -> bool:
        config = self._repo.config
        policy = config.legacy_unauthenticated_media
        if policy == "all":
            return True
        if policy == "none":
            return False
        return media.created_ts < config.legacy_unauthenticated_cutoff_ms


# Spec: `timeout_ms` (default 20 s) bounds the wait for an async upload's body; a cap
# keeps one request from pinning a handler for long.
DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 120_000


def _timeout_ms(request: web.Request) -> int:
    raw = request.query.get("timeout_ms")
    if raw is None:
        return DEFAULT_TIMEOUT_MS
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParam("'timeout_ms' must be an integer") from None
    if value < 0:
        raise InvalidParam("'timeout_ms' must not be negative")
    return min(value, MAX_TIMEOUT_MS)


def _dimension(request: web.Request, name: str) -> int:
    raw = request.query.get(name)
    if raw is None:
        raise MissingParam(f"Missing {name}")
    if not raw.isdigit() or not 0 < int(raw) <= 1_000_000:
        raise InvalidParam(f"{name} must be a positive integer")
    return int(raw)


def _boolean(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false")
    if raw not in ("true", "false"):
        raise InvalidParam(f"{name} must be true or false")
    return raw == "true"
