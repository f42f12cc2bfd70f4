"""Token buckets: a call is taken whole or refused with the exact wait; over any run no more than the burst
plus the refill is granted (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.stream.ratelimit import TokenBucketLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_whole_or_nothing_and_exact_wait() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(600, monotonic=clock)  # 10 per second, burst 600
    assert limiter.try_acquire("d", 590) is None
    assert limiter.try_acquire("d", 30) == pytest.approx(2.0)  # 10 left, 20 short
    assert limiter.try_acquire("d", 10) is None  # the refused call took nothing
    clock.now += 3.0
    assert limiter.try_acquire("d", 30) is None
    assert limiter.try_acquire("d", 601) == math.inf  # never fits
    assert limiter.try_acquire("other", 600) is None  # its own bucket


@settings(max_examples=80, deadline=None)
@given(per_minute=st.integers(1, 5_000),
       calls=st.lists(st.tuples(st.floats(0, 30), st.integers(1, 400)), min_size=1, max_size=60))
def test_never_grants_more_than_burst_plus_refill(per_minute: int, calls: list[tuple[float, int]]) -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(per_minute, monotonic=clock)
    granted = 0
    for gap, cost in calls:
        clock.now += gap
        wait = limiter.try_acquire("k", cost)
        if wait is None:
            granted += cost
        else:
            assert wait > 0
            if cost <= per_minute:  # waiting as told makes the same call fit
                clock.now += wait
                assert limiter.try_acquire("k", cost) is None
                granted += cost
    assert granted <= per_minute + clock.now * per_minute / 60 + 1e-6


def test_idle_buckets_are_forgotten_when_the_table_is_full() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(60, monotonic=clock, max_keys=10)
    for i in range(10):
        assert limiter.try_acquire(i, 60) is None
    clock.now += 120  # all refilled
    assert limiter.try_acquire("new", 1) is None
    assert len(limiter._buckets) == 1  # the refilled ones behaved like absent ones and were dropped
