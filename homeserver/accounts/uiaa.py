"""User-interactive authentication (UIAA): flows, sessions and stage checks.

Spec: https://spec.matrix.org/v1.19/client-server-api/#user-interactive-authentication-api
A session is bound to one operation: its name, the user it acts for and a digest of the
request's parameters. A session started to delete device A cannot authorise deleting
device B, nor a password change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from typing import Any

import attrs

from homeserver.accounts.identifiers import requested_user_id
from homeserver.accounts.passwords import Passwords
from homeserver.clock import Clock
from homeserver.errors import BadJson, BadRequest, Forbidden, InteractiveAuthRequired, MatrixError
from homeserver.storage.database import Connection, Database
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.uiaa_sessions import UiaaSessionRow, UiaaSessionStore
from homeserver.storage.users import UserStore

PASSWORD = "m.login.password"
DUMMY = "m.login.dummy"
REGISTRATION_TOKEN = "m.login.registration_token"

Flows = Sequence[Sequence[str]]


@attrs.frozen
class UiaaResult:
    """A completed authentication; pass it to `finish()` in the operation's transaction."""

    session_id: str
    completed: dict[str, Any]

    @property
    def user_id(self) -> str | None:
        """The user proven by the password stage, if there was one."""
        value = self.completed.get(PASSWORD)
        return value if isinstance(value, str) else None


class _StageFailed(Exception):
    def __init__(self, errcode: str, error: str):
        self.errcode = errcode
        self.error = error


def op_digest(operation: str, user_id: str | None, params: Any) -> str:
    blob = json.dumps([operation, user_id, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class InteractiveAuth:
    def __init__(self, db: Database, sessions: UiaaSessionStore, users: UserStore,
                 registration_tokens: RegistrationTokenStore, passwords: Passwords, clock: Clock,
                 *, server_name: str, session_lifetime_ms: int, config_tokens: Sequence[str] = ()):
        self._db = db
        self._sessions = sessions
        self._users = users
        self._reg_tokens = registration_tokens
        self._passwords = passwords
        self._clock = clock
        self._server_name = server_name
        self._lifetime_ms = session_lifetime_ms
        self._config_tokens = tuple(config_tokens)

    async def authenticate(self, auth: Any, *, flows: Flows, operation: str,
                           user_id: str | None, params: Any = None) -> UiaaResult:
        """Run one round of UIAA for `operation`; raises InteractiveAuthRequired until done.

        `auth` is the request's `auth` value (None when absent). `user_id` is the
        account acted on when known (from the access token); a password stage must
        prove that account."""
        if auth is not None and not isinstance(auth, dict):
            raise BadJson("'auth' must be an object")
        digest = op_digest(operation, user_id, params)
        session = await self._session_for(auth, operation, user_id, digest)
        completed = dict(session.completed)
        error: _StageFailed | None = None
        stage = (auth or {}).get("type")
        if stage is not None:
            if not isinstance(stage, str):
                raise BadJson("'auth.type' must be a string")
            try:
                self._check_stage_allowed(stage, flows, completed)
                completed[stage] = await self._run_stage(stage, auth or {}, user_id)
            except _StageFailed as failed:
                error = failed
            else:
                async with self._db.transaction() as conn:
                    await self._sessions.set_completed(conn, session.session_id, completed)
        if error is None and any(all(s in completed for s in flow) for flow in flows):
            return UiaaResult(session.session_id, completed)
        body = self._challenge(flows, session.session_id, completed)
        if error is not None:
            body.update(errcode=error.errcode, error=error.error)
        raise InteractiveAuthRequired(body)

    async def finish(self, conn: Connection, result: UiaaResult) -> None:
        """The operation succeeded: spend the session and any registration token it used."""
        token = result.completed.get(REGISTRATION_TOKEN)
        if isinstance(token, dict) and token.get("stored"):
            await self._reg_tokens.complete(conn, token["token"])
        await self._sessions.delete(conn, result.session_id)

    def _challenge(self, flows: Flows, session_id: str, completed: dict[str, Any]) -> dict[str, Any]:
        return {"flows": [{"stages": list(flow)} for flow in flows], "params": {},
                "session": session_id, "completed": sorted(completed)}

    async def _session_for(self, auth: dict[str, Any] | None, operation: str,
                           user_id: str | None, digest: str) -> UiaaSessionRow:
        session_id = auth.get("session") if auth else None
        now = self._clock.time_ms()
        if session_id is None:
            new_id = secrets.token_urlsafe(24)
            async with self._db.transaction() as conn:
                await self._expire_sessions(conn, now)
                await self._sessions.create(conn, new_id, operation=operation, user_id=user_id,
                                            op_digest=digest, created_ts=now)
            return UiaaSessionRow(new_id, operation, user_id, digest, {}, now)
        if not isinstance(session_id, str):
            raise BadJson("'auth.session' must be a string")
        session = await self._sessions.get(self._db, session_id)
        if session is None or session.created_ts + self._lifetime_ms <= now:
            raise BadRequest("Unknown or expired session ID")
        if (session.operation != operation or session.user_id != user_id
                or not hmac.compare_digest(session.op_digest, digest)):
            raise Forbidden("Requested operation has changed during the UI authentication session")
        return session

    async def _expire_sessions(self, conn: Connection, now: int) -> None:
        for old in await self._sessions.pop_expired(conn, now - self._lifetime_ms):
            token = old.completed.get(REGISTRATION_TOKEN)
            if isinstance(token, dict) and token.get("stored"):
                await self._reg_tokens.release(conn, token["token"])

    @staticmethod
    def _check_stage_allowed(stage: str, flows: Flows, completed: dict[str, Any]) -> None:
        """The stage must come next in some flow whose earlier stages are all done."""
        for flow in flows:
            remaining = [s for s in flow if s not in completed]
            if remaining and remaining[0] == stage:
                return
        raise _StageFailed("M_UNRECOGNIZED", f"Authentication stage {stage} is not expected here")

    async def _run_stage(self, stage: str, auth: dict[str, Any], user_id: str | None) -> Any:
        if stage == DUMMY:
            return True
        if stage == PASSWORD:
            return await self._password_stage(auth, user_id)
        if stage == REGISTRATION_TOKEN:
            return await self._registration_token_stage(auth)
        raise _StageFailed("M_UNRECOGNIZED", f"Unsupported authentication stage {stage}")

    async def _password_stage(self, auth: dict[str, Any], user_id: str | None) -> str:
        password = auth.get("password")
        if not isinstance(password, str):
            raise _StageFailed("M_MISSING_PARAM" if password is None else "M_BAD_JSON",
                               "'password' must be a string")
        try:
            claimed = requested_user_id(auth, self._server_name)
        except MatrixError as e:
            raise _StageFailed(e.errcode, e.error) from None
        user = await self._users.get(self._db, claimed)
        ok = await self._passwords.verify(user.password_hash if user else None, password)
        if not ok or user is None or user.deactivated or (user_id is not None and claimed != user_id):
            raise _StageFailed("M_FORBIDDEN", "Invalid username or password")
        return claimed

    async def _registration_token_stage(self, auth: dict[str, Any]) -> dict[str, Any]:
        token = auth.get("token")
        if not isinstance(token, str) or not token:
            raise _StageFailed("M_MISSING_PARAM" if token is None else "M_BAD_JSON",
                               "'token' must be a non-empty string")
        if self.is_config_token(token):
            return {"token": token, "stored": False}
        async with self._db.transaction() as conn:
            reserved = await self._reg_tokens.reserve(conn, token, now_ms=self._clock.time_ms())
        if not reserved:
            raise _StageFailed("M_FORBIDDEN", "Invalid registration token")
        return {"token": token, "stored": True}

    async def registration_token_valid(self, token: str) -> bool:
        """GET /register/m.login.registration_token/validity: usable right now?"""
        if self.is_config_token(token):
            return True
        row = await self._reg_tokens.get(self._db, token)
        if row is None:
            return False
        if row.expiry_time is not None and row.expiry_time <= self._clock.time_ms():
            return False
        return row.uses_allowed is None or row.pending + row.completed < row.uses_allowed

    def is_config_token(self, token: str) -> bool:
        # Constant-time per token; `any` over a short list only reveals how many exist.
        return any(hmac.compare_digest(token.encode(), t.encode()) for t in self._config_tokens)
