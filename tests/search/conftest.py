"""The room service fixtures of tests/rooms, for the search and directory services."""

from tests.rooms.conftest import rooms  # noqa: F401  (a fixture, used by name)
