"""The ensemble filter: its sensor model against the published one, its propagation against the reference
simulator, batching, persistence, input policies and that it learns what it should."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from medtwin.physiology.assimilation import (
    AUGMENTED,
    FilterSettings,
    GlucoseFilter,
    _sensor_error_statistics,
    add_input,
    assimilate,
    basal_insulin_states,
    cohort_prior_draws,
    propagate_copies,
    start_filter,
)
from medtwin.physiology.calibrate import population_patient, with_basal
from medtwin.physiology.devices import CGMSensor
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.simulate import Event, eaten_per_minute, fixed_bolus, simulate_inputs
from medtwin.physiology.synthetic import synthetic_log
from medtwin.physiology.uva_padova import PARAMETER_NAMES, rhs, virtual_patients

QUIET = FilterSettings(n_members=8, prior_sd_log=(0.0,) * len(AUGMENTED), drift_sd_log_per_sqrt_h=(0.0,) * 7,
                       glucose_noise_mg_dl_per_sqrt_min=0.0, disturbance_sd_mg_dl_per_min=0.0, carb_error_sd_log=0.0)


def test_sensor_error_statistics_match_the_published_sensor_model() -> None:
    """Closed-form mean, SD and correlation time of the Breton & Kovatchev error vs a long Monte Carlo run."""
    sensor = CGMSensor()
    mean, sd, tau = _sensor_error_statistics(sensor)
    assert tau == pytest.approx(-15 / math.log(0.7))  # 42.06 min
    noise = sensor.noise_at(np.arange(0.0, 60_000.0, 5.0), 40, np.random.default_rng(0))
    assert noise.mean() == pytest.approx(mean, abs=0.35)
    assert noise.std() == pytest.approx(sd, rel=0.03)
    centred = noise - noise.mean()
    lag30 = float(np.mean(centred[:-6] * centred[6:]) / centred.var())
    assert lag30 == pytest.approx(math.exp(-30 / tau), abs=0.03)


def test_basal_insulin_states_are_the_published_steady_state() -> None:
    patients = virtual_patients()
    basal = patients.basal_rate_u_per_min() * 60.0
    states = basal_insulin_states(patients.values, basal)
    columns = [5, 7, 8, 9, 10, 11]  # Ip, I1, Id, Il, Isc1, Isc2
    np.testing.assert_allclose(states[:, columns], patients.initial_state[:, columns], rtol=1e-6)
    np.testing.assert_allclose(states[:, 6], 0.0, atol=1e-6 * patients.get("Ib").max())  # X = I - Ib = 0
    y = patients.initial_state.copy()
    y[:, columns + [6]] = states[:, columns + [6]]
    u = np.column_stack([np.zeros(patients.n), basal / 60.0])
    derivative = rhs(0.0, y, patients.values, u)
    assert np.max(np.abs(derivative[:, 5:12])) < 1e-6 * np.max(np.abs(y[:, 5:12]))


def _filter_for(patient_name: str, reading: float, basal: float, settings: FilterSettings = QUIET,
                seed: int = 0) -> GlucoseFilter:
    return start_filter(patient_name, virtual_patients([patient_name]), time_min=0.0, glucose_mg_dl=reading,
                        basal_u_per_h=basal, settings=settings, rng=np.random.default_rng(seed))


def _propagate_against_reference(name: str, step_min: float, bolus_min: float) -> tuple[float, float]:
    settings = FilterSettings(n_members=4, step_min=step_min, prior_sd_log=(0.0,) * 7,
                              drift_sd_log_per_sqrt_h=(0.0,) * 7, glucose_noise_mg_dl_per_sqrt_min=0.0,
                              disturbance_sd_mg_dl_per_min=0.0, carb_error_sd_log=0.0)
    patient = virtual_patients([name])
    basal = float(patient.basal_rate_u_per_min()[0] * 60)
    filt = _filter_for(name, float(patient.get("Gb")[0]), basal, settings)
    filt.sensor_error[:] = 0.0
    filt.states[:] = patient.initial_state[0]
    add_input(filt, "carbs", 30.0, 60.0, settings)
    add_input(filt, "bolus", bolus_min, 5.0, settings)
    add_input(filt, "basal", 120.0, 2 * basal, settings)
    horizons = np.arange(10.0, 301.0, 10.0)
    ours = propagate_copies([filt], horizons, settings)[:, 0, :, 12] / patient.get("Vg")[0]  # (H, M)
    assert np.ptp(ours, axis=1).max() == 0.0  # identical members stay identical
    assert filt.time_min == 0.0 and len(filt.meals) == 1 and len(filt.boluses) == 1  # copies: filter untouched
    announced = np.zeros((1, 301))
    announced[0, 30] = 60.0
    insulin = np.full((1, 301), basal / 60)
    insulin[0, 120:] = 2 * basal / 60
    reference = simulate_inputs(patient, eaten_per_minute(announced), insulin, horizons,
                                events=[Event(bolus_min, fixed_bolus(5.0))]).glucose_mg_dl[:, 0]
    return float(np.max(np.abs(ours[:, 0] - reference))), float(np.ptp(reference))


@pytest.mark.parametrize("name", ["adolescent#003", "child#002"])
def test_propagation_converges_to_the_reference_simulator(name: str) -> None:
    """A meal eaten at 5 g/min, a bolus and a basal change through the filter's batched RK4 (meals and basal
    averaged over each step, boluses at the nearest step) against medtwin's Dopri5 simulator over 5 h: within
    0.25 mg/dL at the default 2-min step when the inputs fall on the step grid (an excursion of over 100
    mg/dL); a bolus between steps is moved by at most half a step, and a finer step brings it back."""
    aligned, excursion = _propagate_against_reference(name, 2.0, 30.0)
    assert excursion > 100
    assert aligned < 0.25
    between, _ = _propagate_against_reference(name, 2.0, 31.0)
    fine, _ = _propagate_against_reference(name, 0.5, 31.0)
    assert 0.25 < between < 2.5
    assert fine < 0.25


def test_a_batch_equals_each_patient_alone_even_with_different_intervals() -> None:
    settings = FilterSettings(n_members=8)
    names = ["adult#004", "child#003", "adolescent#007"]

    def fresh() -> list[GlucoseFilter]:
        out = [_filter_for(n, 140.0 + 10 * i, 1.0, settings, seed=i) for i, n in enumerate(names)]
        add_input(out[1], "carbs", 3.0, 100.0, settings)
        add_input(out[1], "bolus", 3.0, 2.0, settings)
        return out

    together, alone = fresh(), fresh()
    times = np.array([5.0, 17.5, 45.0])  # irregular spacing: one batched solve (grouped by step count)
    readings = np.array([150.0, 170.0, 120.0])
    assimilate(together, times, readings, settings)
    for i, filt in enumerate(alone):
        assimilate([filt], times[i:i + 1], readings[i:i + 1], settings)
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.states, b.states, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(a.theta, b.theta, rtol=1e-12, atol=1e-12)
        assert a.time_min == b.time_min
    assert together[1].time_min == 17.5 and together[1].meals  # the meal (20 min of eating) is still going


def test_filtering_beats_the_raw_sensor_with_the_true_model() -> None:
    """With the patient's own parameters, the filtered glucose is closer to the truth than the CGM is."""
    name = "adult#006"
    patient = virtual_patients([name])
    log, truth = synthetic_log(patient, 1, np.random.default_rng(3))
    settings = FilterSettings(n_members=24, prior_sd_log=(0.05,) * 7, drift_sd_log_per_sqrt_h=(0.01,) * 7)
    filt = start_filter(name, patient, time_min=0.0, glucose_mg_dl=log.cgm_mg_dl[0], basal_u_per_h=log.basal_u_per_h,
                        settings=settings, rng=np.random.default_rng(1))
    events = sorted([(m.time_min, "carbs", m.carbs_g) for m in log.meals]
                    + [(b.time_min, "bolus", b.units) for b in log.boluses])
    estimates = []
    for t, reading in zip(log.cgm_t_min[1:], log.cgm_mg_dl[1:], strict=True):
        while events and events[0][0] <= t:
            when, kind, value = events.pop(0)
            add_input(filt, kind, when, value, settings)
        assimilate([filt], [t], [reading], settings)
        estimates.append(filt.glucose_mg_dl().mean())
    late = slice(36, None)  # after the first 3 h
    filtered = np.sqrt(np.mean((np.array(estimates) - truth[1:])[late] ** 2))
    raw = np.sqrt(np.mean((np.array(log.cgm_mg_dl[1:]) - truth[1:])[late] ** 2))
    assert filtered < 0.8 * raw, (filtered, raw)
    assert filt.n_assimilated == len(log.cgm_t_min)


def test_insulin_sensitivity_falls_when_the_patient_becomes_resistant() -> None:
    """Truth: adult#002 with Vmx and kp3 halved (insulin resistance). The filter starts from the original
    twin and must move its insulin-sensitivity ratio well below 1 within two days."""
    name = "adult#002"
    original = virtual_patients([name])
    resistant = original.with_values(Vmx=original.get("Vmx") * 0.5, kp3=original.get("kp3") * 0.5)
    log, _truth = synthetic_log(resistant, 2, np.random.default_rng(11))
    settings = FilterSettings(n_members=32)
    filt = start_filter(name, original, time_min=0.0, glucose_mg_dl=log.cgm_mg_dl[0], basal_u_per_h=log.basal_u_per_h,
                        settings=settings, rng=np.random.default_rng(2), prior_sd_log=(0.3, 0.3, 0.1, 0.3, 0.1, 0.1, 0.1))
    events = sorted([(m.time_min, "carbs", m.carbs_g) for m in log.meals]
                    + [(b.time_min, "bolus", b.units) for b in log.boluses])
    times, readings = np.asarray(log.cgm_t_min), np.asarray(log.cgm_mg_dl)
    for t, reading in zip(times[1:], readings[1:], strict=True):
        while events and events[0][0] <= t:
            when, kind, value = events.pop(0)
            add_input(filt, kind, when, value, settings)
        assimilate([filt], [t], [reading], settings)
    ratio, sd = filt.insulin_sensitivity()
    assert 0.3 < ratio < 0.8, ratio
    assert 0 < sd < 0.5


def test_states_stay_physical_after_extreme_readings() -> None:
    settings = FilterSettings(n_members=16)
    filt = _filter_for("child#005", 120.0, 0.5, settings)
    add_input(filt, "bolus", 1.0, 30.0, settings)
    for k, reading in enumerate([40.0, 600.0, 39.0, 400.0, 15.0], start=1):
        assimilate([filt], [5.0 * k], [reading], settings)
    nonnegative = [i for i in range(14) if i != 6]
    assert np.all(filt.states[:, nonnegative] >= 0.0)
    assert np.all(np.isfinite(filt.states)) and np.all(np.isfinite(filt.theta))
    assert np.all(filt.theta <= settings.max_log_multiplier) and np.all(filt.theta >= settings.min_log_multiplier)


def test_late_readings_are_skipped_late_inputs_applied_gaps_restart() -> None:
    settings = FilterSettings(n_members=8)
    filt = _filter_for("adult#001", 140.0, 1.2, settings)
    assimilate([filt], [60.0], [150.0], settings)
    innovations = assimilate([filt], [55.0], [155.0], settings)  # older than the filter: skipped
    assert math.isnan(innovations[0]) and filt.n_skipped == 1 and filt.time_min == 60.0
    assert add_input(filt, "bolus", 20.0, 3.0, settings)  # 40 min late: applied now
    assert filt.boluses == [(60.0, 3.0)]
    assert not add_input(filt, "carbs", -10.0, 50.0, settings)  # 70 min late: too late
    assert filt.n_skipped == 2 and not filt.meals
    assimilate([filt], [65.0], [150.0], settings)
    assert filt.boluses == []  # delivered
    assimilate([filt], [65.0 + 13 * 60], [90.0], settings)  # a 13 h gap restarts the states there
    assert filt.n_restarts == 1 and filt.time_min == 845.0
    assert abs(filt.glucose_mg_dl().mean() + filt.sensor_error.mean() - 90.0) < 1e-6


def test_persisted_filter_resumes_exactly() -> None:
    settings = FilterSettings(n_members=8)
    filt = _filter_for("adolescent#002", 160.0, 0.9, settings)
    add_input(filt, "carbs", 2.0, 50.0, settings)
    assimilate([filt], [5.0], [162.0], settings)
    add_input(filt, "bolus", 30.0, 4.0, settings)  # announced ahead: pending
    add_input(filt, "basal", 90.0, 1.3, settings)
    restored = GlucoseFilter.from_dict(orjson.loads(orjson.dumps(filt.to_dict())))
    assert restored.to_dict() == filt.to_dict()
    for f in (filt, restored):
        assimilate([f], [10.0], [170.0], settings)  # draws process noise from the restored generator
        assimilate([f], [100.0], [150.0], settings)
    np.testing.assert_array_equal(restored.states, filt.states)
    np.testing.assert_array_equal(restored.theta, filt.theta)
    assert restored.basal_u_per_h == 1.3 and restored.boluses == []


def test_cohort_prior_draws_are_the_cohorts_own_values() -> None:
    cohort = virtual_patients()
    reference = population_patient(70.0, 1.0, cohort)
    draws = cohort_prior_draws(reference, cohort, 30, np.random.default_rng(0), jitter_sd_log=0.0)
    vmx = reference.get("Vmx")[0] * np.exp(draws[:, AUGMENTED.index("Vmx")])
    np.testing.assert_allclose(np.sort(vmx), np.sort(cohort.get("Vmx")), rtol=1e-12)


@pytest.mark.parametrize(("call", "field"), [
    (lambda f, s: assimilate([f], [5.0], [5.0], s), "glucose_mg_dl"),
    (lambda f, s: add_input(f, "pizza", 5.0, 1.0, s), "kind"),
    (lambda f, s: add_input(f, "carbs", 5.0, -20.0, s), "carbs"),
    (lambda f, s: add_input(f, "bolus", 5.0, 80.0, s), "bolus"),
    (lambda f, s: add_input(f, "basal", math.nan, 1.0, s), "time_min"),
    (lambda f, s: FilterSettings(n_members=2), "n_members"),
    (lambda f, s: FilterSettings(drift_sd_log_per_sqrt_h=(0.1,)), "drift_sd_log_per_sqrt_h"),
    (lambda f, s: GlucoseFilter.from_dict({"format": 1}), "filter"),
])
def test_bad_input_names_the_field(call, field: str) -> None:  # type: ignore[no-untyped-def]
    settings = FilterSettings(n_members=8)
    filt = _filter_for("adult#001", 140.0, 1.0, settings)
    with pytest.raises(PhysiologyInputError) as info:
        call(filt, settings)
    assert info.value.field == field


def test_start_needs_one_patient_and_a_plausible_reading() -> None:
    with pytest.raises(PhysiologyInputError) as info:
        start_filter("x", virtual_patients(["adult#001", "adult#002"]), time_min=0.0, glucose_mg_dl=100.0,
                     basal_u_per_h=1.0, settings=QUIET, rng=np.random.default_rng(0))
    assert info.value.field == "reference"
    patient = with_basal(virtual_patients(["adult#001"]), np.array([1.0]))
    with pytest.raises(PhysiologyInputError) as info:
        start_filter("x", patient, time_min=0.0, glucose_mg_dl=2000.0, basal_u_per_h=1.0, settings=QUIET,
                     rng=np.random.default_rng(0))
    assert info.value.field == "glucose_mg_dl"
    assert PARAMETER_NAMES.index("Vmx") >= 0
