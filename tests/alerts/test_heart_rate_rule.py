"""Heart-rate deviation: robust baseline from 5-minute medians, thresholds, hysteresis, persistence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from medtwin.alerts.heart_rate import HrBaseline, HrRule, deviation, robust_baseline

T0 = datetime(2025, 3, 1, tzinfo=UTC)
RULE = HrRule(min_buckets=24)  # 2 h armed, for the test


def feed(baseline: HrBaseline, start: datetime, minutes: int, values: np.ndarray | float) -> None:
    vals = np.broadcast_to(np.asarray(values, dtype=float), (minutes,))
    for i in range(minutes):
        baseline.add(start + timedelta(minutes=i), float(vals[i]))


def test_robust_baseline_is_median_and_mad() -> None:
    assert robust_baseline([60, 62, 64, 66, 200]) == (64, 2)  # one wild value changes neither


def test_thresholds_and_hysteresis() -> None:
    rule = HrRule()
    # baseline 60, MAD 2 -> scale 2.9652; +20 /min is z 6.74: high
    high = deviation(80.0, 5, 60.0, 2.0, 200, T0, rule)
    assert high.alert and high.severity == "high" and round(high.z, 2) == 6.74
    # MAD 5 -> scale 7.413; +30 is z 4.05: medium; +29 is z 3.91: no alert, but not cleared either
    assert deviation(90.0, 5, 60.0, 5.0, 200, T0, rule).severity == "medium"
    between = deviation(89.0, 5, 60.0, 5.0, 200, T0, rule)
    assert not between.alert and not between.clear
    assert deviation(82.0, 5, 60.0, 5.0, 200, T0, rule).clear  # z 2.97 < 3
    # a very steady baseline: the MAD floor (2 /min) and the 20 /min minimum keep noise quiet
    quiet = deviation(75.0, 5, 60.0, 0.0, 200, T0, rule)
    assert round(quiet.z, 1) == 7.5 and not quiet.alert  # only 15 /min away
    assert deviation(40.0, 5, 60.0, 2.0, 200, T0, rule).alert  # low as well as high


def test_baseline_is_armed_after_min_buckets_and_flags_a_sustained_rise() -> None:
    rng = np.random.default_rng(1)
    baseline = HrBaseline(rule=RULE)
    feed(baseline, T0, 60, 62 + rng.normal(0, 2, 60))
    assert baseline.evaluate() is None  # 11 closed buckets < 24
    feed(baseline, T0 + timedelta(minutes=60), 70, 62 + rng.normal(0, 2, 70))
    quiet = baseline.evaluate()
    assert quiet is not None and not quiet.alert and quiet.n_buckets == 25
    assert abs(quiet.baseline_median - 62) < 1.5
    feed(baseline, T0 + timedelta(minutes=130), 2, 130.0)  # a two-reading artefact: 2 of 5 recent readings
    assert not baseline.evaluate().alert  # type: ignore[union-attr]
    feed(baseline, T0 + timedelta(minutes=132), 5, 110.0)
    rise = baseline.evaluate()
    assert rise is not None and rise.alert and rise.current == 110.0 and rise.severity == "high"


def test_history_is_trimmed_to_72_hours_and_late_buckets_are_ignored() -> None:
    baseline = HrBaseline(rule=HrRule(min_buckets=1))
    for i in range(0, 80 * 60, 5):  # 80 h, one reading per 5 min
        baseline.add(T0 + timedelta(minutes=i), 60.0)
    assert len(baseline.buckets) == 864
    baseline.add(T0, 200.0)
    assert baseline.ignored_late == 1 and baseline.baseline() == (60.0, 0.0)


def test_state_round_trips_through_json() -> None:
    baseline = HrBaseline(rule=RULE)
    feed(baseline, T0, 200, 70.0)
    restored = HrBaseline.from_json(baseline.to_json(), RULE)
    assert restored.buckets == baseline.buckets and restored.recent == baseline.recent
    assert restored.evaluate() == baseline.evaluate()
    changed_size = HrBaseline.from_json(baseline.to_json(), HrRule(bucket=timedelta(minutes=10)))
    assert changed_size.buckets == []
