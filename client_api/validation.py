"""Shape checks for request bodies and query strings, with the spec's error codes.

Missing keys are M_MISSING_PARAM; present keys of the wrong type are M_BAD_JSON (body)
or M_INVALID_PARAM (query).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from homeserver.errors import BadJson, InvalidParam, MissingParam

T = TypeVar("T")
_MISSING: Any = object()

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object",
               list: "an array", float: "a number"}


def _check_type(key: str, value: Any, typ: type) -> None:
    # bool is an int subclass: never accept it where an integer is expected.
    if isinstance(value, bool) and typ is not bool:
        raise BadJson(f"'{key}' must be {_TYPE_NAMES.get(typ, typ.__name__)}")
    if not isinstance(value, typ):
        raise BadJson(f"'{key}' must be {_TYPE_NAMES.get(typ, typ.__name__)}")


def require(body: Mapping[str, Any], key: str, typ: type[T]) -> T:
    if key not in body or body[key] is None:
        raise MissingParam(f"Missing '{key}'")
    _check_type(key, body[key], typ)
    return body[key]  # type: ignore[no-any-return]


def optional(body: Mapping[str, Any], key: str, typ: type[T], default: Any = None) -> Any:
    if key not in body or body[key] is None:
        return default
    _check_type(key, body[key], typ)
    return body[key]


def query_int(query: Mapping[str, str], key: str, default: int | None = None,
              minimum: int | None = None, maximum: int | None = None) -> int | None:
    raw = query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParam(f"'{key}' must be an integer") from None
    if minimum is not None and value < minimum:
        raise InvalidParam(f"'{key}' must be at least {minimum}")
    if maximum is not None and value > maximum:
        value = maximum
    return value


def query_bool(query: Mapping[str, str], key: str, default: bool = False) -> bool:
    raw = query.get(key)
    if raw is None:
        return default
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise InvalidParam(f"'{key}' must be true or false")
