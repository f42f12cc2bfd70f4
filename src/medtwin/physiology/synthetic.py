"""Synthetic patient logs from virtual patients (for validation, demos and examples)."""

from __future__ import annotations

import numpy as np

from medtwin.arrays import Array
from medtwin.physiology.calibrate import GlucoseLog
from medtwin.physiology.scenario import Bolus, random_meal_scenario
from medtwin.physiology.service import run_scenario
from medtwin.physiology.uva_padova import PatientParameters


def synthetic_log(
    patient: PatientParameters, days: int, rng: np.random.Generator
) -> tuple[GlucoseLog, Array]:
    """Simulate one virtual patient for ``days`` with random meals, its basal-bolus therapy and a noisy
    CGM (5 min). Returns the log a clinic would see and the true subcutaneous glucose at the CGM times."""
    if patient.n != 1:
        raise ValueError("patient must hold exactly one patient")
    scenario = random_meal_scenario(days, rng)
    trajectory, cgm_t, cgm, basal, times = run_scenario(patient, scenario, rng=rng)
    boluses = [
        Bolus(time_min=t, units=float(u))
        for t, u in zip(times, trajectory.bolus_units[0], strict=True)
        if u > 0
    ]
    log = GlucoseLog(
        body_weight_kg=float(patient.get("BW")[0]),
        basal_u_per_h=float(basal[0]),
        cgm_t_min=cgm_t.tolist(),
        cgm_mg_dl=cgm[:, 0].tolist(),
        meals=scenario.meals,
        boluses=boluses,
    )
    truth = trajectory.glucose_mg_dl[np.searchsorted(trajectory.t_min, cgm_t), 0]
    return log, truth


def split_log(log: GlucoseLog, at_min: float) -> tuple[GlucoseLog, GlucoseLog]:
    """(data before ``at_min``, full log) - the second keeps everything so a twin can be run through."""
    t = np.asarray(log.cgm_t_min)
    keep = t < at_min
    head = log.model_copy(
        update={
            "cgm_t_min": t[keep].tolist(),
            "cgm_mg_dl": np.asarray(log.cgm_mg_dl)[keep].tolist(),
            "meals": [m for m in log.meals if m.time_min < at_min],
            "boluses": [b for b in log.boluses if b.time_min < at_min],
        }
    )
    return head, log
