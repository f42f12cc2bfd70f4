"""Thread-safe counters for a service's statistics: ``Counters[K]``, one number per name of ``K``.

``K`` is a ``Literal`` of the counter names, so a misspelt name fails the type check (and raises ``KeyError``
at run time). Every counter starts at 0.

* ``inc(name, by=1)`` adds; ``peak(name, value)`` keeps the largest value seen; ``set(name, value)``
  overwrites (a latest figure, or a reset);
* ``counters[name]`` reads one; ``snapshot()`` copies all of them at one moment (a plain dict, for JSON).

Why a lock: a service counts on several threads at once (the alert engine on its worker and its saver
thread, the MQTT subscriber on paho's network thread and its ingest worker), and ``stats.errors += 1`` is a
read, an add and a write that two threads can interleave, losing a count: CPython's GIL happens to keep a
plain ``+=`` on an int whole today, but not ``x = max(x, y)`` (a call between the read and the write), and
a free-threaded build keeps neither. Why ``snapshot``: a reader that compares or prints several counters
(received and acknowledged) gets them from the same moment.

It imports nothing from medtwin.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar, get_args

__all__ = ["Counters"]

K = TypeVar("K", bound=str)


class Counters(Generic[K]):
    """``Counters(Literal["received", "acked"])``: the counters of one service (see the module docstring)."""

    __slots__ = ("_lock", "_values")

    def __init__(self, names: object) -> None:
        keys = get_args(names)
        if not keys or not all(isinstance(k, str) for k in keys):
            raise TypeError(f"Counters needs a Literal of counter names, got {names!r}")
        self._lock = threading.Lock()
        self._values: dict[K, float] = dict.fromkeys(keys, 0)

    def inc(self, name: K, by: float = 1) -> None:
        with self._lock:
            self._values[name] += by

    def peak(self, name: K, value: float) -> None:
        """Keep the largest value seen (e.g. the slowest pass)."""
        with self._lock:
            if value > self._values[name]:
                self._values[name] = value

    def set(self, name: K, value: float) -> None:
        with self._lock:
            self._check(name)
            self._values[name] = value

    def __getitem__(self, name: K) -> float:
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[K, float]:
        with self._lock:
            return dict(self._values)

    def _check(self, name: K) -> None:
        if name not in self._values:
            raise KeyError(name)

    def __repr__(self) -> str:
        return f"Counters({', '.join(f'{k}={v!r}' for k, v in self.snapshot().items())})"
