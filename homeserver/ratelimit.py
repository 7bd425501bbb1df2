"""Per-action token-bucket rate limiting.

Buckets are keyed by (action, requester) — the user ID when authenticated, else the
client IP. The table is bounded: the least recently used buckets are dropped first (a
dropped bucket is a full one, so dropping never makes a limit stricter).
"""

from __future__ import annotations

import math
from collections import OrderedDict

from homeserver.clock import Clock
from homeserver.config import RateLimit
from homeserver.errors import LimitExceeded


class RateLimiter:
    def __init__(self, limits: dict[str, RateLimit], clock: Clock, max_buckets: int = 100_000):
        self._limits = limits
        self._clock = clock
        self._max_buckets = max_buckets
        # (action, key) -> (tokens, last_refill_time)
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def check(self, action: str, key: str) -> None:
        """Take one token or raise LimitExceeded with the wait until one is available."""
        limit = self._limits.get(action) or self._limits.get("default")
        if limit is None:
            return
        now = self._clock.monotonic()
        bucket_key = (action, key)
        tokens, last = self._buckets.pop(bucket_key, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - last) * limit.per_second)
        if tokens < 1.0:
            self._buckets[bucket_key] = (tokens, now)
            wait_ms = math.ceil((1.0 - tokens) / limit.per_second * 1000)
            raise LimitExceeded(retry_after_ms=max(wait_ms, 1))
        self._buckets[bucket_key] = (tokens - 1.0, now)
        while len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)
