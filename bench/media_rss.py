"""Issue 7's memory check: uploading a 200 MB file must grow the server's RSS by less
than 30 MB (the body is streamed to disk, never held whole).

Starts DevNet (SQLite) with the bench harness's server class, registers a user, reads
the server's RSS, streams a 200 MB upload from a generator (the client never holds it
either), then reads RSS and the peak (VmHWM) again, and downloads the file back to check
its size. Prints the figures; exits 1 if the growth is 30 MB or more.

    .venv/bin/python -m bench.media_rss [--mb 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import yaml

from bench.client import Client
from bench.servers import DevNet

CHUNK = 1024 * 1024
LIMIT_KB = 30 * 1024


async def _body(megabytes: int) -> AsyncIterator[bytes]:
    chunk = bytes(range(256)) * (CHUNK // 256)
    for _ in range(megabytes):
        yield chunk


async def main(megabytes: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        server = DevNet(Path(tmp) / "devnet", 18431, "sqlite", None)
        server.prepare()
        config = server.workdir / "homeserver.yaml"
        cfg = yaml.safe_load(config.read_text())
        cfg["media"] = {**cfg.get("media", {}), "max_upload_size": (megabytes + 10) * CHUNK}
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        await server.start()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
                user = await Client(session, server.base_url).register("uploader", "a long password")
                headers = {"Authorization": f"Bearer {user.access_token}",
                           "Content-Type": "application/octet-stream"}
                before = server.rss_kb()
                async with session.post(f"{server.base_url}/_matrix/media/v3/upload",
                                        data=_body(megabytes), headers=headers) as resp:
                    reply = await resp.json()
                    assert resp.status == 200, reply
                after, peak = server.rss_kb(), server.hwm_kb()
                server_name, media_id = reply["content_uri"].removeprefix("mxc://").split("/")
                size = 0
                async with session.get(f"{server.base_url}/_matrix/client/v1/media/download/"
                                       f"{server_name}/{media_id}", headers=headers) as resp:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        size += len(chunk)
        finally:
            await server.stop()
    growth = after - before
    print(f"upload of {megabytes} MB: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB "
          f"(growth {growth / 1024:.1f} MiB; peak VmHWM {peak / 1024:.1f} MiB); "
          f"downloaded back {size / CHUNK:.0f} MB")
    if size != megabytes * CHUNK:
        print("download size mismatch")
        return 1
    ok = growth < LIMIT_KB
    print(f"goal (< 30 MiB growth): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    sys.exit(asyncio.run(main(parser.parse_args().mb)))
