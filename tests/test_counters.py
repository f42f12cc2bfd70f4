"""medtwin.counters: no count lost across threads, peak/set/snapshot, names checked."""

from __future__ import annotations

import sys
import threading
from typing import Any, Literal

import pytest

from medtwin.counters import Counters

Count = Literal["messages", "errors", "slowest_s"]


def test_counts_from_many_threads_are_not_lost() -> None:
    counters: Counters[Count] = Counters(Count)
    old = sys.getswitchinterval()
    # Switch threads as often as the interpreter allows: a read-add-write that is not under the lock loses
    # counts wherever a switch can fall inside it (a free-threaded build; any Python call between the two).
    sys.setswitchinterval(1e-6)
    try:
        start = threading.Barrier(8)

        def work() -> None:
            start.wait()
            for _ in range(5_000):
                counters.inc("messages")
                counters.inc("errors", 2)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    assert counters.snapshot() == {"messages": 40_000, "errors": 80_000, "slowest_s": 0}


def test_peak_set_read_and_snapshot() -> None:
    counters: Counters[Count] = Counters(Count)
    for seconds in (0.2, 1.5, 0.7):
        counters.peak("slowest_s", seconds)
    counters.inc("messages", 3)
    counters.set("errors", 4)
    snapshot = counters.snapshot()
    counters.inc("messages")  # a snapshot is a copy: later counts do not change it
    assert snapshot == {"messages": 3, "errors": 4, "slowest_s": 1.5}
    assert (counters["messages"], counters["slowest_s"]) == (4, 1.5)
    assert isinstance(counters["messages"], int)  # whole counts stay whole (printed as 4, not 4.0)
    assert repr(counters) == "Counters(messages=4, errors=4, slowest_s=1.5)"


def test_unknown_names_are_refused() -> None:
    counters: Counters[Count] = Counters(Count)
    bad: Any = "mesages"  # a misspelt name (the type check refuses it too)
    for use in (lambda: counters.inc(bad), lambda: counters.set(bad, 1), lambda: counters.peak(bad, 1),
                lambda: counters[bad]):
        with pytest.raises(KeyError, match="mesages"):
            use()
    with pytest.raises(TypeError, match="Literal of counter names"):
        Counters(str)
