"""The vocabulary: metric table (units for people, LOINC, ranges with sources), forecast fields, the data
files it is read from, and that the conversion registry reads the same file."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.stream import metrics as stream_metrics
from medtwin.vocab import CANONICAL_UNITS, GlucoseForecast, forecast_fields, metrics, vocabulary


def test_display_units_are_for_people_and_canonical_units_are_ucum() -> None:
    table = metrics()
    assert (table["body_temperature"].unit, table["body_temperature"].display_unit) == ("Cel", "°C")
    assert (table["systolic_bp"].unit, table["systolic_bp"].display_unit) == ("mm[Hg]", "mmHg")
    for info in table.values():
        assert info.label and info.range_source and info.min <= info.max
        assert not any(c in info.display_unit for c in "[]{}"), info  # no UCUM annotation in a display unit
    assert {name: info.unit for name, info in table.items()} == CANONICAL_UNITS


def test_the_conversion_registry_reads_the_same_file() -> None:
    registry = stream_metrics.registry()
    assert set(registry) == set(metrics())
    for name, info in metrics().items():
        assert (registry[name].unit, registry[name].min, registry[name].max, registry[name].loinc) == (
            info.unit, info.min, info.max, info.loinc)
    assert stream_metrics.normalise("body_temperature", 98.6, "[degF]") == pytest.approx(37.0)


def test_forecast_fields_are_the_forecasts_own() -> None:
    fields = forecast_fields()
    assert len(fields) == 16 and all(f["description"] for f in fields if f["name"] != "patient_id")
    assert {f["name"]: f["unit"] for f in fields}["lower80_mg_dl"] == "mg/dL"
    assert [f["name"] for f in fields] == list(GlucoseForecast.model_fields)


@given(means=st.lists(st.floats(20, 600, allow_nan=False), min_size=1, max_size=12),
       version=st.one_of(st.none(), st.integers(1, 10_000)))
def test_a_forecast_round_trips_through_json(means: list[float], version: int | None) -> None:
    n = len(means)
    forecast = GlucoseForecast(
        patient_id="p", issued_at=datetime(2026, 1, 1, tzinfo=UTC), glucose_now_mg_dl=means[0],
        horizons_min=tuple(5 * (i + 1) for i in range(n)), mean_mg_dl=tuple(means),
        lower80_mg_dl=tuple(m - 10 for m in means), upper80_mg_dl=tuple(m + 10 for m in means),
        lower95_mg_dl=tuple(m - 20 for m in means), upper95_mg_dl=tuple(m + 20 for m in means),
        insulin_sensitivity_ratio=1.0, twin_version=version)
    assert GlucoseForecast.from_json(forecast.to_json()) == forecast
    assert forecast.at(5 * n) == (means[-1], means[-1] - 10, means[-1] + 10, means[-1] - 20, means[-1] + 20)


def test_the_document_has_every_part() -> None:
    doc = vocabulary()
    assert set(doc) == {"metrics", "glucose", "episode", "forecast_fields", "news2", "display"}
    assert doc["glucose"]["target_range_mg_dl"] == [70.0, 180.0] and "Diabetes Care" in doc["glucose"]["source"]
    assert {p["metric"] for p in doc["news2"]["parameters"].values()} <= set(metrics())
