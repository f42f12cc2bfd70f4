"""One background-worker building block: a queue, a thread, batches of what is queued.

``Worker(name, handle)`` calls ``handle(items, flushing)`` on its own thread with everything queued at that
moment (up to ``max_batch`` by ``weight``), so a burst costs one pass, not one per item. ``flushing`` is True
when a :meth:`~Worker.flush` or :meth:`~Worker.stop` waits on this batch: write what you were coalescing.

* :meth:`put` only enqueues (safe on any thread, microseconds) and starts the thread on first use;
* :meth:`flush` waits until everything put before it has been handled (or the timeout passes: False);
* :meth:`stop` handles what is queued, then ends the thread (False if it did not end within the timeout);
  a later :meth:`put` starts it again;
* an exception in ``handle`` (or ``idle``) is logged and counted (``errors``); the thread goes on;
* ``idle()``, if given, runs when nothing arrived for ``idle_interval_s`` (time-based housekeeping);
* ``gather_s`` > 0 waits that long after the first item of a batch to let the rest of a burst arrive.

It imports nothing from medtwin: the alert engine and the live glucose twin both use it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Final, Generic, TypeVar

__all__ = ["Worker"]

T = TypeVar("T")
_STOP: Final = object()
_FLUSH: Final = object()
_IDLE: Final = object()  # nothing arrived within idle_interval_s


def _one(_item: object) -> int:
    return 1


class Worker(Generic[T]):
    """A daemon thread that handles queued items in batches (see the module docstring)."""

    def __init__(self, name: str, handle: Callable[[list[T], bool], None], *, max_batch: int = 1000,
                 weight: Callable[[T], int] = _one, gather_s: float = 0.0,
                 idle: Callable[[], None] | None = None, idle_interval_s: float = 1.0,
                 logger: logging.Logger | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch: must be at least 1")
        self.name = name
        self._handle, self._weight, self._idle = handle, weight, idle
        self.max_batch, self.gather_s, self.idle_interval_s = max_batch, gather_s, idle_interval_s
        self._log = logger or logging.getLogger("medtwin.worker")
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lifecycle = threading.Lock()
        self._progress = threading.Condition()
        self._enqueued = 0  # items and flush markers put
        self._done = 0  # of those, handled
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.items = 0
        self.errors = 0
        self.last_batch_seconds = 0.0

    # --- use ---------------------------------------------------------------------------------------------

    def put(self, item: T) -> None:
        self._enqueue(item)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until everything put so far has been handled (the last batch with ``flushing``)."""
        target = self._enqueue(_FLUSH)
        deadline = time.monotonic() + timeout
        with self._progress:
            while self._done < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(remaining)
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Handle what is queued, then end the thread. True when it ended within ``timeout``."""
        with self._lifecycle:
            thread = self._thread
            if thread is None:
                return True
            self._queue.put(_STOP)
            thread.join(timeout)
            if thread.is_alive():
                self._log.warning("worker %s did not stop within %.0f s", self.name, timeout)
                return False
            self._thread = None
            return True

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def pending(self) -> int:
        """Items and flush requests put but not yet handled."""
        with self._progress:
            return self._enqueued - self._done

    # --- the thread ----------------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lifecycle:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _enqueue(self, item: object) -> int:
        with self._progress:
            self._enqueued += 1
            target = self._enqueued
        self._queue.put(item)
        if not self.running:
            self.start()
        return target

    def _next(self) -> object:
        if self._idle is None:
            return self._queue.get()
        try:
            return self._queue.get(timeout=self.idle_interval_s)
        except queue.Empty:
            return _IDLE

    def _run(self) -> None:
        while True:
            first = self._next()
            if first is _IDLE:
                self._guarded(self._idle, "idle step")
                continue
            if self.gather_s > 0 and first is not _STOP and first is not _FLUSH:
                time.sleep(self.gather_s)
            batch = self._gather(first)
            stop = any(i is _STOP for i in batch)
            flushing = stop or any(i is _FLUSH for i in batch)
            work: list[T] = [i for i in batch if i is not _STOP and i is not _FLUSH]  # type: ignore[misc]
            if work or flushing:
                started = time.perf_counter()
                self._guarded(partial(self._handle, work, flushing), f"batch of {len(work)}")
                self.batches += 1
                self.items += len(work)
                self.last_batch_seconds = time.perf_counter() - started
            with self._progress:
                self._done += sum(1 for i in batch if i is not _STOP)
                self._progress.notify_all()
            if stop:
                return

    def _gather(self, first: object) -> list[object]:
        batch = [first]
        size = 0 if first is _STOP or first is _FLUSH else self._weight(first)  # type: ignore[arg-type]
        while size < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
            if item is _STOP:
                break  # what comes after a stop waits for the next start
            if item is not _FLUSH:
                size += self._weight(item)  # type: ignore[arg-type]
        return batch

    def _guarded(self, fn: Callable[[], None] | None, what: str) -> None:
        if fn is None:
            return
        try:
            fn()
        except Exception:  # one bad batch never kills the thread
            self.errors += 1
            self._log.exception("worker %s: %s failed; continuing", self.name, what)
