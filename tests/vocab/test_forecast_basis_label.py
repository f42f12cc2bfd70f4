"""The forecast line's legend label (GlucoseForecast.basis_label) says the same basis as the sentence
(basis_words) at the horizon the summary quotes: a flat "last reading held" line is never labelled as the
twin's forecast on the chart."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from tests.vocab.test_forecast_basis import make

from medtwin.vocab import GlucoseForecast


def test_the_legend_label_names_the_basis_at_30_min() -> None:
    assert make((0.0, 0.0)).basis_label == "Forecast: last reading held"
    assert make((1.0, 1.0)).basis_label == "Forecast (twin)"
    assert make((0.4, 0.4)).basis_label == "Forecast: twin 40 %, last reading held 60 %"
    assert make((0.0, 0.001)).basis_label == "Forecast: twin 1 %, last reading held 99 % (at 30 min)"
    assert make((1.0, 0.0)).basis_label == "Forecast: last reading held (at 30 min)"  # per horizon: the quoted one
    assert make(None).basis_label == "Forecast (mean)"  # saved before the share was kept: as before


@given(st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_the_label_and_the_sentence_agree(share: tuple[float, float]) -> None:
    forecast = make(share)
    words, label = forecast.basis_words(30), forecast.basis_label
    assert forecast.to_json()["basis_label"] == label
    assert GlucoseForecast.from_json(forecast.to_json()) == forecast  # the computed label is not read back
    if share[1] >= 1:
        assert words == "" and label.startswith("Forecast (twin)")
    elif share[1] <= 0:
        assert "last reading held:" in words and label.startswith("Forecast: last reading held")
    else:
        assert words.strip(" ()") in label and label.startswith("Forecast: twin ")
