"""Per-device token buckets for sample ingest.

Each key (patient, device) has a bucket of ``per_minute`` tokens (one minute of burst) refilled at
``per_minute / 60`` per second. A request costs one token per sample and is taken whole or not at all:
:meth:`TokenBucketLimiter.try_acquire` answers ``None`` (taken) or the seconds to wait until the whole
request would fit, so a refused request stores nothing and the same request later succeeds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["TokenBucketLimiter", "Unlimited", "RateLimiter"]


class RateLimiter:
    """Interface: ``try_acquire(key, cost) -> None | seconds to wait`` (``math.inf``: never fits)."""

    def try_acquire(self, key: Hashable, cost: int) -> float | None:  # pragma: no cover - interface
        raise NotImplementedError


class Unlimited(RateLimiter):
    def try_acquire(self, key: Hashable, cost: int) -> float | None:
        return None


class TokenBucketLimiter(RateLimiter):
    """Thread-safe token buckets, ``per_minute`` tokens each, refilled continuously."""

    def __init__(self, per_minute: int, *, burst: int | None = None,
                 monotonic: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be >= 1")
        self.per_minute = per_minute
        self.capacity = float(burst if burst is not None else per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.monotonic = monotonic
        self.max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def try_acquire(self, key: Hashable, cost: int) -> float | None:
        if cost <= 0:
            return None
        if cost > self.capacity:
            return math.inf
        with self._lock:
            now = self.monotonic()
            tokens, at = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.rate)
            if tokens + 1e-9 >= cost:  # waiting exactly the answered time must be enough (float round-off)
                if key not in self._buckets and len(self._buckets) >= self.max_keys:
                    self._forget_full(now)
                self._buckets[key] = (max(tokens - cost, 0.0), now)
                return None
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they behave exactly like absent ones)."""
        self._buckets = {k: (t, a) for k, (t, a) in self._buckets.items()
                         if t + (now - a) * self.rate < self.capacity}
