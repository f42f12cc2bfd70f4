"""A scenario over a whole population, streamed: patients in blocks, only the CGM-time glucose kept.

What a virtual trial needs of thousands of twins is their sensor glucose (every 5 minutes) and the boluses
given, not every state every minute: :func:`simulate_population` builds each block's minute inputs and bolus
decisions exactly as :func:`medtwin.physiology.service.run_scenario` does, runs the block on the compiled
engine (:func:`~medtwin.physiology.simulate.simulate_glucose`, a step size per patient) and keeps
(samples, n) glucose and CGM readings. Peak memory is the outputs plus one block's minute inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medtwin.arrays import Array
from medtwin.physiology.devices import CGMSensor, InsulinPump
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.scenario import Scenario
from medtwin.physiology.service import schedule_inputs
from medtwin.physiology.simulate import DEFAULT_SOLVER, simulate_glucose
from medtwin.physiology.uva_padova import PatientParameters
from medtwin.solve import Dopri5

DEFAULT_BLOCK = 4096  # patients per block: ~ 4096 x 1440 min x 2 inputs x 8 B = 94 MB of minute inputs


@dataclass(frozen=True)
class PopulationRun:
    """``cgm_t_min`` (m,) sensor times; ``glucose_mg_dl`` (m, n) true subcutaneous glucose there;
    ``cgm_mg_dl`` (m, n) the sensor readings; ``bolus_units`` (n, n_boluses); ``steps`` (n,) solver steps."""

    cgm_t_min: Array
    glucose_mg_dl: Array
    cgm_mg_dl: Array
    bolus_units: Array
    steps: NDArray[np.int64]


def simulate_population(params: PatientParameters, scenario: Scenario, *, rng: np.random.Generator | None = None,
                        pump: InsulinPump | None = None, solver: Dopri5 = DEFAULT_SOLVER,
                        block: int = DEFAULT_BLOCK) -> PopulationRun:
    """Run ``scenario`` for every patient, ``block`` patients at a time, keeping the CGM-time glucose only.

    Sensor noise is drawn block by block from ``rng`` (default: the scenario's seed), so a run is reproducible
    for a given ``block``."""
    if params.n == 0:
        raise PhysiologyInputError("params", "no patients")
    if block < 1:
        raise PhysiologyInputError("block", f"must be at least 1 patient, got {block}")
    rng = np.random.default_rng(scenario.seed) if rng is None else rng
    pump = InsulinPump() if pump is None else pump
    settings = scenario.sensor
    sensor = CGMSensor(sample_period_min=settings.sample_period_min, noise=settings.noise,
                       min_mg_dl=settings.min_mg_dl, max_mg_dl=settings.max_mg_dl)
    cgm_t = sensor.sample_times(scenario.horizon_min)
    glucose = np.empty((cgm_t.size, params.n))
    cgm = np.empty((cgm_t.size, params.n))
    boluses: Array | None = None
    steps = np.zeros(params.n, dtype=np.int64)
    for start in range(0, params.n, block):
        rows = np.arange(start, min(start + block, params.n))
        part = params.take(rows.tolist())
        noise = sensor.noise_at(cgm_t, part.n, rng)
        carbs, insulin, events, _, _ = schedule_inputs(part, scenario, scenario.regimen, pump, sensor, noise)
        run = simulate_glucose(part, carbs, insulin, cgm_t, events=events, solver=solver)
        del carbs, insulin
        glucose[:, rows] = run.glucose_mg_dl
        cgm[:, rows] = sensor.read(run.glucose_mg_dl, noise)
        if boluses is None:
            boluses = np.empty((params.n, run.bolus_units.shape[1]))
        boluses[rows] = run.bolus_units
        steps[rows] = run.steps
    assert boluses is not None
    return PopulationRun(cgm_t, glucose, cgm, boluses, steps)
