"""What the ephemeral services need from the rooms service, as small protocols.

The composition root adapts the rooms service to these; tests pass fakes. Keeping them
narrow lets typing, receipts and presence land before (and stay independent of) rooms.
"""

from __future__ import annotations

from typing import Protocol


class Membership(Protocol):
    async def is_joined(self, user_id: str, room_id: str) -> bool:
        """Whether the user's current membership of the room is `join`."""
        ...

    async def joined_rooms(self, user_id: str) -> set[str]:
        """The rooms the user is currently joined to."""
        ...


class EventLocator(Protocol):
    async def event_position(self, room_id: str, event_id: str) -> int | None:
        """The event's stream ordering if the server has it *in this room*, else None.
        Receipts and read markers use it to refuse moving backwards."""
        ...
