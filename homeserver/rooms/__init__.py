"""The room service: creation, membership, sending, and the one persistence path."""
