"""Known, documented deviations of Synapse from the Matrix spec (docs/differential.md).

Each one is narrow: it names the exact input shape where Synapse departs from the spec
text, and the tests keep asserting our spec behaviour everywhere else. Add one only with
the spec text that supports our side, and list it in docs/differential.md.
"""

from __future__ import annotations

import math
import re
from typing import Any

from unpaddedbase64 import decode_base64


def synapse_redaction_expected(
    room_version: str, event: dict[str, Any], ours: dict[str, Any]
) -> dict[str, Any]:
    """What Synapse returns for `redact(event)`, given our spec-following result.

    D1: in room v12 Synapse drops `room_id` from a redacted m.room.create event. A v12
    create event must not carry a `room_id` (rooms/v12 auth rule 1.2 rejects it), but the
    v12 redaction algorithm (the v11 one, rooms/v11#redactions) keeps the top-level
    `room_id` of every event. Only invalid (rejected) create events are affected.
    """
    if room_version == "12" and event.get("type") == "m.room.create" and "room_id" in ours:
        return {k: v for k, v in ours.items() if k != "room_id"}
    return ours


# D2: Synapse keeps `unsigned` (emptied, bar the local bookkeeping keys below) in a
# redacted event whenever the input had one. The spec's redaction algorithm keeps no
# `unsigned` at all (client-server-api#redactions: "all keys ... not listed are
# removed"); `unsigned` is never covered by hashes or signatures, so this changes
# nothing on the wire.
SYNAPSE_KEPT_UNSIGNED_KEYS = frozenset({"age_ts", "replaces_state"})


def strip_synapse_unsigned(event: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Synapse's redacted event without the `unsigned` it keeps (D2), checking that the
    kept part is exactly D2's shape."""
    if "unsigned" not in theirs:
        return theirs
    assert "unsigned" in event, "Synapse invented an unsigned section"
    kept = theirs["unsigned"]
    original = event["unsigned"] if isinstance(event["unsigned"], dict) else {}
    expected = {k: v for k, v in original.items() if k in SYNAPSE_KEPT_UNSIGNED_KEYS}
    assert kept == expected, f"Synapse kept unexpected unsigned keys: {kept!r}"
    return {k: v for k, v in theirs.items() if k != "unsigned"}


def synapse_auth_crash_expected(
    event: dict[str, Any], auth_events: list[dict[str, Any]]
) -> str | None:
    """The deviation under which Synapse's auth code raises instead of rejecting, or None.
    (Our side must then reject: the spec rejects these events.)

    D3: Synapse's auth events selection indexes `third_party_invite.signed.token`
    without checking it exists, so an invite whose `third_party_invite` lacks a `signed`
    object with a `token` raises KeyError/TypeError. The spec rejects it (rooms/v12 auth
    rules 5.4.1.2 and 5.4.1.3).

    D6: Synapse decodes the `public_key`(s) of the m.room.third_party_invite event
    without guarding against bad base64, so redeeming an invite whose key is not valid
    base64 raises binascii.Error. The spec rejects it ("If any signature in `signed`
    matches any public key ... allow ... Otherwise, reject", rule 5.4.1.7-8).
    """
    content = event.get("content")
    if event.get("type") != "m.room.member" or not isinstance(content, dict):
        return None
    if content.get("membership") != "invite" or "third_party_invite" not in content:
        return None
    tpi = content["third_party_invite"]
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    if not isinstance(signed, dict) or "token" not in signed:
        return "D3"
    for auth_event in auth_events:
        if auth_event.get("type") == "m.room.third_party_invite":
            keys = [auth_event.get("content", {}).get("public_key")]
            keys += [
                k.get("public_key") for k in auth_event.get("content", {}).get("public_keys", [])
            ]
            if any(isinstance(k, str) and not _is_base64(k) for k in keys):
                return "D6"
    return None


def has_bad_third_party_key(events: list[dict[str, Any]]) -> bool:
    """Whether an m.room.third_party_invite among `events` has a key that is not valid
    base64: D6's precondition. Synapse's state resolution re-checks the auth of the
    events it resolves, and raises there too when one redeems such an invite."""
    for event in events:
        content = event.get("content")
        if event.get("type") != "m.room.third_party_invite" or not isinstance(content, dict):
            continue
        keys = [content.get("public_key")]
        keys += [k.get("public_key") for k in content.get("public_keys", [])
                 if isinstance(k, dict)]
        if any(isinstance(k, str) and not _is_base64(k) for k in keys):
            return True
    return False


def _is_base64(text: str) -> bool:
    try:
        decode_base64(text)
    except ValueError:
        return False
    return True


def _domain(identifier: Any) -> str | None:
    if not isinstance(identifier, str) or ":" not in identifier:
        return None
    return identifier.partition(":")[2]


def synapse_stricter_auth(
    event: dict[str, Any], create: dict[str, Any], synapse_reason: str
) -> str | None:
    """The deviation under which Synapse rejects an event the spec's rules allow, or None.

    D4: in a room whose create event has `m.federate: false`, Synapse also rejects an
    m.room.member event whose *target* (state_key) is on another server than the room
    creator, e.g. a local user inviting or banning a remote user. The spec's rule
    (rooms/v12 auth rule 4; rule 3 in earlier versions) compares only the *sender*'s
    domain with the create event's sender's domain. Such events are left out of the
    simulated history so that later comparisons stay meaningful.
    """
    create_content = create.get("content") or {}
    if (
        event.get("type") == "m.room.member"
        and create_content.get("m.federate", True) is False
        and _domain(event.get("state_key")) != _domain(create.get("sender"))
        and _domain(event.get("sender")) == _domain(create.get("sender"))
        and "unfederatable" in synapse_reason
    ):
        return "D4"
    return None


# The integer string format of rooms/v1#mroompower_levels-events-accept-values-as-strings.
_SPEC_INT_STRING = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_LEVEL_NAMES = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)


def _spec_defined_level(value: Any, room_version: int) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, str):
        return _SPEC_INT_STRING.fullmatch(value) is not None
    return isinstance(value, float) and room_version <= 5 and math.isfinite(value)


def pre_v10_undefined_power_levels(room_version: str, event: dict[str, Any]) -> bool:
    """D5: before room v10, power-level values that are neither integers nor strings in
    the spec's integer format (nor v1–5 floats) have no defined meaning.

    The spec only rejects such values in `users` (rooms/v1 auth rule 10.1: "values that
    are integers (or a string that is an integer)") and says nothing of them in the named
    levels, `events` or `notifications`. Synapse applies Python's int(): it raises on
    "5.0" or "abc", but accepts "1_0", non-ASCII digits and `true` (as 1). We reject bad
    `users` values per 10.1 and read the other ones as absent (their default). The
    simulator still compares the verdict where both are defined, but never admits such
    an event into a history, so nothing later depends on its undefined meaning.
    """
    version = int(room_version)
    if version >= 10 or event.get("type") != "m.room.power_levels":
        return False
    content = event.get("content")
    if not isinstance(content, dict):
        return False
    values = [content[k] for k in _LEVEL_NAMES if k in content]
    for key in ("users", "events", "notifications"):
        sub = content.get(key)
        if isinstance(sub, dict):
            values.extend(sub.values())
        elif key in content:
            return True
    return not all(_spec_defined_level(v, version) for v in values)
