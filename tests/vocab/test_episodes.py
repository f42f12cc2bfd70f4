"""THE episode definition (international consensus 2023), its two evaluations (the streaming state machine
and the closed form over arrays) and the issue's example in every place that counts episodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.alerts.glucose import EpisodeTracker, episodes
from medtwin.physiology.metrics import glucose_metrics
from medtwin.twin.cgm_report import Readings, compute_cgm_report
from medtwin.vocab.episodes import EpisodeState, count_episodes, find_episodes, step
from medtwin.vocab.glucose import GLUCOSE_LEVEL_BY_NAME, GlucoseLevel

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
EXAMPLE = [65.0, 65.0, 65.0, 75.0, 65.0, 65.0, 65.0]
L1 = GLUCOSE_LEVEL_BY_NAME["hypo-l1"]


def times(n: int, step_min: float = 5.0) -> list[datetime]:
    return [T0 + timedelta(minutes=step_min * i) for i in range(n)]


def folded(level: GlucoseLevel, values: list[float | None], period_min: float = 5.0) -> int:
    """Onsets when folding :func:`step` over a regular series; None is a missing reading (a gap)."""
    state, onsets = EpisodeState(), 0
    for t, v in zip(times(len(values), period_min), values, strict=True):
        if v is None:
            continue
        before = state.in_episode
        state = step(level, state, t, v, period=timedelta(minutes=period_min),
                     max_gap=timedelta(minutes=period_min * 1.5))
        onsets += state.in_episode and not before
    return onsets


def test_the_example_is_one_episode_by_the_definition() -> None:
    # 65, 65, 65: 3 readings x 5 min = 15 consecutive minutes below 70 -> an episode begins at the first;
    # 75: 5 minutes back within, not the 15 that end it; 65, 65, 65: the same episode goes on.
    (episode,) = find_episodes(L1, times(7), EXAMPLE)
    assert episode.start == T0 and episode.end is None and episode.extreme_mg_dl == 65.0
    assert count_episodes(np.array(EXAMPLE) < 70, 5.0)[0] == 1
    assert find_episodes(GLUCOSE_LEVEL_BY_NAME["hypo-l2"], times(7), EXAMPLE) == []


def test_the_example_counts_once_in_the_alerts_the_metrics_and_the_cgm_report() -> None:
    assert len(episodes(times(7), EXAMPLE)["hypo-l1"]) == 1  # alerts.glucose.episodes
    tracker = EpisodeTracker()
    for t, v in zip(times(7), EXAMPLE, strict=True):  # streaming, one reading at a time
        tracker.add([(t, v)])
    assert tracker.current()["hypo-l1"].in_episode and tracker.current()["hypo-l1"].episode_start == T0
    (metrics,) = glucose_metrics(np.array(EXAMPLE), 5.0)  # physiology.metrics.count_episodes
    assert metrics.hypo_episodes_below_70 == 1 and metrics.hypo_episodes_below_54 == 0
    t = np.array([x.timestamp() for x in times(7)])
    report = compute_cgm_report("p", Readings(t, np.array(EXAMPLE)), end=times(7)[-1], days=1)
    assert report.metrics is not None and report.metrics.hypo_episodes_below_70 == 1


def test_fifteen_minutes_back_within_ends_the_episode_and_a_new_one_counts_again() -> None:
    values = [65.0] * 3 + [75.0] * 3 + [65.0] * 3
    assert count_episodes(np.array(values) < 70, 5.0)[0] == 2
    first, second = find_episodes(L1, times(9), values)
    assert first.end == times(9)[3] and second.start == times(9)[6]


def test_a_missing_reading_breaks_a_run_but_does_not_end_an_episode() -> None:
    g = np.array([65, 65, 65, 80, 0, 80, 80, 65, 65, 65], dtype=float)
    present = g > 0
    # 80, (missing), 80, 80: no 15 consecutive minutes back within: still the first episode
    assert count_episodes(g < 70, 5.0, present=present)[0] == 1
    # 65, 65, (missing), 65: no 15 consecutive minutes beyond: no episode
    h = np.array([65, 65, 0, 65, 100], dtype=float)
    assert count_episodes(h < 70, 5.0, present=h > 0)[0] == 0


series = st.lists(st.one_of(st.none(), st.sampled_from([50.0, 60.0, 69.0, 70.0, 90.0, 200.0])),
                  min_size=0, max_size=80)


@settings(max_examples=200, deadline=None)
@given(values=series, period=st.sampled_from([1.0, 5.0, 15.0]))
def test_the_closed_form_equals_the_state_machine(values: list[float | None], period: float) -> None:
    g = np.array([np.nan if v is None else v for v in values], dtype=float)
    present = ~np.isnan(g)
    with np.errstate(invalid="ignore"):
        beyond = g < L1.threshold_mg_dl
    assert int(count_episodes(beyond, period, present=present)[0]) == folded(L1, values, period)


@settings(max_examples=100, deadline=None)
@given(columns=st.lists(st.lists(st.booleans(), min_size=30, max_size=30), min_size=1, max_size=6))
def test_patients_in_one_array_count_as_each_alone(columns: list[list[bool]]) -> None:
    together = count_episodes(np.array(columns).T, 5.0)
    assert together.tolist() == [int(count_episodes(np.array(c), 5.0)[0]) for c in columns]


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.sampled_from([55.0, 65.0, 75.0, 100.0]), min_size=1, max_size=60),
       cuts=st.lists(st.integers(0, 60), max_size=5))
def test_splitting_the_stream_into_batches_changes_nothing(values: list[float], cuts: list[int]) -> None:
    readings = list(zip(times(len(values)), values, strict=True))
    whole, split = EpisodeTracker(), EpisodeTracker()
    whole.add(readings)
    bounds = sorted({0, len(values), *[c for c in cuts if c <= len(values)]})
    for a, b in zip(bounds, bounds[1:], strict=False):
        split.add(readings[a:b])
    assert split.current() == whole.current()
    onsets = sum(1 for e in find_episodes(L1, *zip(*readings, strict=True)))  # type: ignore[arg-type]
    assert onsets == int(count_episodes(np.array(values) < 70, 5.0)[0])


@settings(max_examples=100, deadline=None)
@given(runs=st.lists(st.tuples(st.integers(1, 2), st.integers(1, 6)), max_size=30),
       lead=st.integers(0, 6))
def test_a_run_shorter_than_fifteen_minutes_never_counts(runs: list[tuple[int, int]], lead: int) -> None:
    """Beyond-runs of 5 or 10 minutes, separated by any time within range: never an episode."""
    mask = [False] * lead + [b for beyond, within in runs for b in [True] * beyond + [False] * within]
    assert int(count_episodes(np.array(mask, dtype=bool), 5.0)[0]) == 0
    values = [65.0 if b else 90.0 for b in mask]
    assert find_episodes(L1, times(len(values)), values) == []


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.booleans(), max_size=60), pad=st.integers(3, 10))
def test_leading_and_trailing_time_within_range_changes_nothing(values: list[bool], pad: int) -> None:
    mask = np.array(values, dtype=bool)
    padded = np.concatenate([np.zeros(pad, dtype=bool), mask, np.zeros(pad, dtype=bool)])
    assert count_episodes(padded, 5.0)[0] == count_episodes(mask, 5.0)[0]
