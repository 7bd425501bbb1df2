"""Canonical JSON and the PDU format checks that apply before any signature work.

Spec: https://spec.matrix.org/v1.19/appendices/#canonical-json (encoding),
https://spec.matrix.org/v1.19/client-server-api/#size-limits (size limits) and the
per-version event formats at https://spec.matrix.org/v1.19/rooms/ .
"""

from __future__ import annotations

import json
import math
from typing import Any

import canonicaljson
import orjson

from homeserver.events.room_versions import RoomVersion

# Spec: "The complete event MUST NOT be larger than 65536 bytes", measured on the
# federation format, signatures included, as canonical JSON.
MAX_PDU_SIZE = 65536
# Identifiers and the `type`/`state_key` keys are each limited to 255 bytes of UTF-8.
MAX_KEY_BYTES = 255
_LIMITED_KEYS = ("sender", "room_id", "state_key", "type", "event_id")
# Canonical JSON numbers must fit an IEEE double exactly.
CANONICALJSON_MAX_INT = 2**53 - 1
CANONICALJSON_MIN_INT = -CANONICALJSON_MAX_INT
# The PDU schemas bound the DAG fan-out of a single event.
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10
_EVENT_REF_LIMITS = (("prev_events", MAX_PREV_EVENTS), ("auth_events", MAX_AUTH_EVENTS))
_OPTIONAL_KEYS = (
    ("state_key", "a string", str),
    ("signatures", "an object", dict),
    ("unsigned", "an object", dict),
    ("redacts", "a string", str),
)


def encode_canonical_json(obj: Any) -> bytes:
    """Shortest UTF-8 JSON with sorted keys (appendices#canonical-json).

    Raises ValueError for NaN/Infinity, which JSON cannot express. Floats are encoded
    as given: events in rooms v1–5 may carry them and their hashes were computed so.
    """
    return _encode(obj, known_plain=False)


def encode_and_check_plain(obj: Any) -> tuple[bytes, bool]:
    """`encode_canonical_json(obj)`, and whether `obj` held only exact JSON types.

    When it did, values assembled from its parts and further exact str/int/dict/list
    values can be encoded with `encode_known_plain`, which skips the walk over them.
    """
    try:
        out = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return canonicaljson.encode_canonical_json(obj), False
    if _plain(obj):
        return out, True
    return canonicaljson.encode_canonical_json(obj), False


def encode_known_plain(obj: Any) -> bytes:
    """`encode_canonical_json` of a value known to hold only exact JSON types (see
    `encode_and_check_plain`); what orjson refuses still goes to the library."""
    return _encode(obj, known_plain=True)


def _encode(obj: Any, *, known_plain: bool) -> bytes:
    """orjson's output where it is the library's, else the library's own encoding.

    For exact dict/list/tuple/str/int/bool/None values the two agree byte for byte
    (escapes, code point key order: tests/events/test_canonical_json_fuzz.py). Anything
    else goes to the library: floats above all (orjson writes 1e-7 where the library
    writes 1e-07, and NaN as null where the library raises), subclasses (the library
    calls their own methods), enums and UUIDs (orjson encodes what the library refuses).
    So does whatever orjson refuses (integers beyond 64 bits, keys that are not exact
    str, lone surrogates, nesting over 253, cycles), which the library encodes or
    refuses with its own ValueError/TypeError.
    `known_plain`: the caller has already walked `obj` and found only those types.
    """
    try:
        out = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return canonicaljson.encode_canonical_json(obj)
    if known_plain or _plain(obj):
        return out
    return canonicaljson.encode_canonical_json(obj)


def _plain(value: Any) -> bool:
    """Whether only exact dict/list/tuple/str/int/bool/None occur in `value`.

    Recursive: only called on what orjson encoded, so nesting is at most 253 deep.
    """
    t = type(value)
    if t is dict:
        children = value.values()
    elif t is list or t is tuple:
        children = value
    else:
        return t is str or t is int or t is bool or value is None
    for v in children:
        t = type(v)
        if t is str or t is int:
            continue
        if t is dict or t is list or t is tuple:
            if not _plain(v):
                return False
        elif t is not bool and v is not None:
            return False
    return True


def decode_canonical_json(text: str) -> Any:
    """`json.loads(text)`, several times faster when `text` is canonical JSON.

    orjson parses integers beyond 64 bits as floats and refuses what `json` accepts
    (lone surrogate escapes, NaN, 1e400). Its result is taken only when it encodes
    back to exactly `text`: a float where `text` had an integer could not, and a float
    that did is the one `json` reads (both round-trip floats exactly).
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
    try:
        same = orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == text.encode("utf-8")
    except orjson.JSONEncodeError:
        same = False
    return value if same else json.loads(text)


class EventFormatError(ValueError):
    """A PDU that does not match its room version's event format.

    `errcode` is what a client-facing endpoint answers with; federation drops the event.
    """

    def __init__(self, message: str, errcode: str = "M_BAD_JSON"):
        super().__init__(message)
        self.errcode = errcode


def check_event_format(pdu_json: dict[str, Any], room_version: RoomVersion) -> None:
    """Reject a PDU that breaks its version's format, number or size rules.

    Spec: https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu
    (step 1) and https://spec.matrix.org/v1.19/client-server-api/#size-limits .
    """
    if not isinstance(pdu_json, dict):
        raise EventFormatError("event is not a JSON object")
    plain = room_version.strict_canonicaljson and _check_strict_numbers(pdu_json)
    _check_required_keys(pdu_json, room_version)
    _check_event_refs(pdu_json, room_version)
    _check_key_lengths(pdu_json)
    _check_total_size(pdu_json, plain)


def _check_strict_numbers(value: Any) -> bool:
    """Reject floats and integers outside [-(2**53)+1, 2**53-1]; return whether only
    exact dict/list/str/int/bool/None occur (then orjson's encoding is canonical)."""
    plain = True
    # Iterative walk: a hostile event may nest deeply enough to exhaust recursion.
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        # Exact types first: they are nearly every value of a real event.
        if t is str or t is bool or v is None:
            continue
        if t is dict:
            stack.extend(v.values())
            continue
        if t is list:
            stack.extend(v)
            continue
        if t is int:
            if not CANONICALJSON_MIN_INT <= v <= CANONICALJSON_MAX_INT:
                raise EventFormatError(f"integer out of canonical JSON range: {v}")
            continue
        plain = False
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int):
            if not CANONICALJSON_MIN_INT <= v <= CANONICALJSON_MAX_INT:
                raise EventFormatError(f"integer out of canonical JSON range: {v}")
        elif isinstance(v, float):
            what = "non-finite number" if not math.isfinite(v) else "float"
            raise EventFormatError(f"{what} not allowed in this room version: {v!r}")
    return plain


def _is_int(v: Any) -> bool:
    # bool is an int subclass in Python but `true` is not a JSON number.
    return isinstance(v, int) and not isinstance(v, bool)


def _require(pdu_json: dict[str, Any], key: str, kind: type, kind_name: str) -> None:
    if key not in pdu_json:
        raise EventFormatError(f"missing required key {key!r}")
    v = pdu_json[key]
    ok = _is_int(v) if kind is int else isinstance(v, kind)
    if not ok:
        raise EventFormatError(f"{key!r} must be {kind_name}")


def _check_required_keys(pdu_json: dict[str, Any], room_version: RoomVersion) -> None:
    get = pdu_json.get
    # Exact types pass at once; anything else (absent, wrong, a subclass) takes the
    # checks one by one, which raise for the first key that fails.
    if not (
        type(get("type")) is str
        and type(get("sender")) is str
        and type(get("content")) is dict
        and type(get("depth")) is int
        and type(get("origin_server_ts")) is int
        and type(get("hashes")) is dict
        and type(get("prev_events")) is list
        and type(get("auth_events")) is list
    ):
        _require(pdu_json, "type", str, "a string")
        _require(pdu_json, "sender", str, "a string")
        _require(pdu_json, "content", dict, "an object")
        _require(pdu_json, "depth", int, "an integer")
        _require(pdu_json, "origin_server_ts", int, "an integer")
        _require(pdu_json, "hashes", dict, "an object")
        _require(pdu_json, "prev_events", list, "an array")
        _require(pdu_json, "auth_events", list, "an array")
    # v12: the create event has no room ID (its ID *is* the room ID); the auth rules,
    # not the format check, reject a create event that carries one.
    v12_create = room_version.room_id_from_create_event and pdu_json["type"] == "m.room.create"
    if not v12_create or "room_id" in pdu_json:
        _require(pdu_json, "room_id", str, "a string")
    if room_version.legacy_event_format:
        _require(pdu_json, "event_id", str, "a string")
    if pdu_json["depth"] < 0:
        raise EventFormatError("'depth' must not be negative")
    for key, kind_name, kind in _OPTIONAL_KEYS:
        if key in pdu_json and not isinstance(pdu_json[key], kind):
            raise EventFormatError(f"{key!r} must be {kind_name}")
    sha256 = pdu_json["hashes"].get("sha256")
    if sha256 is not None and not isinstance(sha256, str):
        raise EventFormatError("'hashes.sha256' must be a string")


def _check_event_refs(pdu_json: dict[str, Any], room_version: RoomVersion) -> None:
    legacy = room_version.legacy_event_format
    for key, limit in _EVENT_REF_LIMITS:
        refs = pdu_json[key]
        if len(refs) > limit:
            raise EventFormatError(f"too many {key}: {len(refs)} > {limit}")
        for ref in refs:
            if legacy:
                # v1–2: `[event_id, {"sha256": ...}]`; some servers send `{}` for events
                # whose hash they did not know, so the hash object's keys are not checked.
                ok = (
                    isinstance(ref, list)
                    and len(ref) == 2
                    and isinstance(ref[0], str)
                    and isinstance(ref[1], dict)
                )
            else:
                ok = isinstance(ref, str)
            if not ok:
                raise EventFormatError(f"malformed entry in {key}: {ref!r}")


def _check_key_lengths(pdu_json: dict[str, Any]) -> None:
    for key in _LIMITED_KEYS:
        v = pdu_json.get(key)
        # A code point is at most 4 bytes: short strings need no encoding.
        if (
            isinstance(v, str)
            and len(v) > MAX_KEY_BYTES // 4
            and len(v.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES
        ):
            raise EventFormatError(f"{key!r} exceeds {MAX_KEY_BYTES} bytes", "M_TOO_LARGE")


def _check_total_size(pdu_json: dict[str, Any], plain: bool) -> None:
    try:
        size = len(_encode(pdu_json, known_plain=plain))
    except (ValueError, TypeError) as e:
        raise EventFormatError(f"event is not valid JSON: {e}") from e
    if size > MAX_PDU_SIZE:
        raise EventFormatError(f"event is {size} bytes, over {MAX_PDU_SIZE}", "M_TOO_LARGE")
