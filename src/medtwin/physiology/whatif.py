"""What-if: compare therapy regimens for a twin over a horizon, with an uncertainty band from the posterior.

Each regimen runs the whole posterior ensemble in one batched solve.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.metrics import GlucoseMetrics, glucose_metrics
from medtwin.physiology.scenario import Regimen, Scenario, parse_scenario
from medtwin.physiology.service import run_scenario
from medtwin.physiology.uva_padova import PatientParameters


class RegimenOutcome(BaseModel):
    regimen: Regimen
    t_min: list[float]
    glucose_median_mg_dl: list[float]
    glucose_p5_mg_dl: list[float]
    glucose_p95_mg_dl: list[float]
    metrics_median: GlucoseMetrics
    time_in_range_p5_percent: float
    time_in_range_p95_percent: float
    time_below_70_p95_percent: float


class ComparisonResult(BaseModel):
    model: str = "UvaPadova2008"
    n_ensemble: int
    horizon_min: float
    outcomes: list[RegimenOutcome]


def compare_regimens(
    ensemble: PatientParameters,
    scenario: Scenario | dict[str, object],
    regimens: list[Regimen],
    *,
    rng: np.random.Generator,
    sample_period_min: float = 5.0,
) -> ComparisonResult:
    """Run every regimen on every ensemble member (posterior draws of one twin), one batched solve per regimen.

    Glucose is the noise-free subcutaneous glucose sampled every ``sample_period_min``; bands are the
    5th-95th percentiles over the ensemble. Meal boluses use the noise-free glucose (sensor noise off).
    """
    scenario = parse_scenario(scenario)
    if not regimens:
        raise PhysiologyInputError("regimens", "give at least one regimen")
    names = [r.name for r in regimens]
    if len(set(names)) != len(names):
        raise PhysiologyInputError("regimens", "regimen names must be unique")
    m = ensemble.n
    quiet = scenario.model_copy(update={"sensor": scenario.sensor.model_copy(update={"noise": False})})
    outcomes: list[RegimenOutcome] = []
    for regimen in regimens:
        trajectory, cgm_t, cgm, _basal, _times = run_scenario(ensemble, quiet, regimen, rng=rng)
        keep = np.isclose(np.mod(cgm_t, sample_period_min), 0.0)
        glucose = cgm[keep]  # (samples, m)
        metrics = glucose_metrics(glucose, sample_period_min)
        tir = np.array([x.time_in_range_70_180_percent for x in metrics])
        tbr = np.array([x.time_below_70_percent for x in metrics])
        median_metrics = glucose_metrics(np.median(glucose, axis=1), sample_period_min)[0]
        outcomes.append(
            RegimenOutcome(
                regimen=regimen,
                t_min=cgm_t[keep].tolist(),
                glucose_median_mg_dl=np.median(glucose, axis=1).round(2).tolist(),
                glucose_p5_mg_dl=np.percentile(glucose, 5, axis=1).round(2).tolist(),
                glucose_p95_mg_dl=np.percentile(glucose, 95, axis=1).round(2).tolist(),
                metrics_median=median_metrics,
                time_in_range_p5_percent=float(np.percentile(tir, 5)),
                time_in_range_p95_percent=float(np.percentile(tir, 95)),
                time_below_70_p95_percent=float(np.percentile(tbr, 95)),
            )
        )
    return ComparisonResult(n_ensemble=m, horizon_min=scenario.horizon_min, outcomes=outcomes)
