"""GET /_matrix/client/v1/media/preview_url (and the legacy /_matrix/media/v3 path).

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediapreview_url
When `media.url_preview.enabled` is off the endpoint answers 404 M_UNRECOGNIZED, as for
an endpoint the server does not implement: that is what Synapse answers with previews
off, and clients (Element among them) then simply show no preview.
"""

from __future__ import annotations

from client_api.endpoint import ClientRequest, Endpoint, JsonDict
from homeserver.errors import InvalidParam, MissingParam, Unrecognized
from media_repo.url_fetch import is_fetchable_url
from media_repo.url_preview import UrlPreviewer

PREVIEW_RATE_LIMIT = "media_preview"


class UrlPreviewApi:
    def __init__(self, previewer: UrlPreviewer | None):
        self._previewer = previewer  # None: previews are off

    def endpoints(self) -> list[Endpoint]:
        """Paths are under /_matrix (register with prefix="/_matrix")."""
        return [Endpoint("GET", ("/client/v1/media/preview_url", "/media/v3/preview_url",
                                 "/media/r0/preview_url"), self.preview_url,
                         rate_limit=PREVIEW_RATE_LIMIT)]

    async def preview_url(self, req: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v1/media/preview_url"""
        if self._previewer is None:
            raise Unrecognized("URL previews are disabled on this server")
        url = req.query.get("url")
        if url is None:
            raise MissingParam("Missing url")
        if not is_fetchable_url(url):
            raise InvalidParam("url must be an absolute http or https URL")
        ts = req.query.get("ts")
        if ts is not None and not ts.lstrip("-").isdigit():
            raise InvalidParam("ts must be an integer")
        # ts is only a preference (spec): the newest preview we have is always allowed.
        return await self._previewer.preview(req.user.user_id, url)
