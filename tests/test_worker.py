"""The background-worker building block: batching, stop drains, flush waits, errors are survived."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from medtwin.worker import Worker


def test_stop_drains_everything_queued_before_it() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def handle(items: list[int], flushing: bool) -> None:
        gate.wait(5)
        seen.extend(items)

    worker: Worker[int] = Worker("t-drain", handle, max_batch=7)
    for i in range(100):
        worker.put(i)
    gate.set()
    assert worker.stop(timeout=30)
    assert seen == list(range(100)) and not worker.running
    assert worker.items == 100 and worker.batches >= 100 // 7  # batches of at most 7


def test_flush_waits_for_what_was_put_and_says_flushing() -> None:
    seen: list[tuple[list[int], bool]] = []

    def handle(items: list[int], flushing: bool) -> None:
        time.sleep(0.05)
        seen.append((items, flushing))

    worker: Worker[int] = Worker("t-flush", handle)
    worker.put(1)
    worker.put(2)
    assert worker.flush(timeout=30)
    assert sorted(i for items, _f in seen for i in items) == [1, 2]
    assert seen[-1][1] is True and worker.pending() == 0
    worker.stop()


def test_flush_times_out_when_the_handler_is_stuck() -> None:
    release = threading.Event()
    worker: Worker[int] = Worker("t-stuck", lambda items, flushing: release.wait(60) and None)
    worker.put(1)
    started = time.monotonic()
    assert worker.flush(timeout=0.2) is False
    assert time.monotonic() - started < 2
    release.set()
    assert worker.stop(timeout=30)


def test_an_exception_in_a_batch_is_logged_and_the_worker_continues(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    def handle(items: list[int], flushing: bool) -> None:
        if 13 in items:
            raise RuntimeError("bad batch")
        seen.extend(items)

    worker: Worker[int] = Worker("t-error", handle, max_batch=1)
    with caplog.at_level(logging.ERROR, logger="medtwin.worker"):
        for i in (12, 13, 14):
            worker.put(i)
        assert worker.flush(timeout=30)
    assert seen == [12, 14] and worker.errors == 1
    assert any("bad batch" in r.exc_text or "bad batch" in str(r.exc_info) for r in caplog.records
               if r.exc_info or r.exc_text)
    worker.put(15)  # still alive
    assert worker.stop(timeout=30) and seen == [12, 14, 15]


def test_weight_bounds_a_batch_and_idle_runs_when_nothing_arrives() -> None:
    sizes: list[int] = []
    idles = threading.Event()
    gate = threading.Event()

    def handle(items: list[list[int]], flushing: bool) -> None:
        gate.wait(5)
        sizes.append(sum(len(i) for i in items))

    worker: Worker[list[int]] = Worker("t-weight", handle, max_batch=10, weight=len, idle=idles.set,
                                       idle_interval_s=0.05)
    for _ in range(6):
        worker.put([0, 0, 0, 0])  # weight 4 each: at most 3 per batch (12 >= 10 stops gathering)
    gate.set()
    assert worker.flush(timeout=30)
    assert sum(sizes) == 24 and max(sizes) <= 12
    assert idles.wait(30)
    worker.stop()
    worker.put([1])  # a put after stop starts it again
    assert worker.flush(timeout=30) and sum(sizes) == 25
    worker.stop()


def test_none_is_an_item_like_any_other() -> None:
    seen: list[None] = []
    worker: Worker[None] = Worker("t-none", lambda items, flushing: seen.extend(items), idle=lambda: None,
                                  idle_interval_s=0.05)
    worker.put(None)
    worker.put(None)
    assert worker.flush(timeout=30) and seen == [None, None]
    worker.stop()


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Worker("t-bad", lambda items, flushing: None, max_batch=0)
