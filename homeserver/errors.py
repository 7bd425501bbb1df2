"""The one MatrixError family. Services raise these; only adapters turn them into HTTP.

Spec: https://spec.matrix.org/v1.19/client-server-api/#standard-error-response
Each subclass fixes its errcode and HTTP status as class attributes so that a raise site
says only what went wrong.
"""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    errcode = "M_UNKNOWN"
    status = 500

    def __init__(self, error: str = "", **extra: Any):
        super().__init__(error or self.errcode)
        self.error = error or self.errcode
        # Extra top-level keys of the error body (e.g. retry_after_ms, soft_logout).
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.error, **self.extra}


class BadRequest(MatrixError):
    errcode = "M_UNKNOWN"
    status = 400


class NotJson(MatrixError):
    errcode = "M_NOT_JSON"
    status = 400


class BadJson(MatrixError):
    errcode = "M_BAD_JSON"
    status = 400


class MissingParam(MatrixError):
    errcode = "M_MISSING_PARAM"
    status = 400


class InvalidParam(MatrixError):
    errcode = "M_INVALID_PARAM"
    status = 400


class TooLarge(MatrixError):
    errcode = "M_TOO_LARGE"
    status = 413


class Unrecognized(MatrixError):
    errcode = "M_UNRECOGNIZED"
    status = 404


class MethodNotAllowed(MatrixError):
    errcode = "M_UNRECOGNIZED"
    status = 405


class NotFound(MatrixError):
    errcode = "M_NOT_FOUND"
    status = 404


class Forbidden(MatrixError):
    errcode = "M_FORBIDDEN"
    status = 403


class UserDeactivated(MatrixError):
    errcode = "M_USER_DEACTIVATED"
    status = 403


class MissingToken(MatrixError):
    errcode = "M_MISSING_TOKEN"
    status = 401


class UnknownToken(MatrixError):
    """An access token that is unknown, expired or revoked.

    `soft_logout` is true when the token merely expired (the client may refresh or log in
    again keeping its device and keys)."""

    errcode = "M_UNKNOWN_TOKEN"
    status = 401

    def __init__(self, error: str = "Unknown access token", soft_logout: bool = False):
        super().__init__(error, soft_logout=soft_logout)


class LimitExceeded(MatrixError):
    errcode = "M_LIMIT_EXCEEDED"
    status = 429

    def __init__(self, retry_after_ms: int, error: str = "Too many requests"):
        super().__init__(error, retry_after_ms=retry_after_ms)
        self.retry_after_ms = retry_after_ms


class UserInUse(MatrixError):
    errcode = "M_USER_IN_USE"
    status = 400


class InvalidUsername(MatrixError):
    errcode = "M_INVALID_USERNAME"
    status = 400


class Exclusive(MatrixError):
    errcode = "M_EXCLUSIVE"
    status = 400


class WeakPassword(MatrixError):
    errcode = "M_WEAK_PASSWORD"
    status = 400


class GuestAccessForbidden(MatrixError):
    errcode = "M_GUEST_ACCESS_FORBIDDEN"
    status = 403


class Unauthorized(MatrixError):
    """Wrong credentials inside a UIAA stage or a login (spec: 403 M_FORBIDDEN for login)."""

    errcode = "M_FORBIDDEN"
    status = 403


class ServerManagedType(MatrixError):
    """Account data types the server manages (m.fully_read, m.push_rules): the spec
    answers writes to them with 405 and M_BAD_JSON."""

    errcode = "M_BAD_JSON"
    status = 405


class ProfileTooLarge(MatrixError):
    errcode = "M_PROFILE_TOO_LARGE"
    status = 400


class KeyTooLarge(MatrixError):
    errcode = "M_KEY_TOO_LARGE"
    status = 400


class UnsupportedRoomVersion(MatrixError):
    errcode = "M_UNSUPPORTED_ROOM_VERSION"
    status = 400


class ResourceLimitExceeded(MatrixError):
    errcode = "M_RESOURCE_LIMIT_EXCEEDED"
    status = 403


class InteractiveAuthRequired(MatrixError):
    """401 with the UIAA body: flows, params, session, completed, and maybe an error.

    Spec: https://spec.matrix.org/v1.19/client-server-api/#user-interactive-authentication-api
    """

    errcode = "M_FORBIDDEN"
    status = 401

    def __init__(self, body: dict[str, Any]):
        super().__init__(body.get("error", "Authentication required"))
        self.body = body

    def to_json(self) -> dict[str, Any]:
        return self.body


class RoomInUse(MatrixError):
    """createRoom: the requested alias is taken."""

    errcode = "M_ROOM_IN_USE"
    status = 400


class BadAlias(MatrixError):
    """m.room.canonical_alias names an alias that does not point at the room."""

    errcode = "M_BAD_ALIAS"
    status = 400


class Conflict(MatrixError):
    """PUT /directory/room/{alias}: the alias exists (spec: 409 with M_UNKNOWN)."""

    errcode = "M_UNKNOWN"
    status = 409


class InvalidSignature(MatrixError):
    """A signature on uploaded keys does not verify (spec: /keys/device_signing/upload)."""

    errcode = "M_INVALID_SIGNATURE"
    status = 400


class WrongRoomKeysVersion(MatrixError):
    """A key-backup write names a version that is not the current one; the body carries
    `current_version` so the client can re-sync (spec: PUT /room_keys/keys)."""

    errcode = "M_WRONG_ROOM_KEYS_VERSION"
    status = 403

    def __init__(self, current_version: str | None):
        super().__init__("Wrong backup version", current_version=current_version)
