"""medtwin's one vocabulary (a domain package: numpy and pydantic only, no web or store).

* :mod:`.metrics`: metric names, canonical (UCUM) and display units, labels, LOINC codes, plausible ranges
  (``data/metrics.toml``, each range with its source);
* :mod:`.glucose`: the consensus glucose thresholds (70/54/180/250 mg/dL);
* :mod:`.episodes`: THE glucose episode definition (international consensus 2023), for streams and series;
* :mod:`.forecast`: the live glucose forecast (:class:`GlucoseForecast`, one definition of its fields);
* :mod:`.sample`: one accepted measurement (:class:`Sample`);
* :mod:`.news2`: the NEWS2 chart (RCP 2017) as reference data and THE mapping of a score to its band;
* :mod:`.display`: what people read for a code (UCUM -> display unit, LOINC -> short name).

Served read-only at ``GET /api/v1/vocabulary``; the dashboard reads it instead of keeping copies.
"""

from __future__ import annotations

from medtwin.vocab.forecast import GlucoseForecast, forecast_fields
from medtwin.vocab.metrics import (
    BODY_TEMPERATURE,
    CANONICAL_UNITS,
    CARBS,
    CONSCIOUSNESS,
    DIASTOLIC_BP,
    GLUCOSE,
    HEART_RATE,
    INSULIN_BASAL,
    INSULIN_BOLUS,
    RESPIRATORY_RATE,
    SLEEP_STAGE,
    SPO2,
    STEPS,
    SUPPLEMENTAL_OXYGEN,
    SYSTOLIC_BP,
    MetricInfo,
    metrics,
)
from medtwin.vocab.sample import Sample

__all__ = ["BODY_TEMPERATURE", "CANONICAL_UNITS", "CARBS", "CONSCIOUSNESS", "DIASTOLIC_BP", "GLUCOSE",
           "HEART_RATE", "INSULIN_BASAL", "INSULIN_BOLUS", "RESPIRATORY_RATE", "SLEEP_STAGE", "SPO2", "STEPS",
           "SUPPLEMENTAL_OXYGEN", "SYSTOLIC_BP", "GlucoseForecast", "MetricInfo", "Sample", "forecast_fields",
           "metrics", "vocabulary"]


def vocabulary() -> dict[str, object]:
    """Everything above as one JSON document (without alert rules: those are plug-ins, listed by the
    alert registry and added by the endpoint)."""
    from medtwin.vocab.display import display_table
    from medtwin.vocab.episodes import episode_definition
    from medtwin.vocab.glucose import glucose_thresholds
    from medtwin.vocab.metrics import metric_table
    from medtwin.vocab.news2 import news2_reference

    return {"metrics": metric_table(), "glucose": glucose_thresholds(), "episode": episode_definition(),
            "forecast_fields": forecast_fields(), "news2": news2_reference(),
            "display": display_table()}
