"""Issue 7 acceptance with a real client: matrix-nio uploads an image and a 30 MB file,
another user downloads both through the authenticated endpoints (nio's default), gets
thumbnails, and the over-size and over-quota uploads are refused."""

from __future__ import annotations

import io
from pathlib import Path

from nio import (
    DiskDownloadResponse,
    MemoryDownloadResponse,
    RegisterResponse,
    ResizingMethod,
    ThumbnailResponse,
    UploadError,
    UploadResponse,
)
from PIL import Image

from tests.integration.conftest import MakeClient, MakeServers, make_servers, nio_client  # noqa: F401

MB = 1024 * 1024
PASSWORD = "correct horse battery"


def _file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        for i in range(size // MB):
            f.write(bytes([i % 251]) * MB)
    return path


async def test_nio_upload_download_thumbnail(make_servers: MakeServers,  # noqa: F811
                                             nio_client: MakeClient,  # noqa: F811
                                             tmp_path: Path) -> None:
    servers = make_servers(media={"max_upload_size": 31 * MB, "max_storage_per_user": 40 * MB})
    url = await servers.start()
    alice, bob = nio_client(url), nio_client(url)
    assert isinstance(await alice.register("alice", PASSWORD), RegisterResponse)
    assert isinstance(await bob.register("bob", PASSWORD), RegisterResponse)

    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 120, 240)).save(buf, "PNG")
    image, _ = await alice.upload(io.BytesIO(buf.getvalue()), "image/png", "sky.png",
                                  filesize=len(buf.getvalue()))
    assert isinstance(image, UploadResponse), image
    big_path = _file(tmp_path / "big.bin", 30 * MB)
    with big_path.open("rb") as f:
        big, _ = await alice.upload(f, "application/octet-stream", "big.bin", filesize=30 * MB)
    assert isinstance(big, UploadResponse), big

    got = await bob.download(image.content_uri)
    assert isinstance(got, MemoryDownloadResponse), got
    assert got.body == buf.getvalue() and got.filename == "sky.png"
    saved = tmp_path / "downloaded.bin"
    got_big = await bob.download(big.content_uri, save_to=saved)
    assert isinstance(got_big, DiskDownloadResponse), got_big
    assert saved.stat().st_size == 30 * MB and saved.read_bytes() == big_path.read_bytes()

    server, media_id = image.content_uri.removeprefix("mxc://").split("/")
    for (w, h, method), size in (((96, 96, ResizingMethod.crop), (96, 96)),
                                 ((320, 240, ResizingMethod.scale), (320, 240))):
        thumb = await bob.thumbnail(server, media_id, w, h, method)
        assert isinstance(thumb, ThumbnailResponse), thumb
        assert Image.open(io.BytesIO(thumb.body)).size == size

    over_path = _file(tmp_path / "over.bin", 32 * MB)
    with over_path.open("rb") as f:
        over, _ = await alice.upload(f, "application/octet-stream", "over.bin", filesize=32 * MB)
    assert isinstance(over, UploadError) and over.status_code == "M_TOO_LARGE", over
    with big_path.open("rb") as f:
        quota, _ = await alice.upload(f, "application/octet-stream", "again.bin", filesize=30 * MB)
    assert isinstance(quota, UploadError) and quota.status_code == "M_FORBIDDEN", quota
    assert "quota" in quota.message
