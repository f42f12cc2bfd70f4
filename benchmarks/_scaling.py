"""Time and peak memory of one call, and the scaling table the benchmarks print (shared by bench_glucose and
bench_pk, so the figures are measured and laid out one way).

Peak memory is the process's resident high-water mark during the call above its resident size just before
it (Linux: the mark is reset through ``/proc/self/clear_refs``, so the call runs untraced and its time is not
inflated by tracing). Where the mark cannot be reset the column shows the process's lifetime peak instead and
says so.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

R = TypeVar("R")
STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], R]) -> tuple[R, float, int]:
    """``(result, seconds, peak bytes resident above the start of the call)``; lifetime peak if not resettable."""
    resettable = _reset_peak()
    before = _status_kib("VmRSS") if resettable else 0
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    if resettable:
        peak_kib = _status_kib("VmHWM") - before
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result, seconds, max(peak_kib, 0) * 1024


def scaling_table(title: str, unit: str, sizes: Sequence[int], run: Callable[[int], object]
                  ) -> list[tuple[int, float, int]]:
    """Run ``run(n)`` for each size; print N, total time, time per ``unit`` and peak memory; return the rows."""
    rows: list[tuple[int, float, int]] = []
    print(f"scaling: {title}")
    print(f"  {'N':>8} {'total s':>10} {'ms per ' + unit:>18} {'peak MiB':>10}")
    for n in sizes:
        _, seconds, peak = measure(lambda n=n: run(n))  # type: ignore[misc]
        rows.append((n, seconds, peak))
        print(f"  {n:>8,} {seconds:>10.3f} {seconds / n * 1e3:>18.4f} {peak / 2**20:>10.1f}")
    return rows
