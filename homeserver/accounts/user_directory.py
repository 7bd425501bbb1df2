"""The user directory: POST /user_directory/search.

Spec: https://spec.matrix.org/v1.19/client-server-api/#user-directory . A searcher finds
the users they share a room with and the members of rooms anyone may look into (public
join rule or world-readable history). Every word of the search term must start a word
of the user's ID or display name, case-insensitively ("ali smi" finds "Alice Smith").
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from homeserver.storage.database import Database
from homeserver.storage.memberships import MembershipStore
from homeserver.storage.user_directory import UserDirectoryStore, VisibleMember, like_pattern

JsonDict = dict[str, Any]
DEFAULT_LIMIT = 10
MAX_LIMIT = 50
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


@attrs.frozen
class Candidate:
    user_id: str
    displayname: str | None
    avatar_url: str | None
    shares_room: bool


def score(candidate: Candidate, term: str, term_words: list[str]) -> int | None:
    """Higher is better; None when the candidate does not match."""
    localpart = candidate.user_id[1:].split(":", 1)[0].casefold()
    name = (candidate.displayname or "").casefold()
    haystack = words(candidate.user_id) + words(name)
    if not all(any(w.startswith(t) for w in haystack) for t in term_words):
        return None
    points = 0
    if term in (name, localpart, candidate.user_id.casefold()):
        points += 100
    elif name.startswith(term) or localpart.startswith(term.lstrip("@")):
        points += 50
    if candidate.shares_room:
        points += 20
    return points


class UserDirectory:
    def __init__(self, db: Database, store: UserDirectoryStore, memberships: MembershipStore):
        self._db = db
        self._store = store
        self._memberships = memberships

    async def search(self, user_id: str, search_term: str, limit: int = DEFAULT_LIMIT) -> JsonDict:
        """POST /user_directory/search"""
        limit = min(limit, MAX_LIMIT)
        term = search_term.strip().casefold()
        term_words = words(term)
        if not term_words:
            return {"results": [], "limited": False}
        # Only an ASCII word narrows the query safely: SQLite's LOWER and LIKE fold ASCII only.
        ascii_words = [w for w in term_words if w.isascii()]
        pattern = like_pattern(max(ascii_words, key=len)) if ascii_words else "%"
        async with self._db.connection() as conn:
            rows = await self._store.visible_members(conn, user_id, pattern)
            joined = {m.room_id for m in await self._memberships.rooms_for_user(conn, user_id, ("join",))}
        scored = []
        for candidate in _candidates(rows, joined):
            points = score(candidate, term, term_words)
            if points is not None:
                scored.append((points, candidate))
        # Spec: "ordered by rank and then whether or not profile info is available".
        scored.sort(key=lambda pc: (-pc[0], pc[1].displayname is None, pc[1].avatar_url is None,
                                    pc[1].user_id))
        results = [_result(c) for _, c in scored[:limit]]
        return {"results": results, "limited": len(scored) > limit}


def _candidates(rows: list[VisibleMember], joined_rooms: set[str]) -> list[Candidate]:
    """One candidate per user; their profile from their latest join among the rows."""
    latest: dict[str, VisibleMember] = {}
    shares: set[str] = set()
    for row in rows:
        if row.room_id in joined_rooms:
            shares.add(row.user_id)
        if row.user_id not in latest or row.stream_ordering > latest[row.user_id].stream_ordering:
            latest[row.user_id] = row
    return [Candidate(u, r.displayname, r.avatar_url, u in shares) for u, r in latest.items()]


def _result(candidate: Candidate) -> JsonDict:
    result: JsonDict = {"user_id": candidate.user_id}
    if candidate.displayname:
        result["display_name"] = candidate.displayname
    if candidate.avatar_url and candidate.avatar_url.startswith("mxc://"):
        result["avatar_url"] = candidate.avatar_url
    return result
