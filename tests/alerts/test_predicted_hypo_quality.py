"""Alert quality of predicted hypoglycaemia: THE event and matching definition (medtwin.physiology.alert_quality)
on hand-made cases, the rule's episode probability against the normal CDF, and the rule replayed over forecasts
as the engine runs it."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from tests.alerts.test_predicted_hypo_anchor import T0, make

from medtwin.alerts.rules.predicted_hypo import (
    PredictedHypoRule,
    hypo_probability,
    low_now,
    replay,
    sensor_shift,
)
from medtwin.physiology.alert_quality import AlertQuality, hypo_events
from medtwin.physiology.assimilation import FilterSettings


def test_an_event_is_15_minutes_below_70_and_starts_at_its_first_reading() -> None:
    t = np.arange(0, 120, 5.0)
    short = np.full(t.size, 100.0)
    short[[4, 5]] = 65.0  # 10 minutes below 70: no event
    assert hypo_events(t, short) == []
    long = np.full(t.size, 100.0)
    long[4:8] = 60.0  # 20 minutes below from minute 20, back above from minute 40 for 15 min: ends at 40
    assert hypo_events(t, long) == [(20.0, 40.0)]
    going = np.full(t.size, 100.0)
    going[-3:] = 55.0
    assert hypo_events(t, going) == [(float(t[-3]), math.inf)]


def test_matching_precision_recall_and_lead() -> None:
    events = [(100.0, 140.0), (400.0, 430.0), (900.0, 950.0)]
    runs = [(75.0, 120.0),  # event 1 starts 25 min after the opening: true, lead 25
            (300.0, 330.0),  # nothing within 30 min or while held: false
            (340.0, 420.0),  # event 2 starts while held (60 min after opening): true, lead 60
            (905.0, 960.0)]  # event 3 under way at the opening: true (late), event 3 not detected
    q = AlertQuality()
    q.add(runs, events, first_min=0.0, last_min=1000.0)
    assert (q.alerts, q.true_alerts, q.events, q.detected) == (4, 3, 3, 2)
    assert q.precision == 0.75 and q.recall == pytest.approx(2 / 3) and q.median_lead_min == 42.5
    assert q.held_min == 45 + 30 + 80 + 55
    early = AlertQuality()
    early.add(runs, events, first_min=80.0, last_min=1000.0)  # event 1 starts within 30 min of the first forecast
    assert early.events == 2 and early.detected == 1


def test_no_alerts_and_no_events_are_not_callable_rates() -> None:
    q = AlertQuality()
    q.add([], [], 0.0, 100.0)
    assert math.isnan(q.precision) and math.isnan(q.recall) and math.isnan(q.median_lead_min)


def test_the_probability_of_a_flat_forecast_is_the_normal_cdf() -> None:
    f = make([75.0] * 6, reading=80, estimate=80)  # 80 % band +-9: SD 9 / 1.2816
    assert hypo_probability(f) == pytest.approx(norm.cdf((70 - 75) / (9 / norm.ppf(0.9))), rel=1e-9)
    assert hypo_probability(make([75.0] * 6, reading=66, estimate=70)) == 1.0  # the reading is below 70


def test_a_5_minute_dip_is_not_an_episode() -> None:
    dip = make([80, 80, 55, 80, 80, 80], reading=85, estimate=85)  # one horizon far below, the next ones not
    assert hypo_probability(dip) == pytest.approx(norm.cdf((70 - 80) / (9 / norm.ppf(0.9))), rel=1e-9)
    stay = make([80, 80, 55, 55, 55, 80], reading=85, estimate=85)
    assert hypo_probability(stay) == pytest.approx(norm.cdf((70 - 55) / (9 / norm.ppf(0.9))), rel=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(40, 200), min_size=6, max_size=6), st.integers(0, 5), st.floats(0.5, 30))
def test_a_lower_forecast_is_never_less_likely_to_alert(means: list[float], k: int, drop: float) -> None:
    lower = list(means)
    lower[k] -= drop
    assert hypo_probability(make(lower, reading=120, estimate=120)) >= hypo_probability(
        make(means, reading=120, estimate=120))


def test_replay_opens_holds_and_clears_as_the_engine_would() -> None:
    steps = [[120] * 6, [90, 85, 80, 76, 72, 70], [75, 68, 64, 60, 60, 60], [72, 66, 62, 60, 60, 60],
             [80, 78, 76, 76, 76, 76], [95, 98, 100, 100, 100, 100], [120] * 6]
    items = [(5.0 * k, make([float(v) for v in m], reading=m[0] + 3, estimate=m[0]).model_copy(
        update={"issued_at": T0 + timedelta(minutes=5 * k)})) for k, m in enumerate(steps)]
    rule = PredictedHypoRule()
    # at 5 min the episode window from 20 min (76, 72, 70) is too unlikely; opens at 10, held through 76
    # (hysteresis), cleared at 95+
    assert replay(rule, items) == [(10.0, 25.0)]
    assert replay(PredictedHypoRule(persist=2), items) == [(15.0, 25.0)]  # two forecasts in a row to open


def test_below_70_now_is_the_expected_reading_not_one_raw_reading() -> None:
    """A reading of 66 that the filter puts at 72 (white noise) is not hypoglycaemia now: no certain alert."""
    noisy = make([75.0] * 6, reading=66, estimate=72, expected=72.0)
    assert not low_now(noisy)
    assert hypo_probability(noisy) == pytest.approx(norm.cdf((70 - 75) / (9 / norm.ppf(0.9))), rel=1e-9)
    assert low_now(make([75.0] * 6, reading=71, estimate=69, expected=68.0))  # the expected reading is below
    assert hypo_probability(make([75.0] * 6, reading=66, estimate=66)) == 1.0  # no expected reading: the reading


def test_the_sensor_weight_takes_the_twins_decaying_sensor_error_off_the_path() -> None:
    model = FilterSettings()
    f = make([80.0] * 9, reading=85, estimate=65, expected=85.0, offset=20.0)
    f = f.model_copy(update={"horizons_min": tuple(range(5, 50, 5))})
    assert hypo_probability(f, sensor_weight=0.0) == hypo_probability(f.model_copy(update={"sensor_offset_mg_dl": None}))
    shift = sensor_shift(f, 1.0)
    expected = [model.sensor_mean_mg_dl + (20.0 - model.sensor_mean_mg_dl) * math.exp(-h / model.sensor_tau_min)
                for h in (0.0, 5.0, 30.0)]
    assert [shift(h) for h in (0.0, 5.0, 30.0)] == pytest.approx(expected, rel=1e-12)
    assert sensor_shift(f, 0.5)(30.0) == pytest.approx(expected[2] / 2, rel=1e-12)
    assert low_now(f, 1.0)  # the twin's glucose now: 85 - 20 = 65
    # episode from 5 min: the least likely of 5, 10, 15 min is at 15 min, where the shift is smallest
    sd = 9 / norm.ppf(0.9)
    g = f.model_copy(update={"cgm_now_mg_dl": 80.0, "last_reading_mg_dl": 80.0, "sensor_offset_mg_dl": 8.0})
    lowest = 80 - sensor_shift(g, 1.0)(15.0)
    assert hypo_probability(g, sensor_weight=1.0) == pytest.approx(norm.cdf((70 - lowest) / sd), rel=1e-9)
    assert hypo_probability(g, sensor_weight=1.0) > hypo_probability(g)  # a sensor reading high: glucose lower
