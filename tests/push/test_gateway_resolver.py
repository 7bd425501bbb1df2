"""Outbound pushes refuse names that resolve to private or loopback addresses."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from homeserver.push.gateway_http import PublicOnlyResolver


class FakeResolver(AbstractResolver):
    def __init__(self, addresses: list[str]):
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
                for a in self.addresses]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["10.1.2.3", "192.168.0.1"], ["::1"],
                                       ["169.254.169.254"], ["fd00::1"]])
async def test_private_only_names_are_refused(addresses: list[str]) -> None:
    with pytest.raises(OSError):
        await PublicOnlyResolver(FakeResolver(addresses)).resolve("push.example.org", 443)


async def test_public_addresses_are_kept_private_ones_dropped() -> None:
    resolver = PublicOnlyResolver(FakeResolver(["10.0.0.1", "93.184.216.34"]))
    results: Any = await resolver.resolve("push.example.org", 443)
    assert [r["host"] for r in results] == ["93.184.216.34"]
