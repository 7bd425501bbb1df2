"""Thumbnails: sizes and methods, EXIF orientation applied and stripped, bombs refused."""

from __future__ import annotations

import io

from aiohttp.test_utils import TestClient
from PIL import Image

from tests.client_api.conftest import Connect, MakeHs, bearer, error, register
from tests.media.conftest import LEGACY, MEDIA, upload

ORIENTATION, MAKE = 0x0112, 0x010F


def _jpeg_rotated() -> bytes:
    """1000x500 pixels stored, EXIF orientation 6: displayed as 500x1000 (portrait)."""
    image = Image.new("RGB", (1000, 500), (200, 30, 30))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[MAKE] = "SecretCam"
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 255).save(buf, "PNG", optimize=True)
    return buf.getvalue()


async def _thumb(client: TestClient, token: str, media_id: str, **params: str) -> Image.Image:
    resp = await client.get(f"{MEDIA}/thumbnail/test.local/{media_id}", params=params,
                            headers=bearer(token))
    data = await resp.read()
    assert resp.status == 200, data[:200]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"] == "inline"
    image = Image.open(io.BytesIO(data))
    assert resp.headers["Content-Type"] == Image.MIME[str(image.format)]
    return image


async def test_sizes_methods_and_exif(make_hs: MakeHs, connect: Connect) -> None:
    hs = make_hs()
    client = await connect(hs)
    token = (await register(client, "alice"))["access_token"]
    media_id = await upload(client, token, _jpeg_rotated(), "image/jpeg", "photo.jpg")
    # The configured sizes were made at upload.
    assert len(await hs.db.fetch("SELECT width FROM media_thumbnails")) == 5
    image = await _thumb(client, token, media_id, width="320", height="240", method="scale")
    assert image.size == (120, 240)  # portrait: orientation applied before scaling
    assert len(image.getexif()) == 0 and "exif" not in image.info
    image = await _thumb(client, token, media_id, width="96", height="96", method="crop")
    assert image.size == (96, 96)
    # Smaller requests are answered from a stored size at least as large.
    image = await _thumb(client, token, media_id, width="50", height="50", method="crop")
    assert image.size == (96, 96)
    # Beyond every configured size: rendered on demand (never upscaled) and cached.
    image = await _thumb(client, token, media_id, width="1200", height="1200")
    assert image.size == (500, 1000)
    assert len(await hs.db.fetch("SELECT width FROM media_thumbnails")) == 6
    await _thumb(client, token, media_id, width="1200", height="1200")
    assert len(await hs.db.fetch("SELECT width FROM media_thumbnails")) == 6
    image = await _thumb(client, token, media_id, width="200", height="100", method="crop")
    assert image.size == (200, 100)


async def test_animated(client: TestClient) -> None:
    token = (await register(client, "alice"))["access_token"]
    frames = [Image.new("RGB", (200, 200), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    media_id = await upload(client, token, buf.getvalue(), "image/gif")
    image = await _thumb(client, token, media_id, width="64", height="64", method="crop",
                         animated="true")
    assert image.format == "WEBP" and getattr(image, "n_frames", 1) == 3
    still = await _thumb(client, token, media_id, width="64", height="64", method="crop")
    assert getattr(still, "n_frames", 1) == 1


async def test_bombs_corrupt_and_bad_params(make_hs: MakeHs, connect: Connect) -> None:
    client = await connect(make_hs(media={"max_image_pixels": 1_000_000,
                                          "legacy_unauthenticated_media": "all"}))
    token = (await register(client, "alice"))["access_token"]
    # 25 megapixels in a few kilobytes: stored as a file, never decoded.
    bomb = await upload(client, token, _png(5000, 5000), "image/png")
    url = f"{MEDIA}/thumbnail/test.local/{bomb}"
    body = await error(await client.get(url, params={"width": "32", "height": "32"},
                                        headers=bearer(token)), 400, "M_UNKNOWN")
    assert "too large" in body["error"]
    corrupt = await upload(client, token, b"\x89PNG\r\n\x1a\nnot really", "image/png")
    await error(await client.get(f"{MEDIA}/thumbnail/test.local/{corrupt}",
                                 params={"width": "32", "height": "32"}, headers=bearer(token)),
                400, "M_UNKNOWN")
    text = await upload(client, token, b"hello", "text/plain")
    await error(await client.get(f"{MEDIA}/thumbnail/test.local/{text}",
                                 params={"width": "32", "height": "32"}, headers=bearer(token)),
                400, "M_UNKNOWN")
    good = await upload(client, token, _png(100, 100), "image/png")
    url = f"{MEDIA}/thumbnail/test.local/{good}"
    for params, errcode in (({"width": "0", "height": "32"}, "M_INVALID_PARAM"),
                            ({"width": "abc", "height": "32"}, "M_INVALID_PARAM"),
                            ({"width": "-3", "height": "32"}, "M_INVALID_PARAM"),
                            ({"width": "32"}, "M_MISSING_PARAM"),
                            ({"width": "32", "height": "32", "method": "zoom"}, "M_INVALID_PARAM"),
                            ({"width": "32", "height": "32", "animated": "yes"},
                             "M_INVALID_PARAM")):
        await error(await client.get(url, params=params, headers=bearer(token)), 400, errcode)
    await error(await client.get(url, params={"width": "32", "height": "32"}),
                401, "M_MISSING_TOKEN")
    resp = await client.get(f"{LEGACY}/thumbnail/test.local/{good}",
                            params={"width": "32", "height": "32", "method": "crop"})
    assert resp.status == 200
    assert Image.open(io.BytesIO(await resp.read())).size == (32, 32)
