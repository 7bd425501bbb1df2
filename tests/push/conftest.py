"""The room service fixtures of tests/rooms, for the push evaluator."""

from tests.rooms.conftest import rooms  # noqa: F401  (a fixture, used by name)
