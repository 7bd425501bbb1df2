"""Upload endpoints and the media config, declared for the client API's registrar.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixmediav3upload
These are ordinary table endpoints with `json_body=False`: the registrar does auth,
rate limits and error mapping, and leaves the body unread so it is streamed to disk
here, chunk by chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict
from homeserver.errors import BadRequest, InvalidParam
from homeserver.types import is_valid_server_name
from media_repo.repository import MediaRepository, is_valid_media_id
from media_repo.thumbnails import Thumbnails

CHUNK_SIZE = 64 * 1024
UPLOAD_RATE_LIMIT = "media_upload"
MAX_FILENAME_LENGTH = 255


class MediaUploads:
    def __init__(self, repository: MediaRepository, thumbnails: Thumbnails):
        self._repo = repository
        self._thumbnails = thumbnails

    def endpoints(self) -> list[Endpoint]:
        """Paths are under /_matrix (register with prefix="/_matrix")."""
        return [
            Endpoint("POST", ("/media/v3/upload", "/media/r0/upload"), self.upload_content,
                     rate_limit=UPLOAD_RATE_LIMIT, json_body=False),
            Endpoint("POST", ("/media/v1/create",), self.create_content,
                     rate_limit=UPLOAD_RATE_LIMIT),
            Endpoint("PUT", ("/media/v3/upload/{serverName}/{mediaId}",), self.upload_content_to_mxc,
                     rate_limit=UPLOAD_RATE_LIMIT, json_body=False),
            Endpoint("GET", ("/client/v1/media/config", "/media/v3/config", "/media/r0/config"),
                     self.get_config, auth=Auth.GUEST_OK),
        ]

    async def upload_content(self, req: ClientRequest) -> JsonDict:
        """POST /_matrix/media/v3/upload"""
        media_id = await self._store_body(req, None)
        return {"content_uri": f"mxc://{self._repo.server_name}/{media_id}"}

    async def create_content(self, req: ClientRequest) -> JsonDict:
        """POST /_matrix/media/v1/create"""
        media_id, expires = await self._repo.create_pending(req.user.user_id)
        return {"content_uri": f"mxc://{self._repo.server_name}/{media_id}",
                "unused_expires_at": expires}

    async def upload_content_to_mxc(self, req: ClientRequest) -> JsonDict:
        """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}"""
        server_name, media_id = req.path_params["serverName"], req.path_params["mediaId"]
        if not is_valid_server_name(server_name) or not is_valid_media_id(media_id):
            raise InvalidParam("Invalid server name or media ID")
        if server_name != self._repo.server_name:
            raise BadRequest("Media can only be uploaded to this server")
        await self._store_body(req, media_id)
        return {}

    async def get_config(self, req: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v1/media/config"""
        return {"m.upload.size": self._repo.config.max_upload_size}

    async def _store_body(self, req: ClientRequest, media_id: str | None) -> str:
        filename = req.query.get("filename")
        if filename is not None and (len(filename) > MAX_FILENAME_LENGTH or not filename
                                     or any(ord(c) < 32 or c == "\x7f" for c in filename)):
            raise InvalidParam("Invalid filename")
        http = req.http
        media_id = await self._repo.upload(
            req.user.user_id, _chunks(http.content), content_type=http.headers.get("Content-Type"),
            filename=filename, content_length=http.content_length, media_id=media_id)
        await self._thumbnails.pregenerate(await self._repo.get(self._repo.server_name, media_id))
        return media_id


async def _chunks(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream.iter_chunked(CHUNK_SIZE):
            yield chunk
    except (aiohttp.ClientPayloadError, ConnectionError):
        # The client went away mid-body (the repository has removed the partial file).
        raise BadRequest("Upload body incomplete") from None
