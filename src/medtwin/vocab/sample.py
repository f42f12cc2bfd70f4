"""One accepted measurement: what parsers produce, the pipeline stores and every listener receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["Sample"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One accepted measurement, in the metric's canonical unit (``CANONICAL_UNITS[metric]``); the device's
    own value and unit ride along."""

    patient_id: str
    metric: str
    time: datetime  # timezone-aware, UTC
    value: float
    unit: str
    original_value: float
    original_unit: str
    device: str | None
    source: str  # http | websocket | mqtt | fleet | fhir
    idempotency_key: str
