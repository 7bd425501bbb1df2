"""The room service as one object for the composition root: builds the persistence
path and the services on top of it from explicit collaborators."""

from __future__ import annotations

from signedjson.types import SigningKey

from homeserver.clock import Clock
from homeserver.rooms.access import RoomAccess
from homeserver.rooms.aggregations import Aggregations
from homeserver.rooms.aliases import AliasService
from homeserver.rooms.creation import ProfileLookup, RoomCreator
from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.history import RoomHistory
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.persistence import EventCallback, EventPersister
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.relations import RelationWriter
from homeserver.rooms.relations_reader import RelationsReader
from homeserver.rooms.send import SendService
from homeserver.rooms.stores import RoomStores
from homeserver.rooms.upgrade import RoomUpgrader
from homeserver.rooms.visibility import VisibilityFilter
from homeserver.storage.database import Database


class RoomService:
    def __init__(self, db: Database, *, server_name: str, signing_key: SigningKey, clock: Clock,
                 profile_lookup: ProfileLookup | None = None,
                 stores: RoomStores | None = None):
        self.stores = stores or RoomStores()
        self.persister = EventPersister(db, self.stores, server_name=server_name,
                                        signing_key=signing_key, clock=clock)
        self.access = RoomAccess(db, self.stores)
        self.loader = ClientEventLoader(self.stores, clock, Aggregations(self.stores))
        self.visibility = VisibilityFilter(self.stores)
        self.persister.derived_writers.append(RelationWriter(self.stores, self.loader.applied_redactions))
        self.creator = RoomCreator(db, self.stores, self.persister, server_name=server_name,
                                   profile_lookup=profile_lookup)
        self.membership = MembershipService(db, self.stores, self.persister, self.access,
                                            server_name=server_name, profile_lookup=profile_lookup)
        self.send = SendService(db, self.stores, self.persister, self.access, server_name=server_name)
        self.reader = RoomReader(db, self.stores, self.access, self.loader, self.visibility)
        self.aliases = AliasService(db, self.stores, self.access, server_name=server_name, clock=clock)
        self.upgrader = RoomUpgrader(db, self.stores, self.persister, self.access)
        self.history = RoomHistory(db, self.stores, self.access, self.loader, self.visibility)
        self.relations = RelationsReader(db, self.stores, self.access, self.loader, self.visibility)

    def add_event_listener(self, callback: EventCallback) -> None:
        """Called after each event commits (the sync notifier, push, federation)."""
        self.persister.on_event_persisted.append(callback)

    # The ports of homeserver/sync/ports.py (Membership, EventLocator).
    async def is_joined(self, user_id: str, room_id: str) -> bool:
        return await self.reader.is_joined(user_id, room_id)

    async def joined_rooms(self, user_id: str) -> set[str]:
        return set(await self.reader.joined_rooms(user_id))

    async def event_position(self, room_id: str, event_id: str) -> int | None:
        return await self.reader.event_position(room_id, event_id)
