"""The shared vocabulary of the live twin: a stored sample and the metric names every part agrees on.

Parsers (``stream.parse``) turn payloads into :class:`Sample`; the pipeline stores them exactly once and
hands the newly stored ones to its listeners (assimilation, alerts, the event hub). Everything downstream
sees values in the metric's canonical unit; the device's own value and unit ride along.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

# Canonical metric names and their canonical (UCUM) unit. Values are stored in this unit.
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

CANONICAL_UNITS: Final[dict[str, str]] = {
    GLUCOSE: "mg/dL",
    HEART_RATE: "/min",
    SYSTOLIC_BP: "mm[Hg]",
    DIASTOLIC_BP: "mm[Hg]",
    SPO2: "%",
    RESPIRATORY_RATE: "/min",
    BODY_TEMPERATURE: "Cel",
    STEPS: "{steps}",
    SLEEP_STAGE: "{stage}",
    INSULIN_BOLUS: "U",
    INSULIN_BASAL: "U/h",
    CARBS: "g",
    SUPPLEMENTAL_OXYGEN: "1",
    CONSCIOUSNESS: "1",
}


@dataclass(frozen=True, slots=True)
class Sample:
    """One accepted measurement, in the metric's canonical unit (``CANONICAL_UNITS[metric]``)."""

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


@dataclass(frozen=True, slots=True)
class GlucoseForecast:
    """The live glucose twin's forecast after assimilating a CGM sample (all glucose in mg/dL).

    ``horizons_min[i]`` minutes after ``issued_at`` the twin expects ``mean_mg_dl[i]``, with 80 % and 95 %
    prediction intervals. ``issued_at`` is the data time of the last CGM sample folded in.
    """

    patient_id: str
    issued_at: datetime
    glucose_now_mg_dl: float  # filtered estimate at issued_at
    horizons_min: tuple[int, ...]  # e.g. (5, 10, ..., 60)
    mean_mg_dl: tuple[float, ...]
    lower80_mg_dl: tuple[float, ...]
    upper80_mg_dl: tuple[float, ...]
    lower95_mg_dl: tuple[float, ...]
    upper95_mg_dl: tuple[float, ...]
    insulin_sensitivity_ratio: float  # current estimate relative to the twin's starting value (1 = unchanged)
    twin_version: int | None  # glucose twin version the filter started from, if any

    def at(self, minutes: int) -> tuple[float, float, float, float, float]:
        """(mean, lower80, upper80, lower95, upper95) at a horizon in ``horizons_min``."""
        i = self.horizons_min.index(minutes)
        return (self.mean_mg_dl[i], self.lower80_mg_dl[i], self.upper80_mg_dl[i],
                self.lower95_mg_dl[i], self.upper95_mg_dl[i])
