"""The redaction algorithm: what of an event survives, per room version.

Spec: https://spec.matrix.org/v1.19/client-server-api/#redactions and the "Redactions"
section of each room version (https://spec.matrix.org/v1.19/rooms/v11/#redactions ...).
Redaction is also the first step of event signing and of the reference hash, so this
must match other servers byte for byte.
"""

from __future__ import annotations

import copy
from typing import Any

from homeserver.events.room_versions import RoomVersion

JsonDict = dict[str, Any]

# Top-level keys every room version keeps.
_KEPT_KEYS = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    }
)
# Rooms v1–10 also keep `origin`, `membership` and `prev_state`; v11 stopped protecting
# them (they carry no auth meaning).
_LEGACY_KEPT_KEYS = _KEPT_KEYS | {"origin", "membership", "prev_state"}

_POWER_LEVELS_KEYS = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)


def redact(pdu_json: JsonDict, room_version: RoomVersion) -> JsonDict:
    """A new dict holding only what survives redaction (nested values are copied).

    `unsigned` never survives: callers add back what they serve (e.g. `redacted_because`).
    """
    return copy.deepcopy(redact_shared(pdu_json, room_version))


def redact_shared(pdu_json: JsonDict, room_version: RoomVersion) -> JsonDict:
    """`redact` without the copy: the result's nested values may be `pdu_json`'s own.

    For callers that only read or encode the result (hashing, signing): the deep copy
    is a quarter of building an event. The top-level dict and `content` are new, so
    they may be changed; anything below them belongs to `pdu_json` and must not be.
    """
    kept = _KEPT_KEYS if room_version.updated_redaction_rules else _LEGACY_KEPT_KEYS
    redacted = {k: v for k, v in pdu_json.items() if k in kept}
    content = pdu_json.get("content")
    if not isinstance(content, dict):
        content = {}
    redacted["content"] = _redact_content(pdu_json.get("type"), content, room_version)
    return redacted


def _redact_content(event_type: Any, content: JsonDict, rv: RoomVersion) -> JsonDict:
    if event_type == "m.room.create" and rv.updated_redaction_rules:
        # v11+: the whole create content is protected (room_version, m.federate,
        # predecessor, and v12's additional_creators all matter to auth).
        return dict(content)
    keys = _content_keys(event_type, rv)
    redacted = {k: content[k] for k in keys if k in content}
    if event_type == "m.room.member" and rv.updated_redaction_rules:
        # v11+: auth of a third-party invite needs `signed`, and only `signed`. The
        # object itself survives, emptied, even without `signed`: that is the literal
        # reading of "allows the `signed` key of `third_party_invite`" and what other
        # servers hash, so the reference hash (the event ID) must include it.
        tpi = content.get("third_party_invite")
        if isinstance(tpi, dict):
            redacted["third_party_invite"] = {"signed": tpi["signed"]} if "signed" in tpi else {}
    return redacted


def _content_keys(event_type: Any, rv: RoomVersion) -> tuple[str, ...]:
    if event_type == "m.room.member":
        if rv.restricted_join_rule_fix:
            return ("membership", "join_authorised_via_users_server")
        return ("membership",)
    if event_type == "m.room.create":
        return ("creator",)
    if event_type == "m.room.join_rules":
        return ("join_rule", "allow") if rv.restricted_join_rule else ("join_rule",)
    if event_type == "m.room.power_levels":
        if rv.updated_redaction_rules:
            return (*_POWER_LEVELS_KEYS, "invite")
        return _POWER_LEVELS_KEYS
    if event_type == "m.room.aliases" and rv.special_case_aliases_auth:
        return ("aliases",)
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    if event_type == "m.room.redaction" and rv.updated_redaction_rules:
        return ("redacts",)
    return ()
