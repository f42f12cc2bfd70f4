"""Predicted hypoglycaemia names the measured CGM value and the forecast apart (#15 item 1): the one sentence
of :meth:`GlucoseForecast.sentence`, the rule's message and details, the measured trend's one definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.alerts.glucose import predict_hypo
from medtwin.alerts.rule import RuleInput
from medtwin.alerts.rules.predicted_hypo import NAME, PredictedHypoRule
from medtwin.twin.overview import glucose_trend
from medtwin.vocab import GlucoseForecast
from medtwin.vocab.forecast import SENSOR_OFFSET_MATERIAL_MG_DL, glucose_trend_mg_dl_per_min

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
HORIZONS = (5, 10, 15, 20, 25, 30)


def make(means: list[float], *, reading: float | None, estimate: float, expected: float | None = None,
         offset: float | None = None, trend: float | None = None) -> GlucoseForecast:
    return GlucoseForecast(
        patient_id="p", issued_at=T0, glucose_now_mg_dl=estimate, horizons_min=HORIZONS[:len(means)],
        mean_mg_dl=tuple(means), lower80_mg_dl=tuple(m - 9 for m in means), upper80_mg_dl=tuple(m + 9 for m in means),
        lower95_mg_dl=tuple(m - 14 for m in means), upper95_mg_dl=tuple(m + 14 for m in means),
        insulin_sensitivity_ratio=1.0, last_reading_mg_dl=reading, trend_mg_dl_per_min=trend,
        cgm_now_mg_dl=expected, sensor_offset_mg_dl=offset)


def test_the_sentence_of_the_issue() -> None:
    f = make([84, 80, 76, 72, 68, 62], reading=87, estimate=85, expected=86.4, offset=1.4, trend=-2.04)
    assert f.sentence(30) == "CGM 87 mg/dL, falling 2 mg/dL/min; forecast 62 (95 % 48-76) in 30 min"
    assert f.summary == f.sentence(30) and f.to_json()["summary"] == f.summary
    assert make([90], reading=91, estimate=90, trend=0.04).sentence(5).startswith("CGM 91 mg/dL, steady;")
    assert make([90], reading=91, estimate=90, trend=0.8).sentence(5).startswith("CGM 91 mg/dL, steady (+0.8 mg/dL/min);")
    assert make([90], reading=91, estimate=90, trend=1.26).sentence(5).startswith("CGM 91 mg/dL, rising 1.3 mg/dL/min;")
    assert make([90], reading=91, estimate=90).sentence(5).startswith("CGM 91 mg/dL; forecast 90")


def test_a_material_sensor_offset_is_said_with_both_values() -> None:
    high = make([80, 74], reading=87, estimate=66, expected=85.0, offset=19.0)
    assert high.material_offset
    assert high.sentence(10).endswith("; sensor reads ~19 mg/dL above the twin's estimate (glucose 66 mg/dL)")
    low = make([80, 74], reading=60, estimate=75, expected=61.0, offset=-14.0)
    assert "sensor reads ~14 mg/dL below the twin's estimate (glucose 75 mg/dL)" in low.sentence(10)
    small = make([80, 74], reading=87, estimate=80, expected=86.0, offset=SENSOR_OFFSET_MATERIAL_MG_DL - 0.5)
    assert not small.material_offset and "estimate" not in small.sentence(10)


@given(reading=st.floats(40, 400), estimate=st.floats(40, 400), offset=st.floats(-40, 40),
       mean=st.floats(40, 400), trend=st.one_of(st.none(), st.floats(-5, 5)))
def test_the_sentence_quotes_the_reading_and_the_estimate_only_as_an_estimate(
        reading: float, estimate: float, offset: float, mean: float, trend: float | None) -> None:
    f = make([mean], reading=reading, estimate=estimate, expected=reading, offset=offset, trend=trend)
    text = f.sentence(5)
    assert text.startswith(f"CGM {reading:.0f} mg/dL") and f"forecast {mean:.0f} (95 %" in text
    assert ("twin's estimate (glucose " in text) == (abs(offset) >= SENSOR_OFFSET_MATERIAL_MG_DL)


def test_the_rule_names_measured_and_forecast_and_keeps_the_estimate_out_of_the_value() -> None:
    """The situation of the issue: CGM 87, the filter's estimate 66 (sensor reads ~20 high)."""
    f = make([82, 77, 73, 69, 65, 62], reading=87, estimate=66, expected=86.0, offset=20.0, trend=-2.0)
    (verdict,) = PredictedHypoRule().evaluate(RuleInput("p", forecasts=(f,)), {})
    alert = verdict.candidate
    assert verdict.holds and alert is not None and alert.rule == NAME
    assert alert.message == ("Hypoglycaemia predicted in 19 min: CGM 87 mg/dL, falling 2 mg/dL/min; forecast 69 "
                             "(95 % 55-83) in 20 min; sensor reads ~20 mg/dL above the twin's estimate (glucose "
                             "66 mg/dL)")
    assert "Glucose 66" not in alert.message and alert.score == pytest.approx(18.75, abs=0.06)  # 15 + 5 * 3/4
    assert alert.details["cgm_mg_dl"] == 87 and alert.details["trend_mg_dl_per_min"] == -2.0
    assert alert.details["forecast"] == {"horizon_min": 20, "mean_mg_dl": 69, "lower95_mg_dl": 55,
                                         "upper95_mg_dl": 83}
    assert alert.details["anchor"] == "last CGM reading"


def test_the_estimate_below_70_alone_is_not_hypoglycaemia_now() -> None:
    """Before #15 item 1 the path started at the estimate: 66 < 70 read as 'already below' (lead 0)."""
    f = make([86, 85, 85, 84, 84, 84], reading=87, estimate=66, expected=86.5, offset=20.5)
    assert not predict_hypo(f).predicted  # the expected CGM path stays above 80
    old = f.model_copy(update={"last_reading_mg_dl": None, "cgm_now_mg_dl": None})
    assert predict_hypo(old).lead_time_min == 0  # the defect, on a forecast saved without the reading


def test_a_reading_below_70_says_so_with_the_reading() -> None:
    f = make([64, 62, 61, 60, 60, 61], reading=66, estimate=64, expected=65.5, offset=1.5, trend=-0.6)
    (verdict,) = PredictedHypoRule().evaluate(RuleInput("p", forecasts=(f,)), {})
    assert verdict.candidate is not None and verdict.candidate.score == 0
    assert verdict.candidate.message == ("CGM below 70 mg/dL: CGM 66 mg/dL, steady (-0.6 mg/dL/min); forecast 60 "
                                         "(95 % 46-74) in 20 min")  # steady: the list's arrow band


def test_the_expected_reading_below_70_with_a_reading_above_says_predicted_now() -> None:
    f = make([66, 65, 65, 64, 64, 64], reading=71, estimate=66, expected=67.0, offset=1.0)
    (verdict,) = PredictedHypoRule().evaluate(RuleInput("p", forecasts=(f,)), {})
    assert verdict.candidate is not None and verdict.candidate.message.startswith(
        "Hypoglycaemia predicted now: CGM 71 mg/dL; forecast 64 (95 % 50-78) in 20 min")


@given(slope=st.floats(-4, 4), intercept=st.floats(40, 300), n=st.integers(2, 12),
       noise_seed=st.integers(0, 10))
def test_the_measured_trend_is_the_slope_of_the_last_15_minutes(slope: float, intercept: float, n: int,
                                                                 noise_seed: int) -> None:
    minutes = [5.0 * k for k in range(n)]
    older = np.random.default_rng(noise_seed).normal(0, 30, n)  # readings before the window do not count
    values = [intercept + slope * t + (older[k] if t < minutes[-1] - 15 else 0.0) for k, t in enumerate(minutes)]
    found = glucose_trend_mg_dl_per_min(minutes[::-1], values[::-1])  # any order
    assert found == pytest.approx(slope, abs=1e-9)
    newest_first = [(T0 + timedelta(minutes=t), v) for t, v in zip(minutes, values, strict=True)][::-1]
    assert glucose_trend(newest_first) == pytest.approx(found)  # the patient list quotes the same trend


def test_no_trend_from_one_reading_or_a_short_span() -> None:
    assert glucose_trend_mg_dl_per_min([0.0], [100.0]) is None
    assert glucose_trend_mg_dl_per_min([0.0, 3.0], [100.0, 106.0]) is None
    assert glucose_trend_mg_dl_per_min([0.0, 20.0], [100.0, 120.0]) is None  # the older one is outside 15 min
    with pytest.raises(ValueError, match="values"):
        glucose_trend_mg_dl_per_min([0.0, 5.0], [100.0])
