"""Fetching a user-named URL for a preview, without letting it reach the operator's network.

Only http and https; every hop of a redirect chain (followed here, at most
MAX_REDIRECTS) is checked: literal addresses before connecting, names by the resolver on
the addresses the connection actually uses (homeserver/outbound_http.py). The body is
read in chunks and abandoned past the byte limit, and the whole fetch, redirects
included, has one deadline.
"""

from __future__ import annotations

import asyncio

import aiohttp
import attrs
import yarl

from homeserver.config import UrlPreviewConfig
from homeserver.outbound_http import (
    AddressRefused,
    PublicOnlyResolver,
    check_literal_host,
    parse_networks,
)
from media_repo.errors import PreviewFetchFailed, PreviewForbidden

MAX_REDIRECTS = 5
CHUNK_SIZE = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "DevNet URL preview"


@attrs.frozen
class Fetched:
    url: str  # after redirects: relative og:image URLs are resolved against it
    content_type: str
    charset: str | None
    body: bytes


def is_fetchable_url(url: str) -> bool:
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


class UrlFetcher:
    def __init__(self, config: UrlPreviewConfig):
        self._config = config
        self._allowed = parse_networks(config.allowed_hosts_cidrs)

    async def fetch(self, url: str, max_bytes: int) -> Fetched:
        try:
            async with asyncio.timeout(self._config.timeout_s):
                # A session per fetch: its connector holds the checking resolver, and no
                # connection outlives the checks made for it.
                connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(allowed=self._allowed))
                async with aiohttp.ClientSession(connector=connector) as session:
                    return await self._follow(session, url, max_bytes)
        except AddressRefused as e:
            raise PreviewForbidden(str(e)) from None
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, AddressRefused):
                raise PreviewForbidden(str(e.os_error)) from None
            raise PreviewFetchFailed("Could not connect") from None
        except TimeoutError:
            raise PreviewFetchFailed("Timed out fetching the URL") from None
        except (aiohttp.ClientError, OSError, ValueError):
            raise PreviewFetchFailed("Failed to fetch the URL") from None

    async def _follow(self, session: aiohttp.ClientSession, url: str, max_bytes: int) -> Fetched:
        for _ in range(MAX_REDIRECTS + 1):
            if not is_fetchable_url(url):
                raise PreviewForbidden("Only http and https URLs are fetched")
            target = yarl.URL(url)
            assert target.host is not None
            check_literal_host(target.host, self._allowed)
            # Redirects are followed here, not by aiohttp, so each hop is checked.
            async with session.get(target, allow_redirects=False,
                                   headers={"User-Agent": USER_AGENT}) as resp:
                if resp.status in REDIRECT_STATUSES:
                    location = resp.headers.get("Location")
                    if not location:
                        raise PreviewFetchFailed("Redirect without a Location")
                    url = str(target.join(yarl.URL(location)))
                    continue
                if resp.status != 200:
                    raise PreviewFetchFailed(f"The URL answered {resp.status}")
                body = await _read_capped(resp, max_bytes)
                return Fetched(str(resp.url), resp.content_type, resp.charset, body)
        raise PreviewFetchFailed("Too many redirects")


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise PreviewFetchFailed(f"Response over the limit of {max_bytes} bytes")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
        body += chunk
        # Content-Length may be absent or wrong: count what actually arrives.
        if len(body) > max_bytes:
            raise PreviewFetchFailed(f"Response over the limit of {max_bytes} bytes")
    return bytes(body)
