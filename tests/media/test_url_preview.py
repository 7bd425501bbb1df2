"""URL previews: OpenGraph extraction, the image stored as local media, and the address
checks (a loopback origin server is reachable only through allowed_hosts_cidrs)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from homeserver.server import Homeserver
from tests.client_api.conftest import bearer, error, make_hs, register  # noqa: F401
from tests.spec_schemas import validating_middleware

PREVIEW = "/_matrix/client/v1/media/preview_url"
LEGACY_PREVIEW = "/_matrix/media/v3/preview_url"
LOOPBACK_ALLOWED = {"enabled": True, "allowed_hosts_cidrs": ["127.0.0.1/32"],
                    "max_response_bytes": 100_000}

PAGE = """<!doctype html><html><head>
<title>Fallback title</title>
<meta property="og:title" content="A &amp; B">
<meta property="og:description" content="All about it">
<meta property="og:site_name" content="Example">
<meta property="og:image" content="/image.png">
<meta property="og:image:width" content="4">
<meta property="og:image:height" content="3">
</head><body>hi</body></html>"""
PLAIN_PAGE = """<html><head><title> Just a
 title </title><meta name="description" content="Described"></head></html>"""
HITS = web.AppKey("hits", list[str])


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(out, "PNG")
    return out.getvalue()


def origin_app() -> web.Application:
    hits: list[str] = []

    async def page(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text=PAGE, content_type="text/html")

    async def plain_page(_: web.Request) -> web.Response:
        return web.Response(text=PLAIN_PAGE, content_type="text/html")

    async def image(_: web.Request) -> web.Response:
        return web.Response(body=png(), content_type="image/png")

    async def text(_: web.Request) -> web.Response:
        return web.Response(text="not html", content_type="text/plain")

    async def big(_: web.Request) -> web.StreamResponse:
        # Streamed without Content-Length: the cap must count what arrives.
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        resp.enable_chunked_encoding()
        await resp.prepare(_)
        for _i in range(20):
            await resp.write(b"x" * 10_000)
        await resp.write_eof()
        return resp

    async def to_private(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://10.1.2.3/secret")

    async def to_page(_: web.Request) -> web.Response:
        raise web.HTTPFound("/page")

    app = web.Application()
    app[HITS] = hits
    app.router.add_get("/page", page)
    app.router.add_get("/plain", plain_page)
    app.router.add_get("/image.png", image)
    app.router.add_get("/text", text)
    app.router.add_get("/big", big)
    app.router.add_get("/to-private", to_private)
    app.router.add_get("/to-page", to_page)
    return app


Setup = Callable[..., Awaitable[tuple[TestClient, str]]]


@pytest.fixture
async def setup(make_hs: Any, aiohttp_client: Any) -> AsyncIterator[Setup]:  # noqa: F811
    """A homeserver with url_preview settings and a registered user's token. Not the
    shared `connect` fixture: that fails on any 5xx, and 502 is the right answer for an
    upstream that misbehaves."""
    opened: list[Homeserver] = []
    mismatches: list[str] = []

    async def make(url_preview: dict[str, Any] | None = None) -> tuple[TestClient, str]:
        hs = make_hs(media={"url_preview": url_preview or {}})
        await hs.open()
        opened.append(hs)
        app = hs.client_app()
        app.middlewares.insert(0, validating_middleware(mismatches))
        http = await aiohttp_client(app)
        return http, (await register(http, "alice"))["access_token"]

    yield make
    for hs in opened:
        await hs.close()
    assert not mismatches, mismatches


@pytest.fixture
def origin_server() -> web.Application:
    return origin_app()


@pytest.fixture
async def origin(aiohttp_server: Any, origin_server: web.Application) -> str:
    server: TestServer = await aiohttp_server(origin_server)
    return f"http://127.0.0.1:{server.port}"


async def preview(http: TestClient, token: str, url: str, path: str = PREVIEW) -> Any:
    return await http.get(path, params={"url": url}, headers=bearer(token))


async def test_opengraph_and_image_stored_as_media(setup: Setup, origin: str) -> None:
    http, token = await setup(LOOPBACK_ALLOWED)
    resp = await preview(http, token, origin + "/to-page")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["og:title"] == "A & B"
    assert body["og:description"] == "All about it"
    assert body["og:site_name"] == "Example"
    assert body["og:image:width"] == 4 and body["og:image:height"] == 3
    assert body["matrix:image:size"] == len(png())
    assert body["og:image"].startswith("mxc://test.local/")
    media_id = body["og:image"].rsplit("/", 1)[1]
    download = await http.get(f"/_matrix/client/v1/media/download/test.local/{media_id}",
                              headers=bearer(token))
    assert download.status == 200
    assert await download.read() == png()


async def test_previews_are_cached_per_url(setup: Setup, origin: str,
                                           origin_server: web.Application) -> None:
    http, token = await setup(LOOPBACK_ALLOWED)
    first = await (await preview(http, token, origin + "/page")).json()
    second = await (await preview(http, token, origin + "/page")).json()
    assert first == second
    assert origin_server[HITS] == ["/page"]


async def test_fallback_to_title_and_description_on_legacy_path(setup: Setup, origin: str) -> None:
    http, token = await setup(LOOPBACK_ALLOWED)
    resp = await preview(http, token, origin + "/plain", path=LEGACY_PREVIEW)
    body = await resp.json()
    assert resp.status == 200, body
    assert body == {"og:title": "Just a title", "og:description": "Described"}


async def test_image_url_previews_as_image(setup: Setup, origin: str) -> None:
    http, token = await setup(LOOPBACK_ALLOWED)
    body = await (await preview(http, token, origin + "/image.png")).json()
    assert body["og:image"].startswith("mxc://test.local/")
    assert body["matrix:image:size"] == len(png())


async def test_non_html_gives_empty_preview(setup: Setup, origin: str) -> None:
    http, token = await setup(LOOPBACK_ALLOWED)
    resp = await preview(http, token, origin + "/text")
    assert resp.status == 200
    assert await resp.json() == {}


async def test_disabled_by_default(setup: Setup, origin: str) -> None:
    http, token = await setup()
    await error(await preview(http, token, origin + "/page"), 404, "M_UNRECOGNIZED")
    await error(await preview(http, token, origin + "/page", path=LEGACY_PREVIEW),
                404, "M_UNRECOGNIZED")


async def test_requires_auth(setup: Setup, origin: str) -> None:
    http, _ = await setup(LOOPBACK_ALLOWED)
    resp = await http.get(PREVIEW, params={"url": origin + "/page"})
    await error(resp, 401, "M_MISSING_TOKEN")


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "localhost",
                                  "169.254.169.254", "10.0.0.1", "0.0.0.0", "224.0.0.1"])
async def test_private_addresses_refused_without_allow_list(setup: Setup, origin: str,
                                                           host: str) -> None:
    http, token = await setup({"enabled": True})
    port = origin.rsplit(":", 1)[1]
    await error(await preview(http, token, f"http://{host}:{port}/page"), 403, "M_FORBIDDEN")


async def test_redirect_to_private_address_refused(setup: Setup, origin: str) -> None:
    http, token = await setup(LOOPBACK_ALLOWED)
    await error(await preview(http, token, origin + "/to-private"), 403, "M_FORBIDDEN")


async def test_oversize_response_refused(setup: Setup, origin: str) -> None:
    http, token = await setup(LOOPBACK_ALLOWED)
    await error(await preview(http, token, origin + "/big"), 502, "M_UNKNOWN")


async def test_bad_params(setup: Setup, origin: str) -> None:
    http, token = await setup(LOOPBACK_ALLOWED)
    await error(await http.get(PREVIEW, headers=bearer(token)), 400, "M_MISSING_PARAM")
    for url in ("ftp://example.org/", "not a url", "file:///etc/passwd", "/relative"):
        await error(await preview(http, token, url), 400, "M_INVALID_PARAM")
    resp = await http.get(PREVIEW, params={"url": origin + "/page", "ts": "soon"},
                          headers=bearer(token))
    await error(resp, 400, "M_INVALID_PARAM")
    resp = await http.get(PREVIEW, params={"url": origin + "/plain", "ts": "1510610716656"},
                          headers=bearer(token))
    assert resp.status == 200
