"""Tumour growth benchmark (issue #18): all 7 laws fitted to all 622 lesions of Laleh et al. 2022 studies 1-3
with 80 % prediction intervals, the model battle (lesions with >= 6 readings, last 2 held out, MAE of
normalised volume) beside TumorGrowth.jl's published figures, and a same-run baseline: a per-lesion
``scipy.optimize.curve_fit`` loop on the Gompertz law.

    .venv/bin/python benchmarks/bench_tumour.py [path/to/studies_1_2_3.csv]
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "oncology"))
from test_model_battle import DATA, load_laleh  # noqa: E402

from medtwin.oncology.battle import battle  # noqa: E402
from medtwin.oncology.fitting import fit_batch  # noqa: E402
from medtwin.oncology.growth import LAWS, volume  # noqa: E402
from medtwin.oncology.intervals import calibrate, cross_fitted_coverage, relative_errors  # noqa: E402

PUBLISHED = {"gen_bertalanffy": 0.002727, "bertalanffy": 0.002799, "gompertz": 0.002815, "logistic": 0.002885,
             "exponential": 0.003312}


def baseline_curve_fit(t: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """Per-lesion scipy loop (Gompertz on scaled volumes), the way one would write it without batching."""
    def gompertz(tt: np.ndarray, lv0: float, lk: float, lw: float) -> np.ndarray:
        return volume("gompertz", np.array([[np.exp(lv0), np.exp(lk), np.exp(lw)]]), tt[None, :])[0]

    start, failures = time.perf_counter(), 0
    for row in range(len(t)):
        tt, yy = t[row][mask[row]], y[row][mask[row]]
        s = yy[0] if yy[0] > 0 else max(yy.max(), 1e-12)
        try:
            curve_fit(gompertz, tt, yy / s, p0=[0.0, 0.0, np.log(0.01)], maxfev=2000)
        except (RuntimeError, ValueError):
            failures += 1
    return time.perf_counter() - start, failures


def main() -> None:
    warnings.simplefilter("ignore")
    lesions = load_laleh(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA)
    start = time.perf_counter()
    results = battle(lesions)
    battle_time = time.perf_counter() - start
    start = time.perf_counter()
    for name in LAWS:  # all 622 lesions, every reading; 80 % intervals 6 and 12 weeks ahead, calibrated on
        # the battle's held-out errors of the same law (population residual distribution)
        r = results[name]
        quantiles = calibrate(relative_errors(r.predicted, r.observed, r.fit.scale), 0.8)
        fit = fit_batch(name, lesions.t, lesions.y, lesions.mask)
        last = np.max(np.where(lesions.mask, lesions.t, 0.0), axis=1)
        quantiles.interval(fit.predict(last[:, None] + np.array([42.0, 84.0])[None, :]), fit.scale)
    all_fits = time.perf_counter() - start
    chosen = lesions.select(lesions.n >= 6)
    train, _, _ = chosen.split(2)
    base_time, failures = baseline_curve_fit(train.t, train.y, train.mask)
    gompertz_time = time.perf_counter()
    fit_batch("gompertz", train.t, train.y, train.mask)
    gompertz_time = time.perf_counter() - gompertz_time

    print(f"7 laws x {len(lesions.ids)} lesions fitted with intervals: {all_fits:.2f} s (target <= 20 s)")
    print(f"model battle, 7 laws x {len(chosen.ids)} lesions (>= 6 readings, last 2 held out): {battle_time:.2f} s")
    print(f"Gompertz on {len(chosen.ids)} lesions: batched {gompertz_time:.3f} s vs per-lesion curve_fit loop "
          f"{base_time:.3f} s ({base_time / gompertz_time:.1f}x; {failures} curve_fit failures)")
    print(f"{'model':<16} {'MAE (ours, studies 1-3)':>24} {'TumorGrowth.jl (5 studies)':>27} "
          f"{'80% PI coverage':>16} {'converged':>10}")
    for name, r in sorted(results.items(), key=lambda kv: kv[1].mae):
        published = PUBLISHED.get(name)
        coverage = cross_fitted_coverage(r.predicted, r.observed, r.fit.scale)
        print(f"{name:<16} {r.mae:>24.6f} {f'{published:.6f}' if published else '-':>27} "
              f"{coverage:>16.3f} {r.fit.converged.mean():>10.3f}")


if __name__ == "__main__":
    main()
