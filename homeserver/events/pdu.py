"""The PDU model: an immutable view over a persistent data unit's JSON.

Spec: https://spec.matrix.org/v1.19/server-server-api/#pdus and the room-version pages
for the per-version event format. Unknown keys are kept: a server passes through what it
does not understand.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.canonical_json import encode_canonical_json, encode_known_plain
from homeserver.events.room_versions import RoomVersion

JsonDict = dict[str, Any]


class Pdu:
    """One room event in federation format.

    `event_id` is given by the caller for v1–2 events (it is in the JSON) or computed from
    the reference hash for v3+ (`homeserver.events.hashing.compute_event_id`).
    The JSON is not copied: callers must not mutate it after construction.
    """

    __slots__ = ("_json", "room_version", "event_id", "rejected_reason", "_plain", "_canonical")

    def __init__(self, pdu_json: JsonDict, room_version: RoomVersion, event_id: str | None = None,
                 *, plain: bool = False):
        """`plain`: the JSON is known to hold only exact JSON types (the builder checked)."""
        self._json = pdu_json
        self._plain = plain
        self._canonical: bytes | None = None
        self.room_version = room_version
        if event_id is None:
            if room_version.legacy_event_format:
                event_id = pdu_json["event_id"]
            else:
                from homeserver.events.hashing import compute_event_id

                event_id = compute_event_id(pdu_json, room_version)
        self.event_id: str = event_id
        # Set by the persistence path when the event failed auth (it is kept, not served).
        self.rejected_reason: str | None = None

    # -- plain fields --------------------------------------------------------------
    @property
    def type(self) -> str:
        return self._json["type"]

    @property
    def sender(self) -> str:
        return self._json["sender"]

    @property
    def room_id(self) -> str:
        """The room ID; for a v12 create event (which has none) it is derived from its ID."""
        room_id = self._json.get("room_id")
        if room_id is None and self.type == "m.room.create" and self.room_version.room_id_from_create_event:
            return "!" + self.event_id[1:]
        return room_id  # type: ignore[return-value]

    @property
    def content(self) -> JsonDict:
        return self._json.get("content", {})

    @property
    def state_key(self) -> str | None:
        """None for non-state events (absent key); "" is a valid state key."""
        return self._json.get("state_key")

    def is_state(self) -> bool:
        return "state_key" in self._json

    @property
    def depth(self) -> int:
        return self._json.get("depth", 0)

    @property
    def origin_server_ts(self) -> int:
        return self._json.get("origin_server_ts", 0)

    @property
    def unsigned(self) -> JsonDict:
        return self._json.get("unsigned", {})

    @property
    def redacts(self) -> str | None:
        """The redacted event's ID: in `content` from v11, top-level before (v11+ servers
        also read the top-level key for compatibility)."""
        if self.room_version.redacts_in_content:
            r = self.content.get("redacts")
            if isinstance(r, str):
                return r
        r = self._json.get("redacts")
        return r if isinstance(r, str) else None

    @property
    def prev_event_ids(self) -> list[str]:
        return _ids(self._json.get("prev_events", []), self.room_version)

    @property
    def auth_event_ids(self) -> list[str]:
        return _ids(self._json.get("auth_events", []), self.room_version)

    @property
    def membership(self) -> str | None:
        m = self.content.get("membership")
        return m if isinstance(m, str) else None

    def state_pair(self) -> tuple[str, str]:
        """`(type, state_key)`; only for state events."""
        sk = self.state_key
        assert sk is not None, "not a state event"
        return (self.type, sk)

    def get_json(self) -> JsonDict:
        """The PDU as sent over federation (do not mutate)."""
        return self._json

    def canonical_json(self) -> bytes:
        """The canonical JSON of `get_json()`, encoded once (the JSON never changes)."""
        out = self._canonical
        if out is None:
            out = encode_known_plain(self._json) if self._plain else encode_canonical_json(self._json)
            self._canonical = out
        return out

    def __repr__(self) -> str:
        return f"<Pdu {self.event_id} {self.type} {self.state_key!r}>"


def _ids(refs: list[Any], room_version: RoomVersion) -> list[str]:
    if room_version.legacy_event_format:
        # v1–2: [[event_id, {"sha256": ...}], ...]
        return [r[0] for r in refs]
    return list(refs)
