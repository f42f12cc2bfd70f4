"""UVA/Padova on the compiled population engine: the same answers as the lockstep solver, a step size per patient
(a batch of 1 hard + 9 easy patients gives each exactly its answer alone), glucose-only output and the streamed
population run equal to the full-state path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm

from medtwin.physiology import simulate
from medtwin.physiology.devices import CGMSensor, InsulinPump
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.insulin_chain import FAST_COLUMN, chain, chain_stages
from medtwin.physiology.population import simulate_population
from medtwin.physiology.scenario import Meal, Scenario, SensorSettings
from medtwin.physiology.service import run_scenario, schedule_inputs
from medtwin.physiology.simulate import (
    Event,
    _input_steps,
    eaten_per_minute,
    fixed_bolus,
    simulate_glucose,
    simulate_inputs,
)
from medtwin.physiology.uva_padova import (
    _I,
    COMPILED,
    INSULIN_CHAIN,
    PARAMETER_NAMES,
    kernel_parameters,
    virtual_patients,
)
from medtwin.solve import Dopri5, SolverFailure, kernels
from medtwin.solve.kernels import STAGE_OFFSETS

DAY = Scenario(horizon_min=1440, sensor=SensorSettings(noise=False),
               meals=[Meal(time_min=420, carbs_g=50), Meal(time_min=720, carbs_g=70), Meal(time_min=1140, carbs_g=80)])


def _inputs(n: int, minutes: int, meal_g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A meal of ``meal_g[i]`` grams eaten at 5 g/min from minute 30, basal 0.01 U/min."""
    carbs = np.zeros((n, minutes))
    for i, grams in enumerate(meal_g):
        full, rest = int(grams // 5), grams % 5
        carbs[i, 30 : 30 + full] = 5.0
        carbs[i, 30 + full] = rest
    return carbs, np.full((n, minutes), 0.01)


def test_compiled_engine_agrees_with_the_lockstep_solver_for_all_30_patients() -> None:
    patients = virtual_patients()
    carbs, insulin = _inputs(patients.n, 1440, np.full(patients.n, 60.0))
    events = [Event(100.0, fixed_bolus(4.0))]
    fast = simulate_inputs(patients, carbs, insulin, np.arange(1441.0), events=events)
    slow = simulate_inputs(patients, carbs, insulin, np.arange(1441.0), events=events, engine="python")
    # both held to rtol 1e-6 / atol 1e-6 on the states: far below the 1 mg/dL conformance bound
    np.testing.assert_allclose(fast.glucose_mg_dl, slow.glucose_mg_dl, atol=0.02)
    np.testing.assert_array_equal(fast.bolus_units, slow.bolus_units)
    assert np.ptp(fast.glucose_mg_dl, axis=0).min() > 20  # a meal and a bolus moved every patient


def test_a_hard_patient_does_not_change_the_easy_ones() -> None:
    """1 hard patient (a fast sensor compartment, ksc 5/min: stiff, and a 150 g meal with a bolus) + 9 easy ones
    (fasting): each gets bit for bit its answer alone, in the same number of steps."""
    patients = virtual_patients([f"adult#{i:03d}" for i in range(1, 11)])
    patients = patients.with_values(ksc=np.r_[5.0, patients.get("ksc")[1:]])
    meal = np.array([150.0] + [0.0] * 9)
    carbs, insulin = _inputs(10, 600, meal)
    events = [Event(40.0, lambda t, g: np.where(g > 0, np.r_[8.0, np.zeros(9)], 0.0))]
    t = np.arange(0.0, 601.0, 5.0)
    together = simulate_glucose(patients, carbs, insulin, t, events=events)
    for i in range(10):
        alone = simulate_glucose(patients.take([i]), carbs[i : i + 1], insulin[i : i + 1], t,
                                 events=[Event(40.0, fixed_bolus(8.0 if i == 0 else 0.0))])
        np.testing.assert_array_equal(together.glucose_mg_dl[:, i], alone.glucose_mg_dl[:, 0])
        assert together.steps[i] == alone.steps[0]
    assert together.steps[0] > 3 * together.steps[1:].max()


def test_glucose_only_output_equals_the_full_state_run() -> None:
    patients = virtual_patients(["child#003", "adolescent#007"])
    carbs, insulin = _inputs(2, 300, np.array([40.0, 70.0]))
    t = np.arange(0.0, 301.0, 5.0)
    full = simulate_inputs(patients, carbs, insulin, t, events=[Event(25.0, fixed_bolus(3.0))])
    only = simulate_glucose(patients, carbs, insulin, t, events=[Event(25.0, fixed_bolus(3.0))])
    np.testing.assert_array_equal(only.glucose_mg_dl, full.glucose_mg_dl)
    np.testing.assert_array_equal(only.bolus_units, full.bolus_units)


def test_glucose_only_keeps_only_the_input_steps_and_the_same_answer() -> None:
    """simulate_glucose hands the engine only the minutes where some patient's inputs change or someone eats;
    with a different temporary basal per patient, meals at different minutes and a bolus, the glucose is bit
    for bit that of the full minute grid (simulate_inputs), and far fewer rows went in."""
    patients = virtual_patients(["child#002", "adult#004", "adolescent#009"])
    carbs, insulin = _inputs(3, 400, np.array([30.0, 45.0, 0.0]))
    carbs[1] = np.roll(carbs[1], 77)  # the second patient eats later
    insulin[0, 120:180] = 0.02  # temporary basals of their own
    insulin[2, 200:215] = 0.0
    t = np.arange(0.0, 401.0, 5.0)
    events = [Event(50.0, fixed_bolus(2.0))]
    full = simulate_inputs(patients, carbs, insulin, t, events=events)
    only = simulate_glucose(patients, carbs, insulin, t, events=events)
    np.testing.assert_array_equal(only.glucose_mg_dl, full.glucose_mg_dl)
    rows = _input_steps(carbs, insulin)
    eating = np.flatnonzero(carbs.max(axis=0) > 0)
    assert set(eating) <= set(rows) and {0, 120, 180, 200, 215} <= set(rows) and rows.size < 40


def test_streamed_population_equals_run_scenario_whatever_the_block() -> None:
    patients = virtual_patients()
    _, cgm_t, cgm, _, _ = run_scenario(patients, DAY, rng=np.random.default_rng(0))
    small = simulate_population(patients, DAY, block=7)
    whole = simulate_population(patients, DAY, block=30)
    np.testing.assert_array_equal(small.cgm_t_min, cgm_t)
    np.testing.assert_array_equal(small.cgm_mg_dl, cgm)
    np.testing.assert_array_equal(small.glucose_mg_dl, whole.glucose_mg_dl)
    assert small.bolus_units.shape == (30, 3) and np.all(small.bolus_units > 0)


def test_a_diverging_patient_is_named() -> None:
    patients = virtual_patients(["adult#001", "adult#002"]).with_values(ksc=np.array([0.1, 1e7]))
    carbs, insulin = _inputs(2, 60, np.array([0.0, 0.0]))
    with pytest.raises(SolverFailure, match="patient 1"):
        simulate_glucose(patients, carbs, insulin, np.array([0.0, 60.0]), solver=Dopri5(max_steps=500))


def test_spreading_patients_over_threads_changes_no_answer() -> None:
    """The same 30 patients on one thread and split into blocks over several: bit for bit, same steps."""
    patients = virtual_patients()
    carbs, insulin = _inputs(patients.n, 300, np.linspace(20.0, 90.0, patients.n))
    t = np.arange(0.0, 301.0, 5.0)
    events = [Event(40.0, fixed_bolus(3.0))]
    before = kernels.threads()
    try:
        kernels.set_threads(1)
        alone = simulate_glucose(patients, carbs, insulin, t, events=events)
        kernels.set_threads(3)  # blocks of 3 patients on a pool of 3 threads, whatever the machine
        split = simulate_glucose(patients, carbs, insulin, t, events=events)
    finally:
        kernels.set_threads(before)
    np.testing.assert_array_equal(split.glucose_mg_dl, alone.glucose_mg_dl)
    np.testing.assert_array_equal(split.steps, alone.steps)
    assert np.ptp(alone.glucose_mg_dl, axis=0).min() > 5  # every patient's meal moved its glucose
    with pytest.raises(ValueError, match="at least 1"):
        kernels.set_threads(0)


def test_scenario_inputs_are_shared_views_and_give_the_copies_answer() -> None:
    """schedule_inputs hands out one meal row for everyone and one basal per patient as broadcast views (no
    (n, minutes) copies); the engine's checks and change scans read them without expanding them, and the
    glucose is bit for bit that of the same inputs as full contiguous arrays."""
    patients = virtual_patients(["child#002", "adult#004", "adolescent#009", "adult#001"])
    sensor = CGMSensor(noise=False)
    noise = sensor.noise_at(sensor.sample_times(DAY.horizon_min), patients.n, np.random.default_rng(0))
    carbs, insulin, events, basal, _ = schedule_inputs(patients, DAY, DAY.regimen, InsulinPump(), sensor, noise)
    assert carbs.shape == insulin.shape == (patients.n, DAY.minutes)
    assert carbs.strides[0] == 0 and insulin.strides[1] == 0  # views: one row, one value per patient
    np.testing.assert_array_equal(insulin[:, 0] * 60.0, basal)
    copies = np.array(carbs), np.array(insulin)
    np.testing.assert_array_equal(_input_steps(carbs, insulin), _input_steps(*copies))
    t = np.arange(0.0, DAY.minutes + 1.0, 5.0)
    shared = simulate_glucose(patients, carbs, insulin, t, events=events)
    full = simulate_glucose(patients, *copies, t, events=events)
    np.testing.assert_array_equal(shared.glucose_mg_dl, full.glucose_mg_dl)
    bad = np.broadcast_to(np.r_[copies[0][0, :-1], np.nan], carbs.shape)  # a NaN in the shared row is seen
    with pytest.raises(PhysiologyInputError, match="carbohydrate_g_per_min"):
        simulate_glucose(patients, bad, insulin, t)


def test_one_meal_row_for_everyone_is_eaten_as_each_row_alone() -> None:
    announced = np.zeros((4, 120))
    announced[:, [10, 12, 70]] = [30.0, 12.5, 7.0]
    together = eaten_per_minute(announced, 4.0)
    np.testing.assert_array_equal(together, np.repeat(eaten_per_minute(announced[:1], 4.0), 4, axis=0))
    announced[3, 70] = 9.0  # one row differs: every row is computed on its own
    np.testing.assert_array_equal(eaten_per_minute(announced, 4.0)[3], eaten_per_minute(announced[3:], 4.0)[0])
    assert eaten_per_minute(announced, 4.0)[3].sum() == pytest.approx(51.5)


def _chain_by_expm(g: np.ndarray, insulin_u_per_min: float, y0: np.ndarray, s: float) -> np.ndarray:
    """(Ip, Il, Isc1, Isc2) at ``s`` by the matrix exponential of the chain's equations (augmented for the
    constant infusion)."""
    ka1, kd, ka2, m1, m2, m4, m30 = (g[_I[k]] for k in ("ka1", "kd", "ka2", "m1", "m2", "m4", "m30"))
    infusion = insulin_u_per_min * 6000.0 / g[_I["BW"]]
    a = np.array([[-(m2 + m4), m1, ka1, ka2, 0.0], [m2, -(m1 + m30), 0.0, 0.0, 0.0],
                  [0.0, 0.0, -(ka1 + kd), 0.0, infusion], [0.0, 0.0, kd, -ka2, 0.0], [0.0] * 5])
    return np.asarray(expm(a * s) @ np.r_[y0[list(INSULIN_CHAIN)], 1.0])[:4]


@given(patient=st.integers(0, 29), s=st.floats(1e-6, 240.0), infusion=st.floats(0.0, 0.2),
       coincide=st.booleans(), fast=st.booleans())
@settings(max_examples=80, deadline=None)
def test_insulin_chain_closed_form_equals_the_matrix_exponential(patient: int, s: float, infusion: float,
                                                                 coincide: bool, fast: bool) -> None:
    """The engine's closed-form insulin states (the linear chain Isc1 -> Isc2 -> Ip <-> Il) against scipy's
    expm, also where Isc1 and Isc2 decay at the same rate (ka1 + kd = ka2: a divided difference, no 0/0), in
    both forms (sum of exponentials, and the divided differences kept for modes close to the subcutaneous
    rates), and the five-stage evaluation (exponentials by powers) equal to five single ones."""
    g = virtual_patients().values[patient].copy()
    if coincide:
        g[_I["ka2"]] = g[_I["ka1"]] + g[_I["kd"]]
    row, base = kernel_parameters(g[None])[0], len(PARAMETER_NAMES)
    assert row[base + FAST_COLUMN] == 1.0  # every shipped patient's modes are far from its subcutaneous rates
    row[base + FAST_COLUMN] = float(fast)
    _check_chain(g, row, base, s, infusion)


def test_insulin_chain_when_a_plasma_mode_meets_the_subcutaneous_rates() -> None:
    """Not a shipped patient: m1, m30 and ka2 chosen so that the slow plasma/liver mode and both subcutaneous
    rates lie within 1e-3 /min of each other: the divided-difference form (no sum of exponentials) and its
    series branch, still equal to expm."""
    g = virtual_patients(["adult#001"]).values[0].copy()
    alpha = g[_I["ka1"]] + g[_I["kd"]]
    x, a = alpha - 4e-4, g[_I["m2"]] + g[_I["m4"]]
    g[_I["m1"]] = 0.01
    g[_I["m30"]] = x + 0.01 * g[_I["m2"]] / (a - x) - 0.01  # (a - x)(c - x) = m1 m2: a mode at -x
    g[_I["ka2"]] = alpha + 3e-4
    row, base = kernel_parameters(g[None])[0], len(PARAMETER_NAMES)
    assert row[base + FAST_COLUMN] == 0.0
    for s in (1e-4, 0.5, 3.0, 30.0, 600.0):
        _check_chain(g, row, base, s, 0.05)


def _check_chain(g: np.ndarray, row: np.ndarray, base: int, s: float, infusion: float) -> None:
    """The closed form at ``s`` against expm, and its five-stage evaluation against five single ones."""
    y0 = np.zeros(14)
    y0[list(INSULIN_CHAIN)] = [90.0, 40.0, 600.0, 150.0]
    out = np.zeros(14)
    chain(s, y0, row, base, infusion, out)
    np.testing.assert_allclose(out[list(INSULIN_CHAIN)], _chain_by_expm(g, infusion, y0, s), rtol=1e-11)
    stages = np.zeros((5, 14))
    chain_stages(s, y0, row, base, infusion, stages.reshape(-1), 14)
    for r, c in enumerate(STAGE_OFFSETS):
        chain(c * s, y0, row, base, infusion, out)
        np.testing.assert_allclose(stages[r, list(INSULIN_CHAIN)], out[list(INSULIN_CHAIN)], rtol=1e-12)


def test_closed_form_insulin_lifts_the_stability_limit_and_keeps_the_answer() -> None:
    """The same day with the insulin chain integrated by Dormand-Prince (its fast plasma/liver mode caps the
    step at ~3-7 min) and in closed form: the same glucose to 0.02 mg/dL at the default tolerances, and a
    fasting day in under half the steps."""
    patients = virtual_patients([f"adult#{i:03d}" for i in range(1, 6)])
    carbs, insulin = _inputs(5, 1440, np.full(5, 60.0))
    t = np.arange(0.0, 1441.0, 5.0)
    integrated = replace(COMPILED, exact_states=())
    with_chain = simulate_glucose(patients, carbs, insulin, t)
    original = simulate.COMPILED
    try:
        simulate.COMPILED = integrated
        without = simulate_glucose(patients, carbs, insulin, t)
        fasting_without = simulate_glucose(patients, 0 * carbs, insulin, t).steps
    finally:
        simulate.COMPILED = original
    np.testing.assert_allclose(with_chain.glucose_mg_dl, without.glucose_mg_dl, atol=0.02)
    assert np.ptp(with_chain.glucose_mg_dl, axis=0).min() > 20
    fasting_with = simulate_glucose(patients, 0 * carbs, insulin, t).steps
    assert np.all(2 * fasting_with < fasting_without)
