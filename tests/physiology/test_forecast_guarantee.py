"""The per-person promise of issue 17 on a lean subset of held-out virtual patients: the forecast shown
(``physiology/online_skill.py``: persistence until the twin has shown skill on the patient's own past errors)
is not worse than persistence for any of them at 30 and 60 min, against the true glucose and the future
reading, up to :data:`ALLOWANCE`; and it is not persistence in disguise: where the twin is far better, what
is shown is too. The benchmark (``benchmarks/bench_forecast.py``) holds all 25 held-out patients and the
real traces to it.

Why an allowance: a departure from the last reading is decided before its reading arrives, so no online
rule can promise a finite stretch of data is never worse than persistence; this one departs only on
evidence, by as much as the evidence says, so a twin about as good as persistence (adult#008 here) gets at
most small departures whose net over one scored day is within 0.05 % (the previous rule showed adult#008 a
forecast 1.5 % worse than persistence in the benchmark)."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.physiology.evaluation import evaluate
from medtwin.physiology.uva_padova import virtual_patients

#: adult#008 and adult#009: the twin about as good as persistence (the previous rule showed adult#008 a forecast
#: 1.5 % worse than persistence); child#010: the twin far better.
PATIENTS = ("adult#008", "adult#009", "child#010")
ALLOWANCE = 1.0005  # 1.000 at the three decimals the benchmark's worst-ratio figures were first given in


@pytest.mark.slow
def test_no_held_out_person_is_shown_a_forecast_worse_than_persistence() -> None:
    scores = evaluate(virtual_patients(list(PATIENTS)), 2, np.random.default_rng(2024))
    ratios = {(p.name, against, h): p.rmse[against]["shown"][h] / p.rmse[against]["persistence"][h]
              for p in scores.people for against in ("true", "cgm") for h in (30, 60)}
    assert all(p.n_scored[60] > 250 for p in scores.people)
    worse = {key: round(r, 5) for key, r in ratios.items() if r > ALLOWANCE}
    assert not worse, worse
    assert ratios[("child#010", "true", 30)] < 0.8 and ratios[("child#010", "true", 60)] < 0.9
