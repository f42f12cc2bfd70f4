"""Time and peak memory of one call, and the scaling table the benchmarks print (shared by bench_glucose and
bench_pk, so the figures are measured and laid out one way).

The timed call always runs untraced. Peak memory is either

* traced (``trace_memory=True``): the call is run a second time under ``tracemalloc`` (numpy reports its
  buffers to it) and the peak allocated during it is reported: exact whatever ran before, at twice the cost;
* resident: the process's resident high-water mark during the timed call above its resident size just
  before it (Linux: the mark is reset through ``/proc/self/clear_refs``). Memory the allocator kept from an
  earlier, larger call is reused without raising the mark, so this is only right when sizes increase in a
  fresh process (as bench_glucose runs them). Where the mark cannot be reset it is the lifetime peak.
"""

from __future__ import annotations

import os
import resource
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

R = TypeVar("R")
STATUS = Path("/proc/self/status")


def one_blas_thread() -> str:
    """Pin OpenBLAS/OpenMP/MKL to one thread unless the environment already says otherwise; call it BEFORE
    numpy is imported. On a small shared machine a multi-threaded BLAS oversubscribes the cores: scipy's RK45
    over 30,000 states took 29.5 s with the default threads and 4.0 s with one (same number of evaluations),
    and medtwin's batched solver goes through BLAS too. Returns the setting, for the benchmark's header."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    return os.environ["OPENBLAS_NUM_THREADS"]


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


def traced_peak(fn: Callable[[], object]) -> int:
    """Peak bytes allocated during ``fn()`` as ``tracemalloc`` sees them."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(fn: Callable[[], R], *, trace_memory: bool = False) -> tuple[R, float, int]:
    """``(result, seconds, peak bytes)``: traced peak of a second call, or resident growth (module doc)."""
    if trace_memory:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        return result, seconds, traced_peak(fn)
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
    """Run ``run(n)`` for each size; print N, total time, time per ``unit`` and traced peak memory (a second,
    traced call); return the rows."""
    rows: list[tuple[int, float, int]] = []
    print(f"scaling: {title} (peak: traced, a second call under tracemalloc)")
    print(f"  {'N':>8} {'total s':>10} {'ms per ' + unit:>18} {'peak MiB':>10}")
    for n in sizes:
        _, seconds, peak = measure(lambda n=n: run(n), trace_memory=True)  # type: ignore[misc]
        rows.append((n, seconds, peak))
        print(f"  {n:>8,} {seconds:>10.3f} {seconds / n * 1e3:>18.4f} {peak / 2**20:>10.1f}")
    return rows
