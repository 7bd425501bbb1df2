"""What POST /search asks for, once validated, and its `next_batch` tokens.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-search .
"""

from __future__ import annotations

import re

import attrs

from homeserver.errors import InvalidParam
from homeserver.sync.filters import RoomEventFilter

ALL_KEYS = ("content.body", "content.name", "content.topic")
ORDERS = ("rank", "recent")
GROUP_KEYS = ("room_id", "sender")
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 50
_WORD = re.compile(r"[^\W_]+")


def search_words(term: str) -> list[str]:
    """The words of a search term, lower case, without punctuation: what the index
    matches (as prefixes), and what the response offers as highlights."""
    return list(dict.fromkeys(_WORD.findall(term.casefold())))


@attrs.frozen
class EventContextSpec:
    before_limit: int = DEFAULT_CONTEXT
    after_limit: int = DEFAULT_CONTEXT
    include_profile: bool = False


@attrs.frozen
class RoomEventsCriteria:
    search_term: str
    keys: tuple[str, ...] = ALL_KEYS
    filter: RoomEventFilter = RoomEventFilter()
    order_by: str = "rank"
    event_context: EventContextSpec | None = None
    include_state: bool = False
    group_by: tuple[str, ...] = ()

    @property
    def limit(self) -> int:
        return min(self.filter.limit_or(DEFAULT_LIMIT), MAX_LIMIT)


@attrs.frozen
class Cursor:
    """Where the next page starts: an offset into rank order, or (for recent order) the
    stream position below which to continue."""

    order_by: str
    value: int

    def token(self) -> str:
        return ("k" if self.order_by == "rank" else "r") + str(self.value)


_TOKEN = re.compile(r"^([kr])(\d{1,18})$")


def parse_next_batch(token: str, order_by: str) -> Cursor:
    m = _TOKEN.match(token)
    if m is None or (m.group(1) == "k") != (order_by == "rank"):
        raise InvalidParam("Invalid 'next_batch' token")
    return Cursor(order_by, int(m.group(2)))
