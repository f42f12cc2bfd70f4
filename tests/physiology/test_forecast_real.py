"""The live twin on real CGM traces without meal or insulin records (iglu-python's example data, fetched at
setup; tests/physiology/realcgm.py): what is shown (persistence until the twin has shown skill on the
person's own errors, physiology/online_skill.py) is not worse than persistence for anyone at 30 and 60 min,
and its intervals cover within 5 points of nominal. Three people, three days each (the benchmark runs all
24 for a week)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.physiology.realcgm import traces_or_skip

from medtwin.physiology.assimilation import FilterSettings
from medtwin.physiology.evaluation import evaluate_traces
from medtwin.physiology.streaming import Series


@pytest.mark.slow
def test_real_traces_shown_forecast_is_not_worse_than_persistence_and_covers() -> None:
    traces = traces_or_skip()
    chosen = [s for s in traces if s.name in {"5:Subject 2", "hall:1636-69-090", "hall:2133-024"}]
    assert len(chosen) == 3
    cut = [Series(s.name, s.times_min[s.times_min < 3 * 1440], s.cgm_mg_dl[s.times_min < 3 * 1440]) for s in chosen]
    scores = evaluate_traces(cut, FilterSettings.missing_records(), np.random.default_rng(5))
    for person in scores.people:
        for h in (30, 60):
            assert person.n_scored[h] > 400
            ratio = person.rmse["cgm"]["shown"][h] / person.rmse["cgm"]["persistence"][h]
            assert ratio <= 1.0, (person.name, h, ratio)
    for h in (30, 60):
        assert abs(scores.coverage80[h] - 0.80) <= 0.05 and abs(scores.coverage95[h] - 0.95) <= 0.05, h
    assert scores.rmse["linear"][60] > scores.rmse["persistence"][60]  # the real traces are not a straight line
