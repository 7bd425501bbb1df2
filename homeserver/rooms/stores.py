"""The storage classes the room service reads and writes, handed over as one bundle."""

from __future__ import annotations

import attrs

from homeserver.storage.current_state import CurrentStateStore
from homeserver.storage.events import EventStore
from homeserver.storage.memberships import MembershipStore
from homeserver.storage.relations import RelationStore
from homeserver.storage.rooms import AliasStore, RoomStore
from homeserver.storage.state import StateStore
from homeserver.storage.txn_ids import TxnIdStore


@attrs.frozen
class RoomStores:
    events: EventStore = attrs.field(factory=EventStore)
    state: StateStore = attrs.field(factory=StateStore)
    current_state: CurrentStateStore = attrs.field(factory=CurrentStateStore)
    rooms: RoomStore = attrs.field(factory=RoomStore)
    aliases: AliasStore = attrs.field(factory=AliasStore)
    memberships: MembershipStore = attrs.field(factory=MembershipStore)
    txn_ids: TxnIdStore = attrs.field(factory=TxnIdStore)
    relations: RelationStore = attrs.field(factory=RelationStore)
