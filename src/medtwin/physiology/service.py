"""Service-level functions an API or CLI can call directly; results are pydantic models (JSON-ready)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from medtwin.arrays import Array
from medtwin.physiology.devices import BasalBolusController, CGMSensor, InsulinPump
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.metrics import GlucoseMetrics, glucose_metrics
from medtwin.physiology.scenario import Regimen, Scenario, parse_scenario
from medtwin.physiology.simulate import (
    DEFAULT_SOLVER,
    Event,
    Trajectory,
    eaten_per_minute,
    fixed_bolus,
    simulate_inputs,
)
from medtwin.physiology.uva_padova import PatientParameters
from medtwin.solve import Solver


class InsulinEvent(BaseModel):
    time_min: float
    units: list[float]


class PatientResult(BaseModel):
    name: str
    glucose_mg_dl: list[float]
    cgm_mg_dl: list[float]
    metrics: GlucoseMetrics


class SimulationResult(BaseModel):
    model: str = "UvaPadova2008"
    regimen: Regimen
    t_min: list[float]
    cgm_t_min: list[float]
    basal_u_per_h: list[float]
    boluses: list[InsulinEvent]
    meals: list[dict[str, float]]
    patients: list[PatientResult]


def schedule_inputs(
    params: PatientParameters,
    scenario: Scenario,
    regimen: Regimen,
    pump: InsulinPump,
    sensor: CGMSensor,
    sensor_noise: Array,
) -> tuple[Array, Array, list[Event], Array, list[float]]:
    """Minute-grid carbohydrate and basal arrays, bolus events (controller + manual), basal (U/h).

    The two (n, minutes) arrays are read-only broadcast views, not copies: the scenario's meals are the same
    row for every patient and each patient's basal is one value for every minute (for 10,000 patients a copy
    of each was 115 MB written and scanned per day; :func:`~medtwin.physiology.simulate.simulate_glucose`
    reads such views without expanding them)."""
    n, minutes = params.n, scenario.minutes
    announced = np.zeros((1, minutes))
    for meal in scenario.meals:
        announced[0, int(round(meal.time_min))] += meal.carbs_g
    carbs = np.broadcast_to(eaten_per_minute(announced, scenario.eating_rate_g_per_min), (n, minutes))
    basal_u_per_h = pump.basal(params.basal_rate_u_per_min() * 60.0 * regimen.basal_scale)
    insulin = np.broadcast_to((basal_u_per_h / 60.0)[:, None], (n, minutes))
    controller = BasalBolusController(
        carb_ratio_g_per_unit=params.carb_ratio_g_per_unit * regimen.carb_ratio_scale,
        correction_factor_mg_dl_per_unit=params.correction_factor_mg_dl_per_unit,
        target_mg_dl=regimen.target_mg_dl,
        correction_threshold_mg_dl=regimen.correction_threshold_mg_dl,
    )
    events: list[Event] = []
    times: list[float] = []
    if regimen.meal_boluses:
        for meal in scenario.meals:
            when = float(np.clip(meal.time_min + regimen.bolus_offset_min, 0, minutes - 1))
            sample = min(int(when // sensor.sample_period_min), sensor_noise.shape[0] - 1)

            def decide(
                t: float, glucose: Array, carbs_g: float = meal.carbs_g, sample: int = sample
            ) -> Array:
                reading = sensor.read(glucose, sensor_noise[sample])
                return pump.bolus(controller.bolus(carbs_g, reading))

            events.append(Event(when, decide))
            times.append(when)
    for bolus in scenario.boluses:
        units = float(pump.bolus(np.array(bolus.units)))
        events.append(Event(float(bolus.time_min), fixed_bolus(units)))
        times.append(float(bolus.time_min))
    return carbs, insulin, events, basal_u_per_h, times


def run_scenario(
    params: PatientParameters,
    scenario: Scenario,
    regimen: Regimen | None = None,
    *,
    rng: np.random.Generator | None = None,
    pump: InsulinPump | None = None,
    solver: Solver = DEFAULT_SOLVER,
    float_path: bool = True,
) -> tuple[Trajectory, Array, Array, Array, list[float]]:
    """Batched closed-loop run: returns trajectory (per minute), CGM times, CGM readings (m, n), basal, bolus times.

    ``float_path``: see :func:`~medtwin.physiology.simulate.simulate_inputs` (one patient on plain floats)."""
    regimen = scenario.regimen if regimen is None else regimen
    rng = np.random.default_rng(scenario.seed) if rng is None else rng
    pump = InsulinPump() if pump is None else pump
    sensor = CGMSensor(
        sample_period_min=scenario.sensor.sample_period_min,
        noise=scenario.sensor.noise,
        min_mg_dl=scenario.sensor.min_mg_dl,
        max_mg_dl=scenario.sensor.max_mg_dl,
    )
    cgm_t = sensor.sample_times(scenario.horizon_min)
    noise = sensor.noise_at(cgm_t, params.n, rng)
    carbs, insulin, events, basal, times = schedule_inputs(params, scenario, regimen, pump, sensor, noise)
    t_eval = np.unique(np.concatenate([np.arange(scenario.minutes + 1.0), cgm_t]))
    trajectory = simulate_inputs(
        params, carbs, insulin, t_eval, events=events, solver=solver, float_path=float_path
    )
    true_at_samples = trajectory.glucose_mg_dl[np.searchsorted(t_eval, cgm_t)]
    cgm = sensor.read(true_at_samples, noise)
    return trajectory, cgm_t, cgm, basal, times


def simulate_scenario(
    params: PatientParameters,
    scenario: Scenario | dict[str, object],
    *,
    rng: np.random.Generator | None = None,
    pump: InsulinPump | None = None,
    solver: Solver = DEFAULT_SOLVER,
) -> SimulationResult:
    """Simulate ``scenario`` for every patient in ``params`` (one batched solve); JSON-ready result."""
    scenario = parse_scenario(scenario)
    if params.n == 0:
        raise PhysiologyInputError("params", "no patients")
    trajectory, cgm_t, cgm, basal, times = run_scenario(params, scenario, rng=rng, pump=pump, solver=solver)
    minute_index = np.searchsorted(trajectory.t_min, np.arange(scenario.minutes + 1.0))
    glucose = trajectory.glucose_mg_dl[minute_index]
    metrics = glucose_metrics(cgm, scenario.sensor.sample_period_min)
    return SimulationResult(
        regimen=scenario.regimen,
        t_min=np.arange(scenario.minutes + 1.0).tolist(),
        cgm_t_min=cgm_t.tolist(),
        basal_u_per_h=basal.tolist(),
        boluses=[
            InsulinEvent(time_min=t, units=trajectory.bolus_units[:, i].tolist()) for i, t in enumerate(times)
        ],
        meals=[{"time_min": m.time_min, "carbs_g": m.carbs_g} for m in scenario.meals],
        patients=[
            PatientResult(
                name=params.names[i],
                glucose_mg_dl=glucose[:, i].round(3).tolist(),
                cgm_mg_dl=cgm[:, i].round(2).tolist(),
                metrics=metrics[i],
            )
            for i in range(params.n)
        ],
    )
