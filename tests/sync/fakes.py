"""Stand-ins for the rooms service in sync tests."""

from __future__ import annotations


class FakeRooms:
    """Membership and event positions, set up by the test."""

    def __init__(self) -> None:
        self.members: dict[str, set[str]] = {}  # room -> joined users
        self.events: dict[str, tuple[str, int]] = {}  # event -> (room, stream ordering)

    def join(self, user_id: str, *rooms: str) -> None:
        for room in rooms:
            self.members.setdefault(room, set()).add(user_id)

    def add_event(self, room_id: str, event_id: str, position: int) -> None:
        self.events[event_id] = (room_id, position)

    async def is_joined(self, user_id: str, room_id: str) -> bool:
        return user_id in self.members.get(room_id, set())

    async def joined_rooms(self, user_id: str) -> set[str]:
        return {room for room, users in self.members.items() if user_id in users}

    async def event_position(self, room_id: str, event_id: str) -> int | None:
        found = self.events.get(event_id)
        return found[1] if found is not None and found[0] == room_id else None
