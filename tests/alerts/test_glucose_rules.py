"""Glucose rules: consensus episodes (begin and end after 15 min, per level, gaps, late readings), their
alerts the same however the readings fall into engine passes, and predicted hypoglycaemia from a forecast
(lead time, predicted value, hysteresis)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medtwin import vocab as m
from medtwin.alerts.engine import AlertEngine
from medtwin.alerts.glucose import EpisodeTracker, episodes, predict_hypo
from medtwin.alerts.repository import SYSTEM_ACTOR, AlertRepository, needs_person
from medtwin.alerts.rule import RuleInput
from medtwin.alerts.rules.glucose_episodes import SEVERITY, GlucoseEpisodesRule
from medtwin.physiology.metrics import count_episodes
from medtwin.store.database import Store
from medtwin.vocab import GlucoseForecast, Sample

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


# --- the alerts do not depend on how the readings are grouped into engine passes ----------------------------

VALUES = [40.0, 60.0, 100.0, 200.0, 260.0]  # beyond every threshold in turn (54, 70, 180, 250 mg/dL)
STEPS = [5, 5, 5, 5, 10, 20, 30]  # minutes; > 15 is a gap: not consecutive


@st.composite
def split_series(draw: st.DrawFn, max_size: int = 48) -> tuple[list[tuple[datetime, float]], list[int], int]:
    """Readings in time order (with gaps), cut points splitting them into passes, and a shuffle seed."""
    runs = draw(st.lists(st.tuples(st.sampled_from(VALUES), st.integers(1, 6)), min_size=1, max_size=max_size))
    values = [value for value, n in runs for _ in range(n)][:max_size]  # runs: episodes begin and end often
    steps = draw(st.lists(st.sampled_from(STEPS), min_size=len(values), max_size=len(values)))
    times = np.cumsum([0, *steps[1:]])
    readings = [(at(float(t)), v) for t, v in zip(times, values, strict=True)]
    cuts = sorted(draw(st.sets(st.integers(1, max(len(values) - 1, 1)), max_size=len(values))))
    return readings, cuts, draw(st.integers(0, 2**16))


def passes(readings: list[tuple[datetime, float]], cuts: list[int], seed: int) -> list[list[tuple[datetime, float]]]:
    """Contiguous chunks, each in a shuffled order (a pass may hold its readings in any order)."""
    chunks = [readings[a:b] for a, b in zip([0, *cuts], [*cuts, len(readings)], strict=True) if readings[a:b]]
    rng = random.Random(seed)
    return [rng.sample(chunk, len(chunk)) for chunk in chunks]


def glucose_samples(patient: str, chunk: list[tuple[datetime, float]]) -> list[Sample]:
    return [Sample(patient, m.GLUCOSE, t, v, "mg/dL", v, "mg/dL", "dev", "test", f"{patient}|{t.isoformat()}")
            for t, v in chunk]


def rule_alerts(chunks: list[list[tuple[datetime, float]]], rule: GlucoseEpisodesRule | None = None) -> tuple[
        set[tuple[str, datetime]], dict[tuple[str, datetime], datetime | None]]:
    """The rule pass after pass, holding conditions as the engine does: the alerts opened (level, began at)
    and, per alert, the data time its condition cleared (None: still holds)."""
    rule = rule or GlucoseEpisodesRule()
    state, held = rule.new_state(), dict[str, str]()
    opened: set[tuple[str, datetime]] = set()
    cleared: dict[tuple[str, datetime], datetime | None] = {}
    alert_of: dict[str, tuple[str, datetime]] = {}  # dedupe key -> (level, began at)
    for chunk in chunks:
        newest = max(t for t, _ in chunk)
        for verdict in rule.evaluate(RuleInput("p", glucose_samples("p", chunk), held=dict(held)), state):
            now_held = held.get(verdict.rule)
            if not verdict.holds or verdict.candidate is None:
                if now_held is not None:
                    cleared[alert_of[held.pop(verdict.rule)]] = verdict.cleared_at or newest
                continue
            key, began = verdict.candidate.dedupe_key, verdict.candidate.began_at
            assert began is not None
            if key != now_held:  # the engine opens it
                alert_of[key] = (verdict.rule, began)
                opened.add(alert_of[key])
                cleared[alert_of[key]] = None
            if verdict.cleared_at is not None:  # opened or held, and ended: cleared at once
                cleared[alert_of[key]] = verdict.cleared_at
                if key == now_held:
                    del held[verdict.rule]
                continue
            if now_held is not None and now_held != key:  # the engine clears the one held before
                cleared[alert_of[now_held]] = newest
            held[verdict.rule] = key
    return opened, cleared


def episode_ends(readings: list[tuple[datetime, float]]) -> dict[tuple[str, datetime], datetime | None]:
    """The one definition over the whole series: (level, start) -> end (None: still going)."""
    return {(level, start): end for level, found in episodes([t for t, _ in readings], [v for _, v in readings]).items()
            for start, end, _extreme in found}


@settings(max_examples=300, deadline=None)
@given(case=split_series())
def test_the_alerts_opened_do_not_depend_on_how_readings_are_split_into_passes(
        case: tuple[list[tuple[datetime, float]], list[int], int]) -> None:
    """However the readings are cut into passes (and ordered within one), the rule opens one alert per
    episode of the one definition (``episodes``: :func:`medtwin.vocab.episodes.step` over the whole series),
    at its start, and clears it at the episode's end: the same as one reading per pass."""
    readings, cuts, seed = case
    expected = episode_ends(readings)
    one_by_one = rule_alerts([[r] for r in readings])
    batched = rule_alerts(passes(readings, cuts, seed))
    assert one_by_one == batched == (set(expected), expected)


@settings(max_examples=200, deadline=None)
@given(case=split_series(max_size=36), order=st.randoms(use_true_random=False))
def test_no_episode_goes_unalerted_whatever_order_the_readings_arrive_in(
        case: tuple[list[tuple[datetime, float]], list[int], int], order: random.Random) -> None:
    """Late readings may move or revoke an episode, but every episode of the whole series (nothing dropped:
    a reorder window of two days) has had its alert opened, and the conditions still held at the end are
    exactly the episodes still going on."""
    readings, cuts, seed = case
    arrival = order.sample(readings, len(readings))
    opened, cleared = rule_alerts(passes(arrival, cuts, seed), GlucoseEpisodesRule(reorder_window=timedelta(days=2)))
    expected = episode_ends(readings)
    assert set(expected) <= opened
    assert {key for key, end in cleared.items() if end is None} == {key for key, end in expected.items() if end is None}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=split_series(max_size=30))
def test_through_the_engine_the_alerts_are_the_same_however_the_passes_fall(
        sqlite_store: Store, case: tuple[list[tuple[datetime, float]], list[int], int]) -> None:
    """The engine and the store: the same alerts (level, begin time, cleared time) for any split into passes
    as for one reading per pass; a serious one whose episode ended is open, marked cleared at the episode's
    end, a low or medium one resolved by the system."""
    readings, cuts, seed = case
    expected = episode_ends(readings)
    engine = AlertEngine(sqlite_store, clock=lambda: T0 + timedelta(days=1))
    found: list[dict[tuple[str, datetime], Any]] = []
    for chunks in ([[r] for r in readings], passes(readings, cuts, seed)):
        patient = uuid.uuid4().hex
        for chunk in chunks:
            engine.on_samples(glucose_samples(patient, chunk))
            assert engine.flush()
        with sqlite_store.connect() as connection:
            listed = AlertRepository(connection, sqlite_store.codec, lambda: T0).list(
                patient_id=patient, statuses=("open", "acknowledged", "resolved"), limit=500)[1]
        assert len(listed) == len({(a.rule, a.opened_at) for a in listed})  # one alert per episode
        found.append({(a.rule, a.opened_at): a for a in listed})
    engine.stop()
    for alerts in found:
        assert set(alerts) == set(expected)
        for (level, start), end in expected.items():
            alert = alerts[(level, start)]
            assert alert.severity == SEVERITY[level]
            if end is None:
                assert (alert.status, alert.condition_cleared_at) == ("open", None)
            elif needs_person(alert.severity):
                assert (alert.status, alert.condition_cleared_at, alert.resolved_by) == ("open", end, None)
            else:
                assert (alert.status, alert.resolved_by) == ("resolved", SYSTEM_ACTOR)


def test_two_episodes_of_one_level_in_one_pass_are_two_alerts_each_cleared_at_its_end() -> None:
    values = [60.0] * 4 + [90.0] * 4 + [60.0] * 3 + [90.0] * 3 + [60.0] * 3
    opened, cleared = rule_alerts([series(values)])
    assert sorted(s for level, s in opened if level == "hypo-l1") == [at(0), at(40), at(70)]
    assert [cleared[("hypo-l1", at(s))] for s in (0, 40, 70)] == [at(20), at(55), None]


def test_an_episode_already_reported_is_not_reported_again_when_a_late_reading_refolds_it() -> None:
    rule, state = GlucoseEpisodesRule(), GlucoseEpisodesRule().new_state()
    first = rule.evaluate(RuleInput("p", glucose_samples("p", series([50.0] * 3 + [100.0] * 3))), state)
    assert [(v.rule, v.holds, v.cleared_at, v.occurrences) for v in first] == [
        ("hypo-l2", True, at(15), 3), ("hypo-l1", True, at(15), 3)]
    late = rule.evaluate(RuleInput("p", glucose_samples("p", [(at(12), 100.0), (at(30), 100.0)])), state)
    assert late == []  # both episodes lie in the reorder window, ended and cleared already


def test_a_late_reading_that_reveals_an_earlier_episode_leaves_the_held_one_alone(sqlite_store: Store) -> None:
    """The earlier episode's alert opens and clears at once (hyper-l1 is low: resolved by the system); the
    later episode's alert, held, is neither cleared nor duplicated."""
    engine = AlertEngine(sqlite_store, clock=lambda: T0 + timedelta(days=1))
    engine.on_samples(glucose_samples("p", [(at(t), v) for t, v in [
        (0, 200.0), (5, 200.0), (15, 100.0), (20, 100.0), (25, 100.0), (30, 200.0), (35, 200.0), (40, 200.0)]]))
    assert engine.flush()
    assert engine.held("p") == {"hyper-l1": f"p:hyper-l1:{at(30).isoformat()}"}
    engine.on_samples(glucose_samples("p", [(at(10), 200.0)]))  # 0, 5, 10: 15 min above 180 after all
    engine.stop()
    with sqlite_store.connect() as connection:
        listed = AlertRepository(connection, sqlite_store.codec, lambda: T0).list(
            patient_id="p", statuses=("open", "acknowledged", "resolved"))[1]
    assert sorted((a.opened_at, a.status, a.resolved_by, a.occurrences) for a in listed) == [
        (at(0), "resolved", SYSTEM_ACTOR, 3), (at(30), "open", None, 3)]
    assert engine.held("p") == {"hyper-l1": f"p:hyper-l1:{at(30).isoformat()}"}


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
