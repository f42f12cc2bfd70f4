"""The forecast's basis in words (GlucoseForecast.twin_share -> sentence): the last reading held is never passed
off as the twin's forecast; a forecast saved before the share was kept reads as before."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from medtwin.vocab import GlucoseForecast

HELD = " (last reading held: the twin has not yet shown skill for this patient)"


def make(share: tuple[float, ...] | None) -> GlucoseForecast:
    return GlucoseForecast(patient_id="p", issued_at=datetime(2026, 1, 1, tzinfo=UTC), glucose_now_mg_dl=90.0,
                           horizons_min=(15, 30), mean_mg_dl=(87.0, 87.0), lower80_mg_dl=(80.0, 75.0),
                           upper80_mg_dl=(94.0, 99.0), lower95_mg_dl=(76.0, 70.0), upper95_mg_dl=(98.0, 104.0),
                           insulin_sensitivity_ratio=1.0, last_reading_mg_dl=87.0, trend_mg_dl_per_min=0.0,
                           twin_share=share)


def test_the_sentence_names_the_basis_of_the_forecast() -> None:
    base = "CGM 87 mg/dL, steady; forecast 87 (95 % 70-104) in 30 min"
    assert make((0.0, 0.0)).summary == base + HELD
    assert make((1.0, 0.0)).sentence(15).endswith("in 15 min")  # the twin's forecast in full: nothing to add
    assert make((1.0, 0.0)).sentence(30) == base + HELD  # per horizon: the share at the one quoted
    assert make((0.0, 0.4)).summary == base + " (twin 40 %, last reading held 60 %)"
    assert make((0.0, 0.001)).summary.endswith("(twin 1 %, last reading held 99 %)")  # a blend is never "0 %"
    assert make((0.0, 0.999)).summary.endswith("(twin 99 %, last reading held 1 %)")
    assert make(None).summary == base  # saved before the share was kept: the basis is not known, nothing said


@pytest.mark.parametrize("share", [(0.5,), (0.5, 0.5, 0.5), (0.0, 1.2), (-0.1, 0.0), (0.0, float("nan"))])
def test_a_share_per_horizon_in_0_1_or_a_clear_error(share: tuple[float, ...]) -> None:
    with pytest.raises(ValidationError, match="twin_share"):
        make(share)


@given(st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_the_share_round_trips_through_json(share: tuple[float, float]) -> None:
    forecast = make(share)
    assert GlucoseForecast.from_json(forecast.to_json()) == forecast and forecast.twin_share == share
