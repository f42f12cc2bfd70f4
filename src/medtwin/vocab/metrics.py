"""Metric names every part agrees on, with their canonical (UCUM) unit, display unit, label, LOINC codes and
plausible range: ``vocab/data/metrics.toml`` is the one source (each range with its source).

Values are stored and computed in the canonical unit; people see the display unit (``°C``, ``mmHg``, not the
UCUM codes ``Cel``, ``mm[Hg]``). Unit conversion of device values is :mod:`medtwin.stream.metrics`' job (it
reads the same file); this module needs no unit library.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

__all__ = ["BODY_TEMPERATURE", "CANONICAL_UNITS", "CARBS", "CONSCIOUSNESS", "DIASTOLIC_BP", "GLUCOSE",
           "HEART_RATE", "INSULIN_BASAL", "INSULIN_BOLUS", "METRICS_FILE", "RESPIRATORY_RATE", "SLEEP_STAGE",
           "SPO2", "STEPS", "SUPPLEMENTAL_OXYGEN", "SYSTOLIC_BP", "MetricInfo", "metric_table", "metrics",
           "read_metrics_file"]

METRICS_FILE: Final = "metrics.toml"

GLUCOSE: Final = "glucose"  # interstitial (CGM) or capillary glucose, mg/dL
HEART_RATE: Final = "heart_rate"  # /min
SYSTOLIC_BP: Final = "systolic_bp"  # mm[Hg]
DIASTOLIC_BP: Final = "diastolic_bp"  # mm[Hg]
SPO2: Final = "spo2"  # %
RESPIRATORY_RATE: Final = "respiratory_rate"  # /min
BODY_TEMPERATURE: Final = "body_temperature"  # Cel
STEPS: Final = "steps"  # {steps} in the interval ending at the sample time
SLEEP_STAGE: Final = "sleep_stage"  # {stage}: 0 awake, 1 light, 2 deep, 3 REM
INSULIN_BOLUS: Final = "insulin_bolus"  # U delivered at the sample time
INSULIN_BASAL: Final = "insulin_basal"  # U/h from the sample time on
CARBS: Final = "carbs"  # g eaten (announced meal) at the sample time
SUPPLEMENTAL_OXYGEN: Final = "supplemental_oxygen"  # 1: on oxygen, 0: air (NEWS2)
CONSCIOUSNESS: Final = "consciousness"  # ACVPU: 0 alert, 1 new confusion, 2 voice, 3 pain, 4 unresponsive

_NAMES: Final = (GLUCOSE, HEART_RATE, SYSTOLIC_BP, DIASTOLIC_BP, SPO2, RESPIRATORY_RATE, BODY_TEMPERATURE, STEPS,
                 SLEEP_STAGE, INSULIN_BOLUS, INSULIN_BASAL, CARBS, SUPPLEMENTAL_OXYGEN, CONSCIOUSNESS)


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is, for people and for exchange (the conversion rules live in ``stream.metrics``)."""

    name: str
    unit: str  # canonical UCUM unit
    display_unit: str  # as shown to people ("" for codes and flags)
    label: str
    loinc: tuple[str, ...]
    min: float  # plausible range in the canonical unit, inclusive
    max: float
    range_source: str
    integer: bool

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "display_unit": self.display_unit, "label": self.label,
                "loinc": list(self.loinc), "min": self.min, "max": self.max, "range_source": self.range_source,
                "integer": self.integer}


@lru_cache(maxsize=1)
def read_metrics_file() -> Mapping[str, Mapping[str, Any]]:
    """The parsed ``metrics.toml`` (metric name -> its table), checked against the names above."""
    text = resources.files("medtwin.vocab").joinpath("data", METRICS_FILE).read_text(encoding="utf-8")
    data: dict[str, dict[str, Any]] = tomllib.loads(text)
    missing = set(_NAMES) - set(data)
    if missing:
        raise RuntimeError(f"{METRICS_FILE} lacks {sorted(missing)}")
    for name, row in data.items():
        for key in ("unit", "label", "display_unit", "min", "max", "range_source"):
            if key not in row:
                raise RuntimeError(f"{METRICS_FILE}: [{name}] lacks {key!r}")
    return MappingProxyType({name: MappingProxyType(row) for name, row in data.items()})


@lru_cache(maxsize=1)
def metrics() -> Mapping[str, MetricInfo]:
    """metric name -> :class:`MetricInfo`, in the file's order."""
    return MappingProxyType({name: MetricInfo(
        name=name, unit=str(row["unit"]), display_unit=str(row["display_unit"]), label=str(row["label"]),
        loinc=tuple(row.get("loinc", ())), min=float(row["min"]), max=float(row["max"]),
        range_source=str(row["range_source"]), integer=bool(row.get("integer", False)))
        for name, row in read_metrics_file().items()})


def metric_table() -> list[dict[str, Any]]:
    """Every metric as JSON (the vocabulary endpoint's ``metrics``)."""
    return [info.as_json() for info in metrics().values()]


#: metric -> canonical UCUM unit (values are stored in it).
CANONICAL_UNITS: Final[Mapping[str, str]] = MappingProxyType({name: info.unit for name, info in metrics().items()})
