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


def _closure(
    starts: Any, auth_of: dict[str, list[str]], within: set[str] | None = None
) -> set[str]:
    """Events reachable from `starts` through auth_events, `starts` included; with
    `within`, the walk only steps onto events in `within`."""
    seen = set(starts)
    stack = list(seen)
    while stack:
        for aid in auth_of.get(stack.pop(), ()):
            if aid not in seen and (within is None or aid in within):
                seen.add(aid)
                stack.append(aid)
    return seen


def _is_power_event(event: dict[str, Any]) -> bool:
    if event.get("state_key") == "" and event.get("type") in (
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.create",
    ):
        return True
    membership = (event.get("content") or {}).get("membership")
    return (
        event.get("type") == "m.room.member"
        and membership in ("leave", "ban")
        and event.get("sender") != event.get("state_key")
    )


def synapse_power_closure_differs(
    room_version: str,
    state_sets: list[dict[tuple[str, str], str]],
    events: dict[str, dict[str, Any]],
) -> bool:
    """D7: whether Synapse's step-1 set X differs from the spec's for this resolution.

    rooms/v2#algorithm step 1: "For each such power event P, enlarge X by adding the
    events in the auth chain of P which also belong to the full conflicted set", and the
    auth chain is everything reachable through auth_events ("Auth chain" definition).
    Synapse (synapse/state/v2.py `_add_event_and_auth_chain_to_graph`) only walks
    through events that are themselves in the full conflicted set, so a conflicted
    event reachable from a power event only through an unconflicted one (typically the
    member event of a power-level event's sender, behind that unconflicted power-level
    event) is sorted by mainline order instead. That can change which of two events
    for the same key wins. We follow the spec text.
    """
    if room_version == "1":
        return False
    auth_of = {eid: _auth_ids(ev) for eid, ev in events.items()}
    keys = set().union(*state_sets)
    unconflicted_ids = set()
    conflicted_ids: set[str] = set()
    for key in keys:
        ids = {s.get(key) for s in state_sets}
        if len(ids) == 1 and None not in ids:
            unconflicted_ids |= ids  # type: ignore[arg-type]
        else:
            conflicted_ids |= {i for i in ids if i is not None}
    chains = [_closure(s.values(), auth_of) for s in state_sets]
    full = conflicted_ids | (set().union(*chains) - chains[0].intersection(*chains[1:]))
    if room_version == "12":
        above = {
            e for e in _closure(conflicted_ids, auth_of) if _closure([e], auth_of) & conflicted_ids
        }
        full |= above
    power = {e for e in full if e in events and _is_power_event(events[e])}
    spec_x = power | (_closure(power, auth_of) & full)
    synapse_x = _closure(power, auth_of, within=full)
    return spec_x != synapse_x


def _auth_ids(event: dict[str, Any]) -> list[str]:
    refs = event.get("auth_events", [])
    return [r[0] if isinstance(r, list) else r for r in refs]


def v1_member_conflicts_interact(
    state_sets: list[dict[tuple[str, str], str]],
    events: dict[str, dict[str, Any]],
    differing_keys: set[tuple[str, str]],
) -> bool:
    """D8 (spec ambiguity, room v1 only): several conflicted m.room.member keys whose
    auth checks depend on each other.

    rooms/v1#state-resolution resolves conflicts "between m.room.member events" by
    "repeat[ing] the above process", updating R with each allowed event, but never says
    in which order the member keys are taken, so the result may depend on that order. We
    take them in sorted order, updating R as we go; Synapse checks every member conflict
    against R as it stood before the member pass (synapse/state/v1.py
    `_resolve_state_events`). They differ only when one conflicted member event's auth
    check reads another conflicted member key (e.g. a kick by a user whose own
    membership is conflicted); other conflicted keys, checked afterwards against the
    members' outcome, may then differ too.
    """
    # Power levels and join rules are settled before the member pass, so they never
    # differ through D8; other keys are checked against the members' outcome, so they
    # may follow a member difference.
    if not any(k[0] == "m.room.member" for k in differing_keys):
        return False
    if any(k[0] in ("m.room.power_levels", "m.room.join_rules") for k in differing_keys):
        return False
    conflicted: dict[tuple[str, str], set[str]] = {}
    for key in set().union(*state_sets):
        ids = {s[key] for s in state_sets if key in s}
        if len(ids) > 1 and key[0] == "m.room.member":
            conflicted[key] = ids
    for key, ids in conflicted.items():
        for eid in ids:
            event = events.get(eid)
            if event is None:
                continue
            reads = {
                ("m.room.member", event.get("sender")),
                ("m.room.member", event.get("state_key")),
            }
            if any(k in conflicted for k in reads - {key}):
                return True
    return False


# --- Known bugs on OUR side, awaiting a fix (remove with the fix; the strict xfail in
# test_redaction.py fails as soon as the fix lands, as a reminder) ---------------------


def bug_r1_third_party_invite_without_signed(room_version: str, event: dict[str, Any]) -> bool:
    """BUG-R1: from room v11 our redaction drops a member event's `third_party_invite`
    object when it has no `signed` key; Synapse keeps it as `{}` (rooms/v11#redactions:
    "it allows the `signed` key of the `third_party_invite` key"). The reference hash,
    hence the event ID, of such an event (e.g. a join carrying `third_party_invite: {}`,
    which the auth rules allow) then differs from every Synapse's."""
    content = event.get("content")
    return (
        int(room_version) >= 11
        and event.get("type") == "m.room.member"
        and isinstance(content, dict)
        and isinstance(content.get("third_party_invite"), dict)
        and "signed" not in content["third_party_invite"]
    )
