"""The live twin's forecast states its basis: ``twin_share`` is the weight the patient's ForecastSkill used for
the mean shown (0 = the last reading held until the twin has shown skill for this patient), and the sentence
the tile and the alerts quote says so in words."""

from __future__ import annotations

import numpy as np
import pytest
from tests.twin.test_live_anchor import READINGS, T0, stream

from medtwin.physiology.online_skill import ForecastSkill, SkillSettings
from medtwin.store.database import Store
from medtwin.twin.live import LiveGlucoseService

HORIZONS = (15, 30)


def _service(store: Store) -> LiveGlucoseService:
    return LiveGlucoseService(store, clock=lambda: T0, rng=np.random.default_rng(3), horizons_min=HORIZONS,
                              start_worker=False)


def _skilled() -> ForecastSkill:
    """A record in which the twin clearly beat persistence: a random walk read every 5 min, the 'twin' the
    truth plus 1 mg/dL of noise at each horizon (as tests/physiology/test_forecast_skill.py)."""
    rng = np.random.default_rng(5)
    skill = ForecastSkill(HORIZONS, SkillSettings(min_scored=12))
    steps = np.asarray(HORIZONS) // 5
    truth = 120 + np.cumsum(rng.normal(0, 2.0, 1500))
    for k, value in enumerate(truth[: -int(steps[-1])]):
        skill.observe(5.0 * k, float(value))
        mean = truth[k + steps] + rng.normal(0, 1.0, len(HORIZONS))
        skill.show(5.0 * k, float(value), mean, mean - 2, mean + 2, mean - 3, mean + 3)
    assert np.all(skill.weight() > 0.5)
    return skill


def test_a_new_patients_forecast_is_the_last_reading_held_and_says_so(sqlite_store: Store) -> None:
    forecasts = stream(_service(sqlite_store), READINGS[:20])
    assert len(forecasts) == 20
    for f in forecasts:
        assert f.twin_share == (0.0, 0.0)  # no scored forecast yet: no evidence the twin beats persistence
        assert f.mean_mg_dl == (f.last_reading_mg_dl,) * len(HORIZONS)  # the shown mean is the reading held
        assert f.summary.endswith(
            "in 30 min (last reading held: the twin has not yet shown skill for this patient)")
    assert forecasts[-1].to_json()["twin_share"] == [0.0, 0.0]  # served as-is by the API and the event stream


def test_the_share_is_the_weight_that_built_the_mean(sqlite_store: Store) -> None:
    service = _service(sqlite_store)
    stream(service, READINGS[:3])
    live = service._live["p"]  # noqa: SLF001 - the patient's record, replaced by one with evidence
    live.skill = _skilled()
    last = stream(service, READINGS[3:5], start=3)[-1]
    used = live.skill.weight()  # unchanged since show(): no reading has been observed after it
    assert last.twin_share == pytest.approx(tuple(used), abs=1e-4) and min(last.twin_share or ()) > 0.5
    assert last.mean_mg_dl != (last.last_reading_mg_dl,) * len(HORIZONS)  # the twin moved the mean
    pct = round(100 * used[HORIZONS.index(30)])
    assert last.summary.endswith(f"in 30 min (twin {pct} %, last reading held {100 - pct} %)")
    stored = service.latest_forecast("p")
    assert stored is not None and stored.twin_share == last.twin_share  # saved with the forecast
