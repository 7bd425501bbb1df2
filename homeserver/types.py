"""Matrix identifiers, parsed and validated at the edge.

Spec: https://spec.matrix.org/v1.19/appendices/#identifier-grammar
"""

from __future__ import annotations

import re

import attrs

from homeserver.errors import InvalidParam

# Server name: hostname (DNS name, IPv4 literal or [IPv6 literal]) with an optional port.
_SERVER_NAME = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9\-.]{1,255})"
    r"(?::[0-9]{1,5})?$"
)
# Historical user IDs allow any printable ASCII except ':'; new ones are stricter.
_HISTORICAL_LOCALPART = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
_STRICT_LOCALPART = re.compile(r"^[a-z0-9._=\-/+]+$")
MAX_ID_LENGTH = 255


def is_valid_server_name(name: str) -> bool:
    if not _SERVER_NAME.match(name):
        return False
    _, _, port = name.rpartition(":") if not name.endswith("]") else ("", "", "")
    if port.isdigit() and not 0 < int(port) < 65536:
        return False
    return True


@attrs.frozen
class ServerName:
    value: str

    @classmethod
    def parse(cls, s: str) -> ServerName:
        if not isinstance(s, str) or not is_valid_server_name(s):
            raise InvalidParam(f"Invalid server name: {s!r}")
        return cls(s)

    def __str__(self) -> str:
        return self.value


def is_valid_localpart(localpart: str, *, strict: bool = True) -> bool:
    pattern = _STRICT_LOCALPART if strict else _HISTORICAL_LOCALPART
    return bool(pattern.match(localpart))


def _split_sigil(s: object, sigil: str, kind: str) -> tuple[str, str]:
    if not isinstance(s, str) or len(s.encode()) > MAX_ID_LENGTH or not s.startswith(sigil):
        raise InvalidParam(f"Invalid {kind}: {s!r}")
    local, sep, server = s[1:].partition(":")
    if not sep or not local or not is_valid_server_name(server):
        raise InvalidParam(f"Invalid {kind}: {s!r}")
    return local, server


@attrs.frozen
class UserID:
    localpart: str
    server_name: str

    @classmethod
    def parse(cls, s: object) -> UserID:
        local, server = _split_sigil(s, "@", "user ID")
        if not is_valid_localpart(local, strict=False):
            raise InvalidParam(f"Invalid user ID: {s!r}")
        return cls(local, server)

    def __str__(self) -> str:
        return f"@{self.localpart}:{self.server_name}"


@attrs.frozen
class RoomAlias:
    localpart: str
    server_name: str

    @classmethod
    def parse(cls, s: object) -> RoomAlias:
        local, server = _split_sigil(s, "#", "room alias")
        return cls(local, server)

    def __str__(self) -> str:
        return f"#{self.localpart}:{self.server_name}"


@attrs.frozen
class RoomID:
    """`!opaque:server` for rooms v1–11, `!<reference hash>` (no server) for v12."""

    value: str

    @classmethod
    def parse(cls, s: object) -> RoomID:
        if not isinstance(s, str) or not s.startswith("!") or len(s.encode()) > MAX_ID_LENGTH or len(s) < 2:
            raise InvalidParam(f"Invalid room ID: {s!r}")
        return cls(s)

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class EventID:
    value: str

    @classmethod
    def parse(cls, s: object) -> EventID:
        if not isinstance(s, str) or not s.startswith("$") or len(s.encode()) > MAX_ID_LENGTH or len(s) < 2:
            raise InvalidParam(f"Invalid event ID: {s!r}")
        return cls(s)

    def __str__(self) -> str:
        return self.value
