"""The shipped forecast-interval calibration is exactly what the battle on ../shared gives, and it is used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medtwin.oncology.battle import battle
from medtwin.oncology.intervals import calibration_table, forecast_interval, load_calibration, relative_errors

HERE = Path(__file__).resolve().parent
SHIPPED = HERE.parents[1] / "src" / "medtwin" / "oncology" / "data" / "forecast_error_quantiles.json"


def regenerate() -> dict[str, object]:
    import sys
    sys.path.insert(0, str(HERE))
    from test_model_battle import load_laleh

    lesions = load_laleh()
    results = battle(lesions)
    chosen = lesions.select(lesions.n >= 6)
    train, t_out, _ = chosen.split(2)
    last = np.max(np.where(train.mask, train.t, -np.inf), axis=1)
    errors = {name: relative_errors(r.predicted, r.observed, r.fit.scale) for name, r in results.items()}
    return calibration_table(errors, t_out - last[:, None])


@pytest.mark.skipif(not (HERE.parents[2] / "shared" / "data" / "tumour-laleh2022").is_dir(),
                    reason="../shared/data/tumour-laleh2022 not present")
def test_shipped_calibration_is_the_battle_s() -> None:
    table = regenerate()
    # to refresh after a deliberate change: SHIPPED.write_text(json.dumps(table, indent=1) + "\n")
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    fresh = json.loads(json.dumps(table))
    assert {k: v for k, v in shipped.items() if k != "models"} == {k: v for k, v in fresh.items() if k != "models"}
    assert shipped["models"].keys() == fresh["models"].keys()
    for name, levels in fresh["models"].items():
        for level, bounds in levels.items():
            for side in ("lower", "upper"):  # 1e-4 of a lesion's size: solver round-off, not a different fit
                np.testing.assert_allclose(shipped["models"][name][level][side], bounds[side], atol=1e-4)


def test_forecast_interval_is_calibrated_only_within_range() -> None:
    table = load_calibration()
    predicted = np.array([100.0, 100.0, 100.0])
    lo, hi, ok = forecast_interval(table, "gompertz", 0.8, predicted, 50.0, np.array([42.0, 84.0, 400.0]))
    assert ok.tolist() == [True, True, False]
    assert np.isnan(lo[2]) and np.isnan(hi[2])
    assert lo[0] < 100.0 < hi[0] and hi[1] - lo[1] > hi[0] - lo[0]
    with pytest.raises(ValueError, match="no calibrated"):
        forecast_interval(table, "gompertz", 0.66, predicted, 50.0, np.array([42.0, 84.0, 90.0]))
