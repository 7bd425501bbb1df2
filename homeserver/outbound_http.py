"""Address policy for outbound HTTP made on a user's behalf (push gateways, URL previews).

A user-supplied URL must not let the server reach into the operator's network, so only
globally routable unicast addresses are used unless the operator allows a range. Names
are judged on the addresses they resolve to at connect time (a DNS answer can change
between a check and the connection); literal addresses never reach the resolver in
aiohttp, so callers check those themselves with `check_literal_host`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(OSError):
    """The destination is private, loopback, link-local, multicast or unspecified."""


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Raises ValueError on a bad CIDR (config loading names the key)."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def is_allowed_address(address: Address, allowed: tuple[Network, ...] = ()) -> bool:
    # ::ffff:10.0.0.1 reaches 10.0.0.1: judge the IPv4 address it carries.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address.version == n.version and address in n for n in allowed):
        return True
    # is_global alone lets some multicast ranges through.
    return address.is_global and not address.is_multicast


def check_literal_host(host: str, allowed: tuple[Network, ...] = ()) -> None:
    """Raise AddressRefused if `host` is a literal address that is not allowed."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return  # a name: the resolver judges what it resolves to
    if not is_allowed_address(address, allowed):
        raise AddressRefused(f"{host} is not a public address")


class PublicOnlyResolver(AbstractResolver):
    """Resolves names, keeping only globally routable addresses (or allowed ranges).

    Checking at connect time, on the addresses actually used, means a name that resolves
    (now, or after a DNS change) to a private or loopback address is refused."""

    def __init__(self, inner: AbstractResolver | None = None,
                 allowed: tuple[Network, ...] = ()):
        self._inner = inner or aiohttp.ThreadedResolver()
        self._allowed = allowed

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        usable = [r for r in results
                  if is_allowed_address(ipaddress.ip_address(r["host"]), self._allowed)]
        if not usable:
            raise AddressRefused(f"{host} resolves only to private or loopback addresses")
        return usable

    async def close(self) -> None:
        await self._inner.close()
