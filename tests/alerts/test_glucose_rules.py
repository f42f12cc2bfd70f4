"""Glucose rules: consensus episodes (begin and end after 15 min, per level, gaps, late readings) and
predicted hypoglycaemia from a forecast (lead time, predicted value, hysteresis)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.alerts.glucose import EpisodeTracker, episodes, predict_hypo
from medtwin.physiology.metrics import count_episodes
from medtwin.vocab import GlucoseForecast

T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)


def series(values: Sequence[float], step_min: float = 5.0, start: datetime = T0) -> list[tuple[datetime, float]]:
    return [(start + timedelta(minutes=step_min * i), v) for i, v in enumerate(values)]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_level_1_hypo_begins_after_15_minutes_and_ends_after_15_minutes_back_above_70() -> None:
    tracker = EpisodeTracker()
    assert not tracker.add(series([100, 69, 65]))["hypo-l1"].in_episode  # 10 min below: not yet
    state = tracker.add([(at(15), 62.0)])["hypo-l1"]  # 3 readings below 70 = 15 min
    assert state.in_episode and state.episode_start == at(5) and state.extreme == 62.0
    assert not state.in_episode or not tracker.current()["hypo-l2"].in_episode
    state = tracker.add([(at(20), 72.0), (at(25), 75.0)])["hypo-l1"]  # 10 min back: still in the episode
    assert state.in_episode
    state = tracker.add([(at(30), 71.0)])["hypo-l1"]
    assert not state.in_episode and state.ended_at == at(20)


def test_a_dip_back_below_during_recovery_restarts_the_end_run() -> None:
    tracker = EpisodeTracker()
    tracker.add(series([60, 60, 60, 75, 80, 65, 75, 80]))
    assert tracker.current()["hypo-l1"].in_episode  # 65 at 25 min broke the 15-min recovery
    assert not tracker.add([(at(40), 90.0)])["hypo-l1"].in_episode


def test_levels_are_tracked_separately_and_level_2_ends_at_54() -> None:
    tracker = EpisodeTracker()
    states = tracker.add(series([50, 50, 50, 60, 60, 60]))
    assert states["hypo-l2"].ended_at == at(15) and not states["hypo-l2"].in_episode
    assert states["hypo-l1"].in_episode and states["hypo-l1"].extreme == 50
    states = tracker.add(series([190, 260, 260], start=at(30)))
    assert states["hyper-l2"].in_episode is False  # two readings > 250: 10 min
    states = tracker.add([(at(45), 255.0)])  # the third: 15 min
    assert states["hyper-l2"].in_episode and states["hyper-l2"].episode_start == at(35)
    assert states["hyper-l1"].in_episode and states["hyper-l1"].episode_start == at(30)
    assert not states["hypo-l1"].in_episode  # 190 for 15+ min ended it


def test_gaps_are_not_consecutive_and_do_not_end_an_episode() -> None:
    tracker = EpisodeTracker()
    # two low readings, a 30-minute gap, two low readings: never 15 consecutive minutes
    tracker.add([(at(0), 60.0), (at(5), 60.0), (at(35), 60.0), (at(40), 60.0)])
    assert not tracker.current()["hypo-l1"].in_episode
    assert tracker.add([(at(45), 60.0)])["hypo-l1"].in_episode
    # a long gap inside the episode does not end it; neither do two normal readings around a gap
    tracker.add([(at(120), 80.0), (at(150), 80.0)])
    assert tracker.current()["hypo-l1"].in_episode
    assert not tracker.add([(at(155), 80.0), (at(160), 80.0)])["hypo-l1"].in_episode


def test_late_readings_are_folded_in_as_if_in_order() -> None:
    values = [100, 65, 64, 63, 66, 90, 95, 92, 94, 96, 100]
    readings = series(values)
    shuffled = readings[:]
    random.Random(3).shuffle(shuffled)
    in_order, out_of_order = EpisodeTracker(), EpisodeTracker()
    for reading in readings:
        in_order.add([reading])
    for reading in shuffled:
        out_of_order.add([reading])
    assert in_order.current() == out_of_order.current()
    assert out_of_order.current()["hypo-l1"].ended_at == at(25)
    # a late normal reading in the middle of a run breaks it retroactively
    tracker = EpisodeTracker()
    assert tracker.add(series([65, 64, 63]))["hypo-l1"].in_episode
    assert not tracker.add([(at(7), 80.0)])["hypo-l1"].in_episode


def test_readings_behind_the_reorder_window_are_dropped_and_counted() -> None:
    tracker = EpisodeTracker(reorder_window=timedelta(minutes=30))
    tracker.add(series([100] * 20))  # 95 minutes
    assert len(tracker.pending) <= 7
    tracker.add([(at(10), 40.0)])
    assert tracker.dropped_late == 1 and not tracker.current()["hypo-l1"].in_episode


def test_state_survives_a_json_round_trip() -> None:
    tracker = EpisodeTracker()
    tracker.add(series([60, 60, 60, 60]))
    restored = EpisodeTracker.from_json(tracker.to_json())
    assert restored.current() == tracker.current()
    assert restored.add([(at(20), 75.0)]) == tracker.add([(at(20), 75.0)])


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.sampled_from([50.0, 60.0, 100.0, 200.0, 260.0]), min_size=1, max_size=60))
def test_episodes_equal_the_cgm_metrics_on_regular_series(values: list[float]) -> None:
    """On a gap-free 5-minute series, the alerts' episodes are exactly the ones the CGM metrics
    (``physiology.metrics.count_episodes``) count: one definition (consensus 2023)."""
    found = episodes([t for t, _ in series(values)], values)
    g = np.array(values)[:, None]
    for rule, mask in (("hypo-l1", g < 70), ("hypo-l2", g < 54), ("hyper-l1", g > 180), ("hyper-l2", g > 250)):
        assert len(found[rule]) == int(count_episodes(mask, 5.0)[0])


def test_the_issue_example_is_one_level_1_episode() -> None:
    values = [65.0, 65.0, 65.0, 75.0, 65.0, 65.0, 65.0]  # 5 min back at 75 does not end the episode
    found = episodes([t for t, _ in series(values)], values)
    assert [(start, end) for start, end, _x in found["hypo-l1"]] == [(T0, None)] and found["hypo-l2"] == []


def forecast(now: float, means: list[float], lower80: list[float] | None = None) -> GlucoseForecast:
    horizons = tuple(range(5, 5 * len(means) + 1, 5))
    low = tuple(lower80 or [v - 15 for v in means])
    return GlucoseForecast(patient_id="p", issued_at=T0, glucose_now_mg_dl=now, horizons_min=horizons,
                           mean_mg_dl=tuple(means), lower80_mg_dl=low, upper80_mg_dl=tuple(v + 15 for v in means),
                           lower95_mg_dl=tuple(v - 25 for v in means), upper95_mg_dl=tuple(v + 25 for v in means),
                           insulin_sensitivity_ratio=1.0, twin_version=None)


def test_predicted_hypo_lead_time_is_the_interpolated_crossing_of_the_mean() -> None:
    result = predict_hypo(forecast(90, [86, 82, 78, 74, 66, 60, 55, 50, 48, 47, 47, 47]))
    # 74 at 20 min, 66 at 25 min: crosses 70 at 22.5 min
    assert result.predicted and result.lead_time_min == 22.5 and result.predicted_mg_dl == 66
    assert result.lower80_mg_dl == 51 and result.severity == "medium"  # the minimum within 30 min is 60
    assert result.minimum_mg_dl == 60 and result.minimum_at_min == 30


def test_crossing_after_30_minutes_is_not_predicted_and_below_54_is_high() -> None:
    late = predict_hypo(forecast(100, [98, 96, 94, 92, 90, 88, 69, 60, 50, 45, 40, 40]))  # crosses at ~31 min
    assert not late.predicted and late.lead_time_min is None
    assert late.minimum_mg_dl == 88 and late.cleared  # within the 30-minute horizon the mean stays >= 80
    steep = predict_hypo(forecast(80, [72, 64, 56, 52, 50, 50]))
    assert steep.predicted and steep.lead_time_min == 6.2 and steep.severity == "high"


def test_the_lower_bound_alone_does_not_predict_and_hysteresis_needs_80() -> None:
    mean_ok = predict_hypo(forecast(100, [95, 90, 85, 80, 76, 74], lower80=[60] * 6))
    assert not mean_ok.predicted and not mean_ok.cleared  # min 74 < 70 + 10
    assert predict_hypo(forecast(100, [95, 90, 85, 82, 81, 80])).cleared
    already_low = predict_hypo(forecast(65, [66, 68, 70, 72, 75, 80]))
    assert already_low.predicted and already_low.lead_time_min == 0.0 and already_low.predicted_mg_dl == 65
