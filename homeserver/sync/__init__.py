"""Sync: stream tokens, the notifier, filters and the ephemeral streams (typing, receipts,
presence) that /sync and the WebSocket stream read."""
