"""Time and peak memory of one call, and the scaling table the benchmarks print (shared by bench_glucose and
bench_pk, so the figures are measured and laid out one way).

Peak memory is what ``tracemalloc`` sees allocated during the call (numpy reports its buffers to it), i.e.
the working set the call adds, not the interpreter's resident size.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import TypeVar

R = TypeVar("R")


def measure(fn: Callable[[], R]) -> tuple[R, float, int]:
    """``(result, seconds, peak bytes allocated during the call)``."""
    tracemalloc.start()
    try:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, seconds, peak


def scaling_table(title: str, unit: str, sizes: Sequence[int], run: Callable[[int], object]) -> list[tuple[int, float, int]]:
    """Run ``run(n)`` for each size; print N, total time, time per ``unit`` and peak memory; return the rows."""
    rows: list[tuple[int, float, int]] = []
    print(f"scaling: {title}")
    print(f"  {'N':>8} {'total s':>10} {'ms per ' + unit:>18} {'peak MiB':>10}")
    for n in sizes:
        _, seconds, peak = measure(lambda n=n: run(n))  # type: ignore[misc]
        rows.append((n, seconds, peak))
        print(f"  {n:>8,} {seconds:>10.3f} {seconds / n * 1e3:>18.4f} {peak / 2**20:>10.1f}")
    return rows
