"""Uploads (streamed, content-addressed, limited) and downloads (ranges, safe headers)."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator

from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from tests.client_api.conftest import Connect, MakeHs, bearer, error, register
from tests.media.conftest import LEGACY, MEDIA, UPLOAD, upload


async def _alice(client: TestClient) -> str:
    return str((await register(client, "alice"))["access_token"])


async def _generated(total: int, chunk: int = 1024 * 1024) -> AsyncIterator[bytes]:
    """A body made on the fly, so the test itself never holds it whole either."""
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield bytes([sent // chunk % 251]) * n
        sent += n


async def test_upload_download_roundtrip(client: TestClient) -> None:
    token = await _alice(client)
    resp = await client.get(f"{MEDIA}/config", headers=bearer(token))
    assert (await resp.json())["m.upload.size"] == 50 * 1024 * 1024
    media_id = await upload(client, token, b"hello media", "text/plain", "notes.txt")
    bob = (await register(client, "bob"))["access_token"]
    resp = await client.get(f"{MEDIA}/download/test.local/{media_id}", headers=bearer(bob))
    assert resp.status == 200
    assert await resp.read() == b"hello media"
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.headers["Content-Disposition"] == (
        "inline; filename=\"notes.txt\"; filename*=utf-8''notes.txt")
    assert "immutable" in resp.headers["Cache-Control"]
    # The {fileName} path segment overrides the stored name.
    resp = await client.get(f"{MEDIA}/download/test.local/{media_id}/r%C3%A9sum%C3%A9.txt",
                            headers=bearer(bob))
    assert resp.headers["Content-Disposition"] == "inline; filename*=utf-8''r%C3%A9sum%C3%A9.txt"


async def test_identical_uploads_are_stored_once(make_hs: MakeHs, connect: Connect) -> None:
    hs = make_hs()
    client = await connect(hs)
    token = await _alice(client)
    first = await upload(client, token, b"same bytes")
    second = await upload(client, token, b"same bytes")
    assert first != second
    assert hs.media_files.count_files() == 1
    # Deleting one keeps the body the other still names; deleting both removes it.
    assert await hs.media.delete_local(first)
    await error(await client.get(f"{MEDIA}/download/test.local/{first}", headers=bearer(token)),
                404, "M_NOT_FOUND")
    assert hs.media_files.count_files() == 1
    assert await hs.media.delete_local(second)
    assert hs.media_files.count_files() == 0
    assert not await hs.media.delete_local(second)


async def test_30mb_upload_is_streamed(make_hs: MakeHs, connect: Connect) -> None:
    hs = make_hs()
    client = await connect(hs)
    token = await _alice(client)
    size = 30 * 1024 * 1024
    tracemalloc.start()
    try:
        media_id = await upload(client, token, _generated(size), "application/octet-stream")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Server and client share this process: a body held whole anywhere would show.
    assert peak < 8 * 1024 * 1024, peak
    resp = await client.get(f"{MEDIA}/download/test.local/{media_id}", headers=bearer(token))
    assert resp.status == 200
    assert resp.content_length == size
    received = 0
    async for chunk in resp.content.iter_chunked(1024 * 1024):
        received += len(chunk)
    assert received == size


async def test_over_max_upload_size(make_hs: MakeHs, connect: Connect) -> None:
    hs = make_hs(media={"max_upload_size": 1_000_000})
    client = await connect(hs)
    token = await _alice(client)
    # Declared too large: refused before reading.
    resp = await client.post(UPLOAD, data=b"x" * 1_000_001, headers=bearer(token))
    await error(resp, 413, "M_TOO_LARGE")
    # Chunked, no length: refused while streaming, the partial file removed.
    resp = await client.post(UPLOAD, data=_generated(3_000_000, 100_000), headers=bearer(token))
    await error(resp, 413, "M_TOO_LARGE")
    assert hs.media_files.count_files() == 0
    assert hs.media_files.count_tmp() == 0
    await upload(client, token, b"x" * 1_000_000)


async def test_quota(make_hs: MakeHs, connect: Connect) -> None:
    client = await connect(make_hs(media={"max_storage_per_user": 100}))
    token = await _alice(client)
    await upload(client, token, b"a" * 60)
    body = await error(await client.post(UPLOAD, data=b"b" * 60, headers=bearer(token)),
                       403, "M_FORBIDDEN")
    assert "quota" in body["error"] and body["quota_bytes"] == 100
    body = await error(await client.post(UPLOAD, data=_generated(60, 10), headers=bearer(token)),
                       403, "M_FORBIDDEN")
    assert "quota" in body["error"]
    # Another user has their own quota.
    bob = (await register(client, "bob"))["access_token"]
    await upload(client, bob, b"b" * 60)


async def test_content_type_lists_and_rate_limit(make_hs: MakeHs, connect: Connect) -> None:
    client = await connect(make_hs(media={"denied_content_types": ["text/html", "image/*"]},
                                   rate_limits={"media_upload": {"per_second": 0.001,
                                                                 "burst": 3}}))
    token = await _alice(client)
    for ctype in ("text/html; charset=utf-8", "image/svg+xml"):
        resp = await client.post(UPLOAD, data=b"<svg/>", headers={**bearer(token),
                                                                 "Content-Type": ctype})
        await error(resp, 403, "M_FORBIDDEN")
    await upload(client, token, b"fine", "text/plain")
    resp = await client.post(UPLOAD, data=b"fine", headers=bearer(token))
    body = await error(resp, 429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] > 0


async def test_range_etag_and_safe_headers(make_hs: MakeHs, connect: Connect) -> None:
    client = await connect(make_hs())
    token = await _alice(client)
    media_id = await upload(client, token, b"<html><script>alert(1)</script></html>",
                            "text/html", "page.html")
    url = f"{MEDIA}/download/test.local/{media_id}"
    resp = await client.get(url, headers=bearer(token))
    assert resp.status == 200
    assert resp.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    etag = resp.headers["ETag"]
    resp = await client.get(url, headers={**bearer(token), "If-None-Match": etag})
    assert resp.status == 304
    resp = await client.get(url, headers={**bearer(token), "Range": "bytes=6-13"})
    assert resp.status == 206
    assert await resp.read() == b"<script>"
    assert resp.headers["Content-Range"] == "bytes 6-13/38"
    assert resp.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    resp = await client.get(url, headers={**bearer(token), "Range": "bytes=100-200"})
    assert resp.status == 416
    # A name with quotes and separators cannot break the header.
    media_id = await upload(client, token, b"x", "application/pdf", 'a"b; c%.pdf')
    resp = await client.get(f"{MEDIA}/download/test.local/{media_id}", headers=bearer(token))
    assert resp.headers["Content-Disposition"] == "attachment; filename*=utf-8''a%22b%3B%20c%25.pdf"


async def test_async_upload(client: TestClient) -> None:
    token = await _alice(client)
    resp = await client.post("/_matrix/media/v1/create", headers=bearer(token))
    body = await resp.json()
    assert resp.status == 200 and body["unused_expires_at"] > 0
    media_id = body["content_uri"].rsplit("/", 1)[1]
    bob = (await register(client, "bob"))["access_token"]
    put = f"{LEGACY}/upload/test.local/{media_id}"
    await error(await client.put(put, data=b"x", headers=bearer(bob)), 403, "M_FORBIDDEN")
    resp = await client.put(put, data=b"late body", headers={**bearer(token),
                                                             "Content-Type": "text/plain"})
    assert resp.status == 200, await resp.json()
    await error(await client.put(put, data=b"again", headers=bearer(token)),
                409, "M_CANNOT_OVERWRITE_MEDIA")
    resp = await client.get(f"{MEDIA}/download/test.local/{media_id}", headers=bearer(bob))
    assert await resp.read() == b"late body"
    await error(await client.put(f"{LEGACY}/upload/test.local/unknown", data=b"x",
                                 headers=bearer(token)), 404, "M_NOT_FOUND")


async def test_legacy_endpoints(make_hs: MakeHs, connect: Connect) -> None:
    hs: Homeserver = make_hs()
    client = await connect(hs)
    token = await _alice(client)
    media_id = await upload(client, token, b"frozen?")
    # Default: media uploaded after the freeze is only served authenticated.
    await error(await client.get(f"{LEGACY}/download/test.local/{media_id}"), 404, "M_NOT_FOUND")
    client = await connect(make_hs(media={"legacy_unauthenticated_media": "all"}))
    token = (await register(client, "carol"))["access_token"]
    media_id = await upload(client, token, b"open")
    resp = await client.get(f"{LEGACY}/download/test.local/{media_id}")
    assert resp.status == 200 and await resp.read() == b"open"
    assert resp.headers["Cache-Control"].startswith("public")
    resp = await client.get(f"{LEGACY}/config", headers=bearer(token))
    assert (await resp.json())["m.upload.size"] > 0


async def test_bad_input(client: TestClient) -> None:
    token = await _alice(client)
    media_id = await upload(client, token, b"x")
    await error(await client.get(f"{MEDIA}/download/test.local/{media_id}"),
                401, "M_MISSING_TOKEN")
    await error(await client.get(f"{MEDIA}/download/test.local/{media_id}",
                                 headers=bearer("nope")), 401, "M_UNKNOWN_TOKEN")
    await error(await client.post(UPLOAD, data=b"x"), 401, "M_MISSING_TOKEN")
    await error(await client.get(f"{MEDIA}/download/bad_server!/{media_id}",
                                 headers=bearer(token)), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{MEDIA}/download/test.local/bad.id",
                                 headers=bearer(token)), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{MEDIA}/download/test.local/missing",
                                 headers=bearer(token)), 404, "M_NOT_FOUND")
    await error(await client.get(f"{MEDIA}/download/other.example/{media_id}",
                                 headers=bearer(token)), 404, "M_NOT_FOUND")
    await error(await client.delete(f"{MEDIA}/download/test.local/{media_id}",
                                    headers=bearer(token)), 405, "M_UNRECOGNIZED")
    await error(await client.post(UPLOAD, data=b"x", params={"filename": "a\nb"},
                                  headers=bearer(token)), 400, "M_INVALID_PARAM")


async def test_truncated_upload_leaves_nothing(make_hs: MakeHs, connect: Connect) -> None:
    hs = make_hs()
    client = await connect(hs)
    token = await _alice(client)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write((f"POST {UPLOAD} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  "Content-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n").encode()
                 + b"y" * 300_000)
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    for _ in range(50):
        await asyncio.sleep(0.05)
        if hs.media_files.count_tmp() == 0:
            break
    assert hs.media_files.count_tmp() == 0
    assert hs.media_files.count_files() == 0
    assert await hs.db.fetchval("SELECT COUNT(*) FROM local_media") == 0


async def test_download_waits_for_a_pending_async_upload(make_hs: MakeHs, connect: Connect) -> None:
    """Spec: a download of a created but not yet uploaded media ID waits (up to
    `timeout_ms`) for the body instead of failing at once."""
    hs: Homeserver = make_hs()
    client = await connect(hs)
    token = await _alice(client)
    body = await (await client.post("/_matrix/media/v1/create", headers=bearer(token))).json()
    media_id = body["content_uri"].rsplit("/", 1)[1]
    url = f"{MEDIA}/download/test.local/{media_id}"
    await error(await client.get(url, params={"timeout_ms": "soon"}, headers=bearer(token)),
                400, "M_INVALID_PARAM")
    download = asyncio.create_task(client.get(url, params={"timeout_ms": "60000"},
                                              headers=bearer(token)))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while media_id not in hs.media._waiting:  # readiness: the download is parked
        assert loop.time() < deadline, "the download never started waiting"
        await asyncio.sleep(0.001)
    resp = await client.put(f"{LEGACY}/upload/test.local/{media_id}", data=b"arrived",
                            headers={**bearer(token), "Content-Type": "text/plain"})
    assert resp.status == 200
    resp = await asyncio.wait_for(download, 30)
    assert resp.status == 200 and await resp.read() == b"arrived"
    assert hs.media._waiting == {}
