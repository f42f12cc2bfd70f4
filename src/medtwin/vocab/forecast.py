"""The glucose forecast of the live twin: one definition of its fields, used by the twin, the alert rules,
the event stream, the API and the reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GlucoseForecast", "forecast_fields"]


class GlucoseForecast(BaseModel):
    """The live glucose twin's forecast after assimilating CGM (all glucose in mg/dL).

    ``horizons_min[i]`` minutes after ``issued_at`` the twin expects the CGM reading ``mean_mg_dl[i]``, with
    80 % and 95 % prediction intervals for the reading. ``issued_at`` is the data time of the last CGM
    reading folded in.
    """

    model_config = ConfigDict(frozen=True)

    patient_id: str
    issued_at: datetime = Field(description="data time of the last CGM reading folded in")
    glucose_now_mg_dl: float = Field(description="filtered interstitial glucose at issued_at, mg/dL")
    horizons_min: tuple[int, ...] = Field(description="minutes after issued_at, e.g. 5, 10, ..., 60")
    mean_mg_dl: tuple[float, ...] = Field(description="expected CGM reading at each horizon, mg/dL")
    lower80_mg_dl: tuple[float, ...] = Field(description="80 % prediction interval, lower bound, mg/dL")
    upper80_mg_dl: tuple[float, ...] = Field(description="80 % prediction interval, upper bound, mg/dL")
    lower95_mg_dl: tuple[float, ...] = Field(description="95 % prediction interval, lower bound, mg/dL")
    upper95_mg_dl: tuple[float, ...] = Field(description="95 % prediction interval, upper bound, mg/dL")
    insulin_sensitivity_ratio: float = Field(
        description="current insulin sensitivity estimate over the twin's starting value (1 = unchanged)")
    twin_version: int | None = Field(default=None,
                                     description="fitted glucose twin version the filter started from, if any")

    def at(self, minutes: int) -> tuple[float, float, float, float, float]:
        """(mean, lower80, upper80, lower95, upper95) at a horizon in ``horizons_min``."""
        i = self.horizons_min.index(minutes)
        return (self.mean_mg_dl[i], self.lower80_mg_dl[i], self.upper80_mg_dl[i],
                self.lower95_mg_dl[i], self.upper95_mg_dl[i])

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``issued_at`` as ISO 8601, sequences as lists)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GlucoseForecast:
        return cls.model_validate(data)


def forecast_fields() -> list[dict[str, str]]:
    """Name, description and unit of each forecast field (the vocabulary endpoint's ``forecast_fields``)."""
    out = []
    for name, info in GlucoseForecast.model_fields.items():
        unit = "mg/dL" if name.endswith("_mg_dl") else "min" if name.endswith("_min") else ""
        out.append({"name": name, "description": info.description or "", "unit": unit})
    return out
