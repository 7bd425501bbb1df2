"""URL previews: fetch a page, read its OpenGraph data, store its image as local media.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediapreview_url
Previews are cached per URL in memory (bounded, with an expiry): clients ask again each
time a message with the URL is shown, and a page should not be fetched for every one.
"""

from __future__ import annotations

import codecs
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from yarl import URL

from homeserver.clock import Clock
from homeserver.errors import MatrixError
from media_repo.html_meta import parse_html_meta
from media_repo.repository import MediaRepository
from media_repo.url_fetch import Fetched, UrlFetcher

logger = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
INTEGER_PROPERTIES = ("og:image:width", "og:image:height")


class UrlPreviewer:
    def __init__(self, fetcher: UrlFetcher, repository: MediaRepository, clock: Clock):
        self._fetcher = fetcher
        self._repo = repository
        self._clock = clock
        self._config = repository.config.url_preview
        self._cache: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()

    async def preview(self, user_id: str, url: str) -> dict[str, Any]:
        now = self._clock.time_ms()
        cached = self._cache.get(url)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(url)
            return dict(cached[1])
        result = await self._build(user_id, url)
        self._cache[url] = (now + self._config.cache_ttl_ms, result)
        self._cache.move_to_end(url)
        while len(self._cache) > self._config.cache_max_entries:
            self._cache.popitem(last=False)
        return dict(result)

    async def _build(self, user_id: str, url: str) -> dict[str, Any]:
        page = await self._fetcher.fetch(url, self._config.max_response_bytes)
        if page.content_type.startswith("image/"):
            # A link straight to an image: the image is the preview.
            return await self._image_properties(user_id, page)
        if page.content_type not in HTML_TYPES:
            # Nothing to read in other types; an empty preview is valid (spec).
            return {}
        text = page.body.decode(_codec(page.charset), errors="replace")
        og: dict[str, Any] = dict(parse_html_meta(text))
        for name in INTEGER_PROPERTIES:
            if name in og:
                value = og.pop(name)
                if value.isdigit():
                    og[name] = int(value)
        image_url = og.pop("og:image", None)
        if image_url is not None:
            og.update(await self._remote_image(user_id, page.url, image_url))
        if "og:image" not in og:
            for name in (*INTEGER_PROPERTIES, "og:image:type"):
                og.pop(name, None)
        return og

    async def _remote_image(self, user_id: str, page_url: str, image_url: str) -> dict[str, Any]:
        """The page's image, fetched under the same checks; {} if it cannot be had (the
        rest of the preview is still worth returning)."""
        try:
            absolute = str(URL(page_url).join(URL(image_url)))
            limit = min(self._config.max_response_bytes, self._repo.config.max_upload_size)
            image = await self._fetcher.fetch(absolute, limit)
        except (MatrixError, ValueError) as e:
            logger.info("preview image %s not fetched: %s", image_url, e)
            return {}
        if not image.content_type.startswith("image/"):
            return {}
        return await self._image_properties(user_id, image)

    async def _image_properties(self, user_id: str, image: Fetched) -> dict[str, Any]:
        try:
            # Stored as the requesting user's upload: the same type rules and quota
            # apply as if they had uploaded it themselves.
            media_id = await self._repo.upload(
                user_id, _one_chunk(image.body), content_type=image.content_type,
                filename=None, content_length=len(image.body))
        except MatrixError as e:
            logger.info("preview image not stored: %s", e)
            return {}
        return {"og:image": f"mxc://{self._repo.server_name}/{media_id}",
                "og:image:type": image.content_type, "matrix:image:size": len(image.body)}


def _codec(charset: str | None) -> str:
    try:
        return codecs.lookup(charset or "utf-8").name
    except LookupError:
        return "utf-8"


async def _one_chunk(body: bytes) -> AsyncIterator[bytes]:
    yield body
