"""Scenarios (bad input), devices (pump, sensor), CGM metrics against hand values and simglucose."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.physiology.devices import BasalBolusController, CGMSensor, InsulinPump
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.metrics import (
    ambulatory_glucose_profile,
    count_episodes,
    glucose_metrics,
    risk_indices,
)
from medtwin.physiology.scenario import parse_scenario, random_meal_scenario
from medtwin.physiology.simulate import eaten_per_minute


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"meals": [{"time_min": 60, "carbs_g": -10}]}, "meals[0].carbs_g", "positive"),
        ({"meals": [{"time_min": 60, "carbs_g": 5000}]}, "meals[0].carbs_g", "plausible"),
        ({"meals": [{"time_min": -30, "carbs_g": 40}]}, "meals[0].time_min", "past"),
        ({"horizon_min": 91 * 1440}, "horizon_min", "90 days"),
        (
            {"meals": [{"time_min": 600, "carbs_g": 40}, {"time_min": 300, "carbs_g": 40}]},
            "meals[1].time_min",
            "monotonic",
        ),
        ({"meals": [{"time_min": 2000, "carbs_g": 40}]}, "meals[0].time_min", "horizon"),
        ({"meals": [{"at": "25:00", "carbs_g": 40}]}, "meals[0]", "HH:MM"),
        ({"regimen": {"basal_scale": 0}}, "regimen.basal_scale", "greater"),
        ({"color": "red"}, "color", "Extra"),
    ],
)
def test_bad_scenarios_name_the_field(data: dict, field: str, words: str) -> None:
    with pytest.raises(PhysiologyInputError) as info:
        parse_scenario(data)
    assert info.value.field == field
    assert words.lower() in str(info.value).lower()


def test_clock_times_and_random_scenarios_are_reproducible() -> None:
    s = parse_scenario(
        {
            "horizon_min": 2880,
            "meals": [{"at": "07:30", "carbs_g": 40}, {"at": "07:00", "day": 1, "carbs_g": 50}],
        }
    )
    assert [m.time_min for m in s.meals] == [450, 1860]
    a = random_meal_scenario(3, np.random.default_rng(5))
    b = random_meal_scenario(3, np.random.default_rng(5))
    c = random_meal_scenario(3, np.random.default_rng(6))
    assert a == b and a != c
    assert len(a.meals) >= 9 and all(5 <= m.carbs_g <= 150 for m in a.meals)


@given(st.lists(st.tuples(st.integers(0, 199), st.floats(1, 120)), max_size=6), st.floats(1.0, 10.0))
def test_eating_queue_conserves_carbs_and_respects_rate(meals: list[tuple[int, float]], rate: float) -> None:
    total = sum(g for _, g in meals)
    announced = np.zeros((1, 200 + int(np.ceil(total / rate)) + 2))  # long enough to finish eating
    for minute, grams in meals:
        announced[0, minute] += grams
    eaten = eaten_per_minute(announced, rate)
    assert eaten.sum() == pytest.approx(announced.sum(), rel=1e-9, abs=1e-9)
    assert np.all(eaten <= rate + 1e-9) and np.all(eaten >= -1e-12)
    assert np.all(np.cumsum(eaten) <= np.cumsum(announced) + 1e-9)  # never eat before announced


def test_eating_queue_matches_simglucose_announce_rule() -> None:
    from simglucose.patient.t1dpatient import T1DPatient

    patient = T1DPatient.withName("adult#001")
    announced = np.zeros(60)
    announced[[3, 5, 30]] = [12.0, 10.0, 7.5]
    theirs = []
    for grams in announced:
        theirs.append(patient._announce_meal(grams))
    np.testing.assert_allclose(eaten_per_minute(announced[None])[0], theirs)


def test_pump_rounds_and_clips() -> None:
    pump = InsulinPump()
    np.testing.assert_allclose(pump.bolus(np.array([1.234, 45.0, -1.0])), [1.25, 30.0, 0.0])
    np.testing.assert_allclose(pump.basal(np.array([0.8333])), [0.85])


def test_controller_bolus_formula() -> None:
    controller = BasalBolusController(np.array([10.0, 20.0]), np.array([50.0, 40.0]))
    # 60 g, G = 200 -> 6 + 60/50 = 7.2 U; second: G 140 below threshold -> 3 U
    np.testing.assert_allclose(controller.bolus(60.0, np.array([200.0, 140.0])), [7.2, 3.0])


def test_sensor_noise_matches_simglucose_error_model_and_clips() -> None:
    from simglucose.sensor.noise_gen import noise15_iter

    params = {"PACF": 0.7, "gamma": -0.5444, "lambda": 15.9574, "delta": 1.6898, "xi": -5.47}
    gen = noise15_iter(params, seed=3)
    theirs = np.array([next(gen) for _ in range(20000)])
    sensor = CGMSensor(sample_period_min=15.0)
    ours = sensor.noise_at(np.arange(20000) * 15.0, 1, np.random.default_rng(3))[:, 0]
    assert abs(ours.mean() - theirs.mean()) < 1.0
    assert abs(ours.std() - theirs.std()) / theirs.std() < 0.08
    lag = np.corrcoef(ours[:-1], ours[1:])[0, 1]
    lag_theirs = np.corrcoef(theirs[:-1], theirs[1:])[0, 1]
    assert abs(lag - lag_theirs) < 0.05
    readings = sensor.read(np.array([20.0, 100.0, 700.0]), np.zeros(3))
    np.testing.assert_allclose(readings, [39.0, 100.0, 400.0])


def test_metrics_against_hand_computed_values() -> None:
    # 12 readings every 5 min: 4 below 54 (20 min), 2 in range, 3 above 250 (15 min), 3 at 200
    g = np.array([50, 50, 50, 50, 100, 120, 260, 260, 260, 200, 200, 200], dtype=float)
    m = glucose_metrics(g, 5.0)[0]
    assert m.mean_mg_dl == pytest.approx(g.mean())
    assert m.sd_mg_dl == pytest.approx(g.std(ddof=1))
    assert m.cv_percent == pytest.approx(100 * g.std(ddof=1) / g.mean())
    assert m.gmi_percent == pytest.approx(3.31 + 0.02392 * g.mean())
    assert m.time_below_54_percent == pytest.approx(100 * 4 / 12)
    assert m.time_below_70_percent == pytest.approx(100 * 4 / 12)
    assert m.time_in_range_70_180_percent == pytest.approx(100 * 2 / 12)
    assert m.time_above_180_percent == pytest.approx(100 * 6 / 12)
    assert m.time_above_250_percent == pytest.approx(100 * 3 / 12)
    assert (m.hypo_episodes_below_54, m.hyper_episodes_above_250, m.hyper_episodes_above_180) == (1, 1, 1)
    # a 10-minute dip is not an episode
    assert count_episodes(np.array([[False], [True], [True], [False]]), 5.0)[0] == 0


def test_risk_indices_match_simglucose() -> None:
    from simglucose.analysis.risk import risk_index

    g = np.array([45.0, 70.0, 112.5, 180.0, 320.0, 90.0])
    lbgi, hbgi = risk_indices(g)
    their_lbgi, their_hbgi, _ = risk_index(list(g), len(g))
    # simglucose averages the low (high) risk over low (high) readings only; Kovatchev 1997 averages over
    # all readings, so ours = theirs x fraction of readings on that side of 112.5 mg/dL (f = 0)
    f = 1.509 * (np.log(g) ** 1.084 - 5.381)
    assert lbgi[0] == pytest.approx(their_lbgi * np.mean(f < 0))
    assert hbgi[0] == pytest.approx(their_hbgi * np.mean(f > 0))
    assert lbgi[0] > 0 and hbgi[0] > 0


def test_agp_percentiles_by_time_of_day() -> None:
    t = np.arange(0, 3 * 1440, 5.0)
    day = np.floor(t / 1440)
    g = 100 + 10 * day + 50 * (np.mod(t, 1440) >= 720)
    agp = ambulatory_glucose_profile(t, g, bin_min=60)
    assert len(agp.minute_of_day) == 24
    assert agp.p50[0] == pytest.approx(110) and agp.p50[12] == pytest.approx(160)
    assert agp.p5[0] == pytest.approx(np.percentile(np.repeat([100.0, 110.0, 120.0], 12), 5))
    assert agp.p95[12] == pytest.approx(np.percentile(np.repeat([150.0, 160.0, 170.0], 12), 95))
    with pytest.raises(PhysiologyInputError):
        glucose_metrics(np.array([100.0, -5.0]), 5.0)
