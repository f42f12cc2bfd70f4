"""benchmarks/bench_forecast.py --smoke: the input-aware baseline replays the evaluation's own logs, its
per-patient and per-age-group tables are consistent with each other and with the pooled twin RMSE, and the
coverage and alert-quality sections are still printed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_smoke import run_benchmark  # noqa: E402

NUMBER = r"(\d+\.\d\d)"


@pytest.mark.slow
def test_bench_forecast_smoke_input_aware_tables() -> None:
    out = run_benchmark("bench_forecast.py")
    assert "logs identical: True" in out
    pooled = float(re.search(r"RMSE vs true .*\n\s+30 min: twin\s+" + NUMBER, out).group(1))  # type: ignore[union-attr]
    section = out.split("per-patient 30-min RMSE vs true glucose")[1].split("per-patient 60-min")[0]
    rows = re.findall(r"^\s+(\w+#\d{3})\s+" + r"\s+".join([NUMBER] * 5) + r"\s+(yes|no)$", section, re.M)
    assert [r[0] for r in rows] == ["adolescent#002", "adolescent#003", "adolescent#004"]
    values = np.array([[float(v) for v in r[1:6]] for r in rows])  # twin, persistence, linear, anchored, open loop
    assert [r[6] == "yes" for r in rows] == list(values[:, 0] <= values[:, 1:].min(axis=1))
    everyone = re.search(r"all\s+\( 3\):\s+" + r"\s*/\s*".join([NUMBER] * 5), section)
    assert everyone is not None
    group = np.array([float(v) for v in everyone.groups()])
    np.testing.assert_allclose(group, np.sqrt(np.mean(values**2, axis=0)), atol=0.011)
    assert abs(group[0] - pooled) <= 0.011  # equal forecasts per patient: RMS of per-patient RMSE = pooled RMSE
    assert re.search(r"interval coverage \(virtual, held out\) 30 min: 80 % -> \d+\.\d %, 95 % -> \d+\.\d %", out)
    alerts = re.findall(r"^  (.+?)\s+:\s+(\d+) alerts .*precision (\d\.\d{3}|nan); +(\d+) events, recall", out, re.M)
    assert [a[0].split(",")[0] for a in alerts] == ["twin as shown (blend + calibrated intervals)", "twin alone (its own intervals)",
                                                    "baseline: linear extrapolation of the last 15 min crosses 70 within 30 min"]
    assert len({a[3] for a in alerts}) == 1  # one event definition for every forecaster
    assert "real CGM traces" in out
    if "section skipped" not in out:  # fetched at setup: per-person table of the two smoke traces
        assert len(re.findall(r"^  5:Subject \d ", out, re.M)) == 2 and "interval coverage (real) 30 min" in out
