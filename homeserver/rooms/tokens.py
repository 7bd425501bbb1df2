"""Room-timeline positions in pagination tokens.

`s<N>` is a position in the room events stream (what /sync's prev_batch starts with);
`t<D>-<N>` also names a topological depth, as /messages tokens do. Sync tokens that
carry several streams put the room stream first (`s<N>_...`), so the leading component
is enough here.
"""

from __future__ import annotations

import re

from homeserver.errors import InvalidParam

_TOKEN = re.compile(r"^(?:s(\d+)|t(\d+)-(\d+))(?:[_~].*)?$")


def parse_stream_position(token: str) -> int:
    """The room-events stream position named by a token (M_INVALID_PARAM otherwise)."""
    m = _TOKEN.match(token)
    if m is None:
        raise InvalidParam(f"Invalid pagination token {token!r}")
    return int(m.group(1) if m.group(1) is not None else m.group(3))


def stream_token(position: int) -> str:
    return f"s{position}"
