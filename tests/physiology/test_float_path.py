"""The single-patient float path runs the very same equations as the array path (one definition)."""

from __future__ import annotations

import numpy as np

from medtwin.physiology.devices import CGMSensor, InsulinPump
from medtwin.physiology.scenario import Meal, Scenario, SensorSettings
from medtwin.physiology.service import run_scenario, schedule_inputs
from medtwin.physiology.simulate import Event, simulate_inputs
from medtwin.physiology.uva_padova import PatientParameters, rhs, rhs_scalar, virtual_patients


def test_scalar_rhs_equals_array_rhs_on_every_branch() -> None:
    patients = virtual_patients()
    rng = np.random.default_rng(4)
    y = patients.initial_state * rng.uniform(0.5, 1.5, patients.initial_state.shape)
    y[:, 0] += rng.uniform(0, 5e4, patients.n)  # a meal in the stomach
    y[:, 13] = y[:, 0] + y[:, 1] + rng.uniform(0, 2e4, patients.n)
    y[0, 13] = 0.0  # no meal yet: kgut = kmax branch
    y[1, 4] = -1.0  # negative compartment: derivative frozen
    y[2, 3] = 400.0  # above the renal threshold
    y[3, 8] = 1e4  # EGP clipped at zero
    u = np.column_stack([rng.uniform(0, 5, patients.n), rng.uniform(0, 0.05, patients.n)])
    batched = rhs(0.0, y, patients.values, u)
    single = np.array([rhs_scalar(0.0, y[i].tolist(), patients.values[i].tolist(), u[i].tolist())
                       for i in range(patients.n)])
    np.testing.assert_allclose(single, batched, rtol=1e-13, atol=1e-12)
    assert batched[1, 4] == 0.0 and batched[3, 3] != 0.0 and np.all(batched[:, 13] == 0.0)


def test_single_patient_day_agrees_between_paths() -> None:
    """The lockstep solver's float path and array path, and the compiled engine, on one patient-day."""
    scenario = Scenario(horizon_min=1440, sensor=SensorSettings(noise=False),
                        meals=[Meal(time_min=420, carbs_g=50), Meal(time_min=720, carbs_g=70),
                               Meal(time_min=1140, carbs_g=80)])
    patient = virtual_patients(["adolescent#004"])
    compiled, _, _, _, _ = run_scenario(patient, scenario, rng=np.random.default_rng(0))
    carbs, insulin, events, _, _ = _inputs(patient, scenario)
    t = compiled.t_min
    fast = simulate_inputs(patient, carbs, insulin, t, events=events, engine="python")
    slow = simulate_inputs(patient, carbs, insulin, t, events=events, engine="python", float_path=False)
    # last-ulp differences (math.tanh vs the compiled tanh) may move one step-size decision, nothing more
    assert abs(fast.n_steps - slow.n_steps) <= 2
    np.testing.assert_allclose(fast.glucose_mg_dl, slow.glucose_mg_dl, atol=1e-3)
    np.testing.assert_allclose(fast.bolus_units, slow.bolus_units, atol=1e-9)
    # the compiled engine steps each patient on its own: same tolerance, a different step sequence
    np.testing.assert_allclose(compiled.glucose_mg_dl, fast.glucose_mg_dl, atol=0.02)
    np.testing.assert_allclose(compiled.bolus_units, fast.bolus_units, rtol=1e-4)
    assert fast.glucose_mg_dl.max() - fast.glucose_mg_dl.min() > 30  # a real day, not a flat line


def _inputs(patient: PatientParameters, scenario: Scenario) -> tuple[np.ndarray, np.ndarray, list[Event], np.ndarray,
                                                                      list[float]]:
    sensor = CGMSensor(noise=False)
    noise = sensor.noise_at(sensor.sample_times(scenario.horizon_min), patient.n, np.random.default_rng(0))
    return schedule_inputs(patient, scenario, scenario.regimen, InsulinPump(), sensor, noise)
