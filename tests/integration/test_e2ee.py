"""Issue 6 acceptance with real clients: matrix-nio with its e2e extra (vodozemac Olm and
Megolm, a SQLite crypto store per device) in an encrypted DM, over a real loopback port,
and mautrix-python's OlmMachine (python-olm, libolm) in an encrypted DM with nio.

nio does all of the protocol itself: /keys/upload, /keys/query on device-list changes,
/keys/claim, Olm-encrypted m.room_key to-device messages and Megolm room events. A
message that arrives as nio's MegolmEvent (undecryptable) instead of RoomMessageText
means the server lost or mangled a key, a to-device message or a device-list update.

Each client syncs in a bounded loop until what it waits for has arrived; long-polls
return as soon as the server has something, so there are no sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mautrix.api import HTTPAPI
from mautrix.client import Client
from mautrix.client.state_store import MemoryStateStore
from mautrix.crypto import OlmMachine
from mautrix.crypto.store import MemoryCryptoStore
from mautrix.crypto.store import StateStore as MautrixCryptoStateStore
from mautrix.errors import DecryptionError
from mautrix.types import (
    JSON,
    DeviceID,
    DeviceLists,
    DeviceOTKCount,
    EncryptedEvent,
    EventType,
    Membership,
    MessageType,
    RoomID,
    StateEvent,
    SyncToken,
    TextMessageEventContent,
    ToDeviceEvent,
    UserID,
)
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    LoginResponse,
    MegolmEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
    ToDeviceResponse,
)
from nio import Event as NioEvent
from nio.event_builders import EnableEncryptionBuilder

from tests.integration.conftest import Servers

PASSWORD = "correct horse battery"
# Enough for every step here (each waits for one or two server-side changes); a missing
# event fails after this many long-polls instead of hanging.
MAX_SYNCS = 8
LONG_POLL_MS = 5_000


def ok(response: Any, expected: type) -> Any:
    assert isinstance(response, expected) and not isinstance(response, ErrorResponse), response
    return response


class Peer:
    """One nio device and what its syncs have shown so far."""

    def __init__(self, client: AsyncClient):
        self.nio = client
        self.events: dict[str, list[NioEvent]] = {}
        self.device_list_changes: set[str] = set()
        self._synced_once = False

    @property
    def user_id(self) -> str:
        return self.nio.user_id

    async def sync_once(self) -> SyncResponse:
        """One sync plus the E2EE bookkeeping nio's sync_forever does after each one."""
        timeout = LONG_POLL_MS if self._synced_once else 0
        self._synced_once = True
        response: SyncResponse = ok(await self.nio.sync(timeout=timeout), SyncResponse)
        for room_id, info in response.rooms.join.items():
            self.events.setdefault(room_id, []).extend(info.timeline.events)
        self.device_list_changes.update(response.device_list.changed)
        await self.keys_housekeeping()
        return response

    async def keys_housekeeping(self) -> None:
        nio = self.nio
        if nio.should_upload_keys:
            ok(await nio.keys_upload(), KeysUploadResponse)
        if nio.should_query_keys:
            ok(await nio.keys_query(), KeysQueryResponse)
        if nio.should_claim_keys:
            ok(await nio.keys_claim(nio.get_users_for_key_claiming()), KeysClaimResponse)
        for sent in await nio.send_to_device_messages():
            ok(sent, ToDeviceResponse)

    async def sync_until(self, done: Callable[[], bool], what: str) -> None:
        for _ in range(MAX_SYNCS):
            if done():
                return
            await self.sync_once()
        assert done(), f"{self.user_id}/{self.nio.device_id}: no {what} after {MAX_SYNCS} syncs"

    async def send_text(self, room_id: str, body: str) -> str:
        response = await self.nio.room_send(room_id, "m.room.message",
                                            {"msgtype": "m.text", "body": body},
                                            ignore_unverified_devices=True)
        return ok(response, RoomSendResponse).event_id  # type: ignore[no-any-return]

    def received(self, room_id: str, event_id: str) -> NioEvent | None:
        return next((e for e in self.events.get(room_id, []) if e.event_id == event_id), None)

    async def receive_text(self, room_id: str, event_id: str) -> str:
        """Sync until the event arrives; it must have been decrypted."""
        await self.sync_until(lambda: self.received(room_id, event_id) is not None,
                              f"event {event_id}")
        event = self.received(room_id, event_id)
        assert not isinstance(event, MegolmEvent), f"could not decrypt: {event}"
        assert isinstance(event, RoomMessageText), event
        assert event.decrypted, event
        return event.body


MakePeer = Callable[..., Any]


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[MakePeer]:
    """Make logged-in (or freshly registered) nio devices with their own crypto store."""
    clients: list[AsyncClient] = []

    async def make(url: str, localpart: str, *, register: bool) -> Peer:
        store = tmp_path / f"{localpart}-{len(clients)}"
        store.mkdir()
        config = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=30,
                                   encryption_enabled=True)
        client = AsyncClient(url, f"@{localpart}:test.local", store_path=str(store),
                             config=config)
        clients.append(client)
        if register:
            ok(await client.register(localpart, PASSWORD), RegisterResponse)
        else:
            ok(await client.login(PASSWORD, device_name="Second device"), LoginResponse)
        assert client.olm is not None, "nio's crypto store did not load"
        peer = Peer(client)
        await peer.sync_once()  # the initial sync; uploads the device's keys
        assert not client.should_upload_keys
        return peer

    yield make
    for client in clients:
        await client.close()


async def encrypted_dm(alice: Peer, bob: Peer) -> str:
    created = await alice.nio.room_create(
        is_direct=True, invite=[bob.user_id], preset=RoomPreset.trusted_private_chat,
        initial_state=[EnableEncryptionBuilder().as_dict()])
    room_id: str = ok(created, RoomCreateResponse).room_id
    await bob.sync_until(lambda: room_id in bob.nio.invited_rooms, "invite")
    ok(await bob.nio.join(room_id), JoinResponse)
    await bob.sync_until(lambda: room_id in bob.nio.rooms and bob.nio.rooms[room_id].encrypted,
                         "encrypted room")

    def bob_joined() -> bool:
        room = alice.nio.rooms.get(room_id)
        member = room.users.get(bob.user_id) if room is not None else None
        return room is not None and room.encrypted and member is not None and not member.invited

    await alice.sync_until(bob_joined, "join of bob")
    return room_id


async def test_encrypted_dm_both_directions(servers: Servers, peers: MakePeer) -> None:
    url = await servers.start()
    alice = await peers(url, "alice", register=True)
    bob = await peers(url, "bob", register=True)
    room_id = await encrypted_dm(alice, bob)

    first = await alice.send_text(room_id, "hello bob")
    assert await bob.receive_text(room_id, first) == "hello bob"
    reply = await bob.send_text(room_id, "hello alice")
    assert await alice.receive_text(room_id, reply) == "hello alice"
    again = await alice.send_text(room_id, "second message, same session")
    assert await bob.receive_text(room_id, again) == "second message, same session"
    # Each side can read its own messages too (its outbound session is also inbound).
    assert await alice.receive_text(room_id, first) == "hello bob"


async def test_new_device_is_tracked_and_gets_the_next_room_key(servers: Servers,
                                                                peers: MakePeer) -> None:
    url = await servers.start()
    alice = await peers(url, "alice", register=True)
    bob = await peers(url, "bob", register=True)
    room_id = await encrypted_dm(alice, bob)
    before = await alice.send_text(room_id, "before the new device")
    assert await bob.receive_text(room_id, before) == "before the new device"

    phone = await peers(url, "bob", register=False)
    alice.device_list_changes.clear()
    await alice.sync_until(lambda: bob.user_id in alice.device_list_changes,
                           "device_lists.changed for bob")
    # nio queried bob's keys on that change and now knows the new device.
    assert phone.nio.device_id in alice.nio.device_store[bob.user_id]

    after = await alice.send_text(room_id, "for both of bob's devices")
    assert await phone.receive_text(room_id, after) == "for both of bob's devices"
    assert await bob.receive_text(room_id, after) == "for both of bob's devices"


# --- mautrix-python (python-olm) with nio ---------------------------------------------


# The two bases annotate is_encrypted's return differently (bool | None vs bool).
class CryptoStateStore(MemoryStateStore, MautrixCryptoStateStore):  # type: ignore[misc]
    """mautrix's in-memory state store plus the one question its OlmMachine adds."""

    async def find_shared_rooms(self, user_id: UserID) -> list[RoomID]:
        return [room_id for room_id, members in self.members.items()
                if self.encryption.get(room_id) is not None
                and getattr(members.get(user_id), "membership", None) == Membership.JOIN]


class MautrixPeer:
    """A mautrix Client with an OlmMachine. The sync response is fed to the machine step
    by step, as mautrix documents for "syncing in some manual way": its Syncer runs the
    machine's handlers as background tasks, which a test could not wait for."""

    def __init__(self, client: Client, state: CryptoStateStore):
        self.client = client
        self.state = state
        self.machine = OlmMachine(client, MemoryCryptoStore(client.mxid, "test"), state)
        client.crypto = self.machine
        self.next_batch: str | None = None
        self.invited: set[str] = set()
        self.events: dict[str, list[Any]] = {}

    async def sync_once(self) -> None:
        since = SyncToken(self.next_batch) if self.next_batch else None
        data = await self.client.sync(since=since, timeout=LONG_POLL_MS if since else 0)
        self.next_batch = data["next_batch"]
        otk = data.get("device_one_time_keys_count", {})
        await self.machine.handle_otk_count(DeviceOTKCount(
            curve25519=otk.get("curve25519", 0), signed_curve25519=otk.get("signed_curve25519", 0)))
        lists = data.get("device_lists", {})
        await self.machine.handle_device_lists(DeviceLists(changed=lists.get("changed", []),
                                                           left=lists.get("left", [])))
        rooms = data.get("rooms", {})
        self.invited |= set(rooms.get("invite", {}))
        encrypted: dict[str, list[EncryptedEvent]] = {}
        for room_id, room in rooms.get("join", {}).items():
            for raw in room["state"]["events"] + room["timeline"]["events"]:
                raw = JSON({**raw, "room_id": room_id})
                if "state_key" in raw:
                    state_event = StateEvent.deserialize(raw)
                    await self.state.update_state(state_event)
                    if state_event.type == EventType.ROOM_MEMBER:
                        await self.machine.handle_member_event(state_event)
                elif raw["type"] == EventType.ROOM_ENCRYPTED.t:
                    encrypted.setdefault(room_id, []).append(EncryptedEvent.deserialize(raw))
        # After the room state: a room key is checked against the room's m.room.encryption.
        for raw in data.get("to_device", {}).get("events", []):
            if raw["type"] == EventType.TO_DEVICE_ENCRYPTED.t:
                await self.machine.handle_to_device_event(ToDeviceEvent.deserialize(raw))
        for room_id, events in encrypted.items():
            for event in events:
                try:
                    decrypted: Any = await self.machine.decrypt_megolm_event(event)
                except DecryptionError:
                    decrypted = event  # kept encrypted: receive_text reports it
                self.events.setdefault(room_id, []).append(decrypted)

    async def sync_until(self, done: Callable[[], bool], what: str) -> None:
        for _ in range(MAX_SYNCS):
            if done():
                return
            await self.sync_once()
        assert done(), f"mautrix {self.client.mxid}: no {what} after {MAX_SYNCS} syncs"

    def received(self, room_id: str, event_id: str) -> Any:
        return next((e for e in self.events.get(room_id, []) if e.event_id == event_id), None)

    async def receive_text(self, room_id: str, event_id: str) -> str:
        await self.sync_until(lambda: self.received(room_id, event_id) is not None,
                              f"event {event_id}")
        event = self.received(room_id, event_id)
        assert event.type == EventType.ROOM_MESSAGE, f"could not decrypt: {event}"
        assert isinstance(event.content, TextMessageEventContent), event
        return event.content.body  # type: ignore[no-any-return]


@pytest.fixture
async def mautrix_peer(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Callable[..., Any]]:
    """Register a user (through nio, without encryption) and drive that device with
    mautrix. Fails at teardown on any warning mautrix logged (an event it could not
    parse, a key it refused)."""
    sessions: list[aiohttp.ClientSession] = []
    caplog.set_level(logging.WARNING, logger="mau")

    async def make(url: str, localpart: str) -> MautrixPeer:
        registrar = AsyncClient(url, config=AsyncClientConfig(encryption_enabled=False,
                                                               max_timeouts=0))
        try:
            reg = ok(await registrar.register(localpart, PASSWORD), RegisterResponse)
        finally:
            await registrar.close()
        sessions.append(aiohttp.ClientSession())
        api = HTTPAPI(url, token=reg.access_token, client_session=sessions[-1],
                      default_retry_count=0)
        state = CryptoStateStore()
        client = Client(UserID(reg.user_id), DeviceID(reg.device_id), api=api, state_store=state)
        peer = MautrixPeer(client, state)
        await peer.machine.load()
        await peer.sync_once()  # uploads the device keys and one-time keys
        assert peer.machine.account is not None and peer.machine.account.shared
        return peer

    yield make
    for session in sessions:
        await session.close()
    complaints = [r.getMessage() for r in caplog.records
                  if r.name.startswith("mau") and r.levelno >= logging.WARNING]
    assert not complaints, complaints


# mautrix reads its own deprecated EncryptedMegolmEventContent.device_id while decrypting.
@pytest.mark.filterwarnings(
    "ignore:The sender_key field in Megolm events was deprecated:DeprecationWarning:"
    "mautrix.types.event.encrypted")
async def test_encrypted_dm_between_nio_and_mautrix(servers: Servers, peers: MakePeer,
                                                    mautrix_peer: Callable[..., Any]) -> None:
    url = await servers.start()
    alice = await peers(url, "alice", register=True)
    carol: MautrixPeer = await mautrix_peer(url, "carol")
    created = await alice.nio.room_create(
        is_direct=True, invite=[carol.client.mxid], preset=RoomPreset.trusted_private_chat,
        initial_state=[EnableEncryptionBuilder().as_dict()])
    room_id = RoomID(ok(created, RoomCreateResponse).room_id)
    await carol.sync_until(lambda: room_id in carol.invited, "invite")
    await carol.client.join_room(room_id, max_retries=0)
    await carol.sync_until(lambda: bool(carol.state.encryption.get(room_id)), "encrypted room")

    def carol_joined() -> bool:
        room = alice.nio.rooms.get(room_id)
        member = room.users.get(carol.client.mxid) if room is not None else None
        return room is not None and member is not None and not member.invited

    await alice.sync_until(carol_joined, "join of carol")
    from_nio = await alice.send_text(room_id, "hello from nio")
    assert await carol.receive_text(room_id, from_nio) == "hello from nio"
    from_mautrix = await carol.client.send_message_event(
        room_id, EventType.ROOM_MESSAGE,
        TextMessageEventContent(msgtype=MessageType.TEXT, body="hello from mautrix"))
    assert await alice.receive_text(room_id, from_mautrix) == "hello from mautrix"
