"""Admin: delete media by ID and purge cached remote media, through the service and the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.__main__ import main
from homeserver.config import load_config
from homeserver.server import Homeserver
from homeserver.storage.media import MediaInfo
from tests.cli.conftest import generated_config  # noqa: F401
from tests.client_api.conftest import Connect, MakeHs, bearer, error, register
from tests.media.conftest import MEDIA, upload

DAY_MS = 24 * 60 * 60 * 1000


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _cache_remote(hs: Homeserver, media_id: str, data: bytes) -> None:
    """Stand in for federation: a body in the store and a remote_media row naming it."""
    stored = await hs.media_files.write_bytes(data)
    async with hs.db.transaction() as conn:
        await hs.media._store.add_remote(conn, MediaInfo(
            origin="remote.example", media_id=media_id, content_type="text/plain",
            size=stored.size, filename=None, created_ts=hs.clock.time_ms(), sha256=stored.sha256))


async def test_purge_remote_by_last_access(make_hs: MakeHs, connect: Connect, clock: object) -> None:
    hs = make_hs()
    client = await connect(hs)
    token = (await register(client, "alice"))["access_token"]
    await _cache_remote(hs, "old", b"old remote")
    await _cache_remote(hs, "fresh", b"fresh remote")
    # A remote body identical to a local upload stays for the local one.
    local = await upload(client, token, b"old remote")
    hs.clock.advance(10 * DAY_MS)  # type: ignore[attr-defined]
    resp = await client.get(f"{MEDIA}/download/remote.example/fresh", headers=bearer(token))
    assert await resp.read() == b"fresh remote"
    assert await hs.media.purge_remote(5 * DAY_MS) == 1
    await error(await client.get(f"{MEDIA}/download/remote.example/old", headers=bearer(token)),
                404, "M_NOT_FOUND")
    resp = await client.get(f"{MEDIA}/download/test.local/{local}", headers=bearer(token))
    assert await resp.read() == b"old remote"
    assert hs.media_files.count_files() == 2


def test_cli_delete_and_purge(generated_config: Path,  # noqa: F811
                              capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(str(generated_config))

    async def seed() -> str:
        hs = Homeserver(config)
        await hs.open()
        try:
            media_id = await hs.media.upload("@alice:cli.test", _body(b"to delete"),
                                             content_type="text/plain", filename=None,
                                             content_length=None)
            await _cache_remote(hs, "cached", b"remote")
            return media_id
        finally:
            await hs.close()

    media_id = asyncio.run(seed())
    path = str(generated_config)
    assert main(["media", "-c", path, "delete", f"mxc://cli.test/{media_id}"]) == 0
    assert capsys.readouterr().out == f"deleted mxc://cli.test/{media_id}\n"
    assert main(["media", "-c", path, "delete", media_id]) == 1
    assert "no such local media" in capsys.readouterr().err
    assert main(["media", "-c", path, "purge-remote", "--days", "1"]) == 0
    assert capsys.readouterr().out == "purged 0 remote media\n"
    assert main(["media", "-c", path, "purge-remote", "--days", "0"]) == 0
    assert capsys.readouterr().out == "purged 1 remote media\n"
    assert not any(p.is_file() for p in Path(config.media.media_store_path).rglob("*"))
