"""Replications with common random numbers and scenario comparisons with paired confidence intervals.

Replication ``r`` of every scenario uses the generators ``SeedSequence(seed, spawn_key=(r, purpose, stream))``
(:func:`medtwin.hospital.sampling.rng_for`), so a scenario differs from the baseline only by what it changes.
The fan-out over replications and scenarios is :mod:`.fanout` (Dask); this module is the serial core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from medtwin.hospital.engine import simulate
from medtwin.hospital.metrics import summarise
from medtwin.hospital.model import HospitalModel
from medtwin.hospital.sampling import BaseDraws, arrivals
from medtwin.hospital.whatif import Scenario

#: scenario name -> metric -> values, one per replication (index = replication number)
Results = dict[str, dict[str, np.ndarray]]


def run_one(model: HospitalModel, scenario: Scenario, seed: int, rep: int, horizon_h: float,
            warmup_h: float = 0.0, start_how: int = 0, compiled: bool = True) -> dict[str, float]:
    """One replication of one scenario, from empty; its scalar metrics plus ``events``. ``compiled``: the
    numba loop (default) or the Python reference engine; the same visits either way."""
    return _run_applied(scenario.apply(model), scenario, seed, rep, horizon_h, warmup_h, start_how, compiled)


def _run_applied(applied: HospitalModel, scenario: Scenario, seed: int, rep: int, horizon_h: float,
                 warmup_h: float, start_how: int, compiled: bool, shared: BaseDraws | None = None) -> dict[str, float]:
    patients = arrivals(applied, seed, rep, horizon_h, start_how, scenario.arrival_multiplier,
                        scenario.los_multiplier, daily_curve=scenario.arrival_curve or None, shared=shared, trim=True)
    log = simulate(applied, patients, horizon_h, start_how, outages=scenario.outage_tuples(applied),
                   compiled=compiled)
    out = summarise(log, applied, warmup_h)
    out["events"] = float(log.events)
    return out


def run_chunk(model: HospitalModel, scenario: Scenario, seed: int, reps: list[int], horizon_h: float,
              warmup_h: float = 0.0) -> Chunk:
    """Several replications of one scenario (one Dask task); the scenario is applied (validated) once."""
    applied = scenario.apply(model)
    return scenario.name, reps, [_run_applied(applied, scenario, seed, r, horizon_h, warmup_h, 0, True)
                                 for r in reps]


Chunk = tuple[str, list[int], list[dict[str, float]]]


def run_block(model: HospitalModel, scenarios: list[Scenario], seed: int, reps: list[int], horizon_h: float,
              warmup_h: float = 0.0) -> list[Chunk]:
    """Replications ``reps`` of every scenario (one Dask task of a grid), replication by replication: the
    scenarios of a replication share its base patients (common random numbers: drawn once, not once per
    scenario). The same metrics as :func:`run_one` run by run; only these scalars leave the task."""
    applied = [s.apply(model) for s in scenarios]
    rows: list[list[dict[str, float]]] = [[] for _ in scenarios]
    for r in reps:
        shared: BaseDraws = {}
        for i, (scenario, m) in enumerate(zip(scenarios, applied, strict=True)):
            rows[i].append(_run_applied(m, scenario, seed, r, horizon_h, warmup_h, 0, True, shared))
    return [(s.name, list(reps), table) for s, table in zip(scenarios, rows, strict=True)]


def collect(chunks: list[Chunk], n_reps: int) -> Results:
    out: Results = {}
    for name, reps, rows in chunks:
        table = out.setdefault(name, {})
        for r, row in zip(reps, rows, strict=True):
            for key, value in row.items():
                table.setdefault(key, np.full(n_reps, np.nan))[r] = value
    return out


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": float(self.n)}


def mean_ci(values: np.ndarray, level: float = 0.95) -> Interval:
    """Student-t confidence interval of the mean over replications (NaN replications dropped)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < 2:
        return Interval(float(v.mean()) if v.size else float("nan"), float("nan"), float("nan"), int(v.size))
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    m = float(v.mean())
    return Interval(m, m - half, m + half, int(v.size))


def paired(results: Results, scenario: str, metric: str, baseline: str = "baseline", level: float = 0.95) -> Interval:
    """Scenario minus baseline, replication by replication (common random numbers), with its CI."""
    return mean_ci(results[scenario][metric] - results[baseline][metric], level)
