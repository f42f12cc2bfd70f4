"""Batched replications (hospital/replicate.py ``run_block``, one Dask task of a grid: the scenarios of a
replication share its base patients) give the metrics of running each (scenario, replication) alone with the
same seeds; and a scenario that changes what the base patients depend on (case mix, stays) does not reuse
another's."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.hospital.model import demo_model
from medtwin.hospital.replicate import run_block, run_one
from medtwin.hospital.sampling import BaseDraws, Patients, arrivals
from medtwin.hospital.whatif import BASELINE, Scenario, moved_beds

HORIZON, WARMUP = 24 * 10.0, 24.0


def scenarios() -> list[Scenario]:
    model = demo_model()
    return [BASELINE, Scenario(name="surge", arrival_multiplier=1.4),
            Scenario(name="quiet", arrival_multiplier=0.7), moved_beds(model, "icu", "ward", 2, name="icu-2"),
            Scenario(name="sicker", esi_mix=[0.05, 0.2, 0.4, 0.25, 0.1]),
            Scenario(name="longer", los_multiplier=1.2)]


def same_metrics(a: dict[str, float], b: dict[str, float]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert value == b[key] or (math.isnan(value) and math.isnan(b[key])), key


def test_a_block_gives_the_one_by_one_metrics() -> None:
    model = demo_model()
    grid = scenarios()
    block = run_block(model, grid, 11, [3, 0], HORIZON, WARMUP)
    assert [name for name, _, _ in block] == [s.name for s in grid]
    for scenario, (_, reps, rows) in zip(grid, block, strict=True):
        assert reps == [3, 0]
        for r, row in zip(reps, rows, strict=True):
            same_metrics(row, run_one(model, scenario, 11, r, HORIZON, WARMUP))
    by_name = {name: rows for name, _, rows in block}
    # a real comparison: the scenarios differ from the baseline where they should
    assert by_name["surge"][0]["throughput_per_day.ed_triage"] > by_name["baseline"][0]["throughput_per_day.ed_triage"]
    assert by_name["sicker"][0]["ed_wait_h"] != by_name["baseline"][0]["ed_wait_h"]


def test_shared_draws_are_reused_only_when_nothing_they_depend_on_changed() -> None:
    model = demo_model()
    shared: BaseDraws = {}
    first = arrivals(model, 5, 2, 48.0, shared=shared)
    assert len(shared) == len(model.arrivals)
    again = arrivals(moved_beds(model, "icu", "ward", 2).apply(model), 5, 2, 48.0, shared=shared)
    assert len(shared) == len(model.arrivals)  # beds moved: the same base patients, reused
    np.testing.assert_array_equal(first.service_h, again.service_h)
    longer = arrivals(model, 5, 2, 48.0, los_multiplier=1.5, shared=shared)
    assert len(shared) == 2 * len(model.arrivals)  # stays longer: drawn anew
    alone = arrivals(model, 5, 2, 48.0, los_multiplier=1.5)
    np.testing.assert_array_equal(longer.service_h, alone.service_h)
    assert not np.array_equal(longer.service_h, first.service_h)
    other_rep = arrivals(model, 5, 3, 48.0, shared=shared)
    assert len(shared) == 3 * len(model.arrivals)
    assert not np.array_equal(other_rep.t0_h[:5], first.t0_h[:5])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=40), st.lists(st.integers(0, 30), max_size=40))
def test_two_sorted_parts_merge_as_a_stable_sort(a: list[int], b: list[int]) -> None:
    """The base + surge merge (Patients.concat) orders patients as a stable sort of both parts (ties: the
    base patient first), with their attributes carried along."""
    parts = []
    for i, times in enumerate((sorted(a), sorted(b))):
        t = np.asarray(times, dtype=float) / 4  # many ties
        n = t.size
        parts.append(Patients(t, np.full(n, i + 1, dtype=np.int64), np.arange(n, dtype=np.int64)[:, None] + 100 * i,
                              np.zeros((n, 1))))
    merged = Patients.concat(parts)
    t0 = np.concatenate([p.t0_h for p in parts])
    order = np.argsort(t0, kind="stable")
    np.testing.assert_array_equal(merged.t0_h, t0[order])
    np.testing.assert_array_equal(merged.esi, np.concatenate([p.esi for p in parts])[order])
    np.testing.assert_array_equal(merged.path, np.concatenate([p.path for p in parts])[order])


def test_trimmed_before_the_merge_is_trimmed_after() -> None:
    model = demo_model()
    for multiplier in (1.0, 1.5):
        after = arrivals(model, 4, 1, 72.0, 0, multiplier).trimmed()
        before = arrivals(model, 4, 1, 72.0, 0, multiplier, trim=True)
        assert before.path.shape == after.path.shape and after.path.shape[1] < 12
        for name in ("t0_h", "esi", "path", "service_h"):
            np.testing.assert_array_equal(getattr(before, name), getattr(after, name), err_msg=name)
