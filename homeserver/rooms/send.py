"""Sending message and state events, and redactions.

Spec: https://spec.matrix.org/v1.19/client-server-api/#put_matrixclientv3roomsroomidsendeventtypetxnid ,
#put_matrixclientv3roomsroomidstateeventtypestatekey and
#put_matrixclientv3roomsroomidredacteventidtxnid .
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import BadAlias, BadJson, Forbidden, NotFound
from homeserver.events.room_versions import get_room_version
from homeserver.rooms.access import RoomAccess
from homeserver.rooms.content_checks import check_state_content
from homeserver.rooms.persistence import EventPersister, TxnKey
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Database
from homeserver.types import RoomAlias

JsonDict = dict[str, Any]


class SendService:
    def __init__(self, db: Database, stores: RoomStores, persister: EventPersister,
                 access: RoomAccess, *, server_name: str):
        self._server_name = server_name
        self._db = db
        self._stores = stores
        self._persister = persister
        self._access = access

    async def send_message(self, user_id: str, device_id: str | None, room_id: str,
                           event_type: str, content: JsonDict, txn_id: str) -> str:
        """PUT /rooms/{roomId}/send/{eventType}/{txnId} — returns the event ID."""
        txn = TxnKey(user_id, device_id, txn_id)
        if event_type == "m.room.redaction" and isinstance(content.get("redacts"), str):
            # Same rules as /redact, whichever endpoint the client chose.
            reason = content.get("reason")
            return await self.redact(user_id, device_id, room_id, content["redacts"],
                                     reason if isinstance(reason, str) else None, txn_id)
        if event_type == "m.room.create":
            raise Forbidden("m.room.create cannot be sent")
        # The persister answers a repeated transaction ID, then checks membership, in
        # the batch it persists in: no reads here on the hot path.
        persisted = await self._persister.send(
            {"type": event_type, "room_id": room_id, "sender": user_id, "content": content},
            txn=txn, require_joined=True)
        return persisted.event_id

    async def set_state(self, user_id: str, room_id: str, event_type: str, state_key: str,
                        content: JsonDict) -> str:
        """PUT /rooms/{roomId}/state/{eventType}/{stateKey} — returns the event ID.

        Re-sending the current content is answered with the current event (no new event),
        so clients that PUT state on every start do not flood the room."""
        if event_type == "m.room.create":
            raise Forbidden("m.room.create cannot be replaced")
        async with self._db.connection() as conn:
            room = await self._access.require_joined(conn, room_id, user_id)
            room_version = get_room_version(room.room_version)
            assert room_version is not None
            power = await self._access.power(conn, room_id)
            check_state_content(room_version, event_type, content, power.creators())
            if event_type == "m.room.canonical_alias":
                await self._check_canonical_alias(conn, room_id, content)
            current = await self._access.current_event(conn, room_id, event_type, state_key)
        if current is not None and current.sender == user_id and current.content == content:
            return current.event_id
        persisted = await self._persister.send({"type": event_type, "room_id": room_id,
                                                "sender": user_id, "state_key": state_key,
                                                "content": content})
        return persisted.event_id

    async def redact(self, user_id: str, device_id: str | None, room_id: str, event_id: str,
                     reason: str | None, txn_id: str) -> str:
        """PUT /rooms/{roomId}/redact/{eventId}/{txnId} — returns the redaction's ID.

        Only the event's sender or a user with the redact level may redact (checked here:
        from room v3 the auth rules leave it to the server applying the redaction)."""
        txn = TxnKey(user_id, device_id, txn_id)
        async with self._db.connection() as conn:
            earlier = await self._stores.txn_ids.get(conn, user_id, device_id, txn_id)
            if earlier is not None:
                return earlier
            await self._access.require_joined(conn, room_id, user_id)
            target = await self._stores.events.get(conn, event_id)
            if target is None or target.pdu.room_id != room_id or target.outlier:
                raise NotFound("Event not found")
            if target.pdu.sender != user_id:
                power = await self._access.power(conn, room_id)
                if power.level(user_id) < power.named("redact"):
                    raise Forbidden("You may only redact your own events")
        content: JsonDict = {} if reason is None else {"reason": reason}
        persisted = await self._persister.send(
            {"type": "m.room.redaction", "room_id": room_id, "sender": user_id,
             "content": content, "redacts": event_id}, txn=txn)
        return persisted.event_id

    async def _check_canonical_alias(self, conn: Any, room_id: str, content: JsonDict) -> None:
        """Spec: M_BAD_ALIAS when an alias does not point at this room."""
        aliases = []
        if content.get("alias") is not None:
            aliases.append(content["alias"])
        alt = content.get("alt_aliases", [])
        if not isinstance(alt, list):
            raise BadJson("alt_aliases must be a list")
        aliases.extend(alt)
        for alias in aliases:
            if not isinstance(alias, str):
                raise BadJson("aliases must be strings")
            if RoomAlias.parse(alias).server_name != self._server_name:
                continue  # another server's alias: only that server can vouch for it
            row = await self._stores.aliases.get(conn, alias)
            if row is None or row.room_id != room_id:
                raise BadAlias(f"{alias} does not point at this room")
