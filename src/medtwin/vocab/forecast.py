"""The glucose forecast of the live twin: one definition of its fields, used by the twin, the alert rules,
the event stream, the API and the reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

__all__ = ["SENSOR_OFFSET_MATERIAL_MG_DL", "STEADY_MG_DL_PER_MIN", "TREND_WINDOW_MIN", "GlucoseForecast", "forecast_fields",
           "glucose_trend_mg_dl_per_min"]

#: readings within this many minutes of the newest give the measured trend (least-squares slope)
TREND_WINDOW_MIN: Final = 15.0
#: a trend within +- this is "steady", as the trend arrows of common CGM systems (Dexcom G6 user guide)
STEADY_MG_DL_PER_MIN: Final = 1.0
#: a sensor-error estimate at least this large (mg/dL) is said out loud beside the measured value
SENSOR_OFFSET_MATERIAL_MG_DL: Final = 10.0


class GlucoseForecast(BaseModel):
    """The live glucose twin's forecast after assimilating CGM (all glucose in mg/dL).

    ``horizons_min[i]`` minutes after ``issued_at`` the twin expects the CGM reading ``mean_mg_dl[i]``, with
    80 % and 95 % prediction intervals for the reading. ``issued_at`` is the data time of the last CGM
    reading folded in, ``last_reading_mg_dl`` that reading (measured) and ``trend_mg_dl_per_min`` the slope of
    the readings of the last 15 min: what a person can check on the CGM trace. ``glucose_now_mg_dl`` is the
    twin's estimate of the interstitial glucose with the sensor error removed; it is never quoted as a
    reading. The forecast is of the **reading** (glucose plus the sensor error's expected, decaying path), so
    it starts where the data are: ``cgm_now_mg_dl`` (horizon 0) equals the last reading up to its white noise.
    ``sensor_offset_mg_dl`` is the sensor error the twin holds now (reading minus glucose); from
    :data:`SENSOR_OFFSET_MATERIAL_MG_DL` on it is shown beside the reading (:meth:`sentence`).
    The measured fields are None in forecasts saved before they existed.
    ``twin_share`` is the basis of the mean shown, per horizon: the weight the patient's own scored forecasts
    give the twin in a blend with the last reading (:mod:`medtwin.physiology.online_skill`); 0 until the twin
    has shown skill for this patient, so a flat line is said to be the last reading held, never passed off as
    the twin's forecast (:meth:`sentence`).
    A screen quotes the sentence beside a CGM reading only while the forecast was issued from that reading
    (``issued_at`` is its time): once a newer reading is shown, the forecast is "updating" and named by the
    time of the reading it came from, so a tile reading 92 never sits beside "CGM 87 mg/dL, falling ...".
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
    last_reading_mg_dl: float | None = Field(
        default=None, description="the last CGM reading folded in (measured, at issued_at), mg/dL")
    trend_mg_dl_per_min: float | None = Field(
        default=None, description="measured trend: least-squares slope of the CGM readings of the last 15 min "
                                  "(None with fewer than two), mg/dL/min")
    cgm_now_mg_dl: float | None = Field(
        default=None, description="expected CGM reading at issued_at (horizon 0 of the forecast), mg/dL")
    sensor_offset_mg_dl: float | None = Field(
        default=None, description="sensor error the twin estimates at issued_at (reading minus glucose), mg/dL")
    twin_share: tuple[float, ...] | None = Field(
        default=None, description="the twin's weight in the mean shown at each horizon: 0 = the last reading held "
                                  "(persistence; the twin has not yet shown skill for this patient), 1 = the twin's "
                                  "forecast in full; None in forecasts saved before it was kept")

    @model_validator(mode="after")
    def _share_per_horizon(self) -> GlucoseForecast:
        share = self.twin_share
        if share is not None and (len(share) != len(self.horizons_min) or not all(0 <= w <= 1 for w in share)):
            raise ValueError("twin_share: needs one share in [0, 1] per horizon")
        return self

    @property
    def anchor_mg_dl(self) -> float:
        """Where the forecast is drawn from: the last measured reading (the estimate only in forecasts saved
        before the reading was kept)."""
        return self.glucose_now_mg_dl if self.last_reading_mg_dl is None else self.last_reading_mg_dl

    @property
    def start_mg_dl(self) -> float:
        """Horizon 0 of the expected CGM path: ``cgm_now_mg_dl`` (the reading less the white noise the filter
        attributes to it), else :attr:`anchor_mg_dl`."""
        return self.anchor_mg_dl if self.cgm_now_mg_dl is None else self.cgm_now_mg_dl

    @computed_field(description="the sensor offset is at least SENSOR_OFFSET_MATERIAL_MG_DL: show both values")  # type: ignore[prop-decorator]
    @property
    def material_offset(self) -> bool:
        return self.sensor_offset_mg_dl is not None and abs(self.sensor_offset_mg_dl) >= SENSOR_OFFSET_MATERIAL_MG_DL

    @computed_field(description="the sentence() at 30 min (else the last horizon): measured value and forecast")  # type: ignore[prop-decorator]
    @property
    def summary(self) -> str:
        return self.sentence(self._quoted_minutes())

    @computed_field(description="the forecast line's legend label: its basis at the horizon the summary quotes, "  # type: ignore[prop-decorator]
                                "as basis_words, e.g. 'Forecast: last reading held'")
    @property
    def basis_label(self) -> str:
        minutes = self._quoted_minutes()
        pct = self._twin_pct(minutes)
        if pct is None:
            return "Forecast (mean)"  # saved before the share was kept: the basis is not known, as before
        label = ("Forecast: last reading held" if pct == 0 else "Forecast (twin)" if pct == 100
                 else f"Forecast: twin {pct} %, last reading held {100 - pct} %")
        if len(set(self.twin_share or ())) > 1:  # the basis differs by horizon: name the one the label states
            label += f" (at {minutes} min)"
        return label

    def _quoted_minutes(self) -> int:
        return 30 if 30 in self.horizons_min else self.horizons_min[-1]

    def sentence(self, minutes: int) -> str:
        """THE one-line statement of measured value and forecast, e.g. ``CGM 87 mg/dL, falling 2 mg/dL/min;
        forecast 62 (95 % 48-76) in 30 min``, plus the sensor offset when material. ``minutes`` must be in
        ``horizons_min``. Alerts, the API and the dashboard all use this text."""
        mean, _lo80, _hi80, lo95, hi95 = self.at(minutes)
        if self.last_reading_mg_dl is None:
            measured = "CGM reading not recorded"
        else:
            measured = f"CGM {self.last_reading_mg_dl:.0f} mg/dL{_trend_words(self.trend_mg_dl_per_min)}"
        text = f"{measured}; forecast {mean:.0f} (95 % {lo95:.0f}-{hi95:.0f}) in {minutes} min"
        text += self.basis_words(minutes)
        if self.material_offset and self.sensor_offset_mg_dl is not None:
            side = "above" if self.sensor_offset_mg_dl > 0 else "below"
            text += (f"; sensor reads ~{abs(self.sensor_offset_mg_dl):.0f} mg/dL {side} the twin's estimate "
                     f"(glucose {self.glucose_now_mg_dl:.0f} mg/dL)")
        return text

    def basis_words(self, minutes: int) -> str:
        """What the mean at ``minutes`` is built from, in words (empty when the twin's share is 1 or unknown):
        `` (last reading held: the twin has not yet shown skill for this patient)`` at share 0, else the
        twin's share in %, e.g. `` (twin 40 %, last reading held 60 %)``."""
        pct = self._twin_pct(minutes)
        if pct is None or pct == 100:
            return ""
        if pct == 0:
            return " (last reading held: the twin has not yet shown skill for this patient)"
        return f" (twin {pct} %, last reading held {100 - pct} %)"

    def _twin_pct(self, minutes: int) -> int | None:
        """The twin's share of the mean at ``minutes`` in whole %: 0 and 100 only when exact (a true blend
        is never "0 %" or "100 %"), None when not kept."""
        if self.twin_share is None:
            return None
        share = self.twin_share[self.horizons_min.index(minutes)]
        return 0 if share <= 0 else 100 if share >= 1 else min(99, max(1, round(100 * share)))

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


def glucose_trend_mg_dl_per_min(minutes: Sequence[float], values: Sequence[float]) -> float | None:
    """THE measured CGM trend: the least-squares slope (mg/dL/min) of the readings within
    :data:`TREND_WINDOW_MIN` of the newest one (any order); None with fewer than two readings there or a span
    under 4 minutes. The patient list, the forecast and the alerts all quote this one."""
    if len(minutes) != len(values):
        raise ValueError("values: needs one value per time")
    if len(minutes) < 2:
        return None
    newest = max(minutes)
    window = [(t, v) for t, v in zip(minutes, values, strict=True) if newest - t <= TREND_WINDOW_MIN]
    xs = [t - newest for t, _ in window]
    if len(window) < 2 or max(xs) - min(xs) < 4.0:
        return None
    ys = [v for _, v in window]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _trend_words(trend: float | None) -> str:
    if trend is None:
        return ""
    size = round(abs(trend), 1)
    if size == 0:
        return ", steady"
    if abs(trend) <= STEADY_MG_DL_PER_MIN:  # the arrow of the patient list shows steady: say so, with the number
        return f", steady ({'-' if trend < 0 else '+'}{size:g} mg/dL/min)"
    return f", {'falling' if trend < 0 else 'rising'} {size:g} mg/dL/min"


def forecast_fields() -> list[dict[str, str]]:
    """Name, description and unit of each forecast field (the vocabulary endpoint's ``forecast_fields``)."""
    out = []
    for name, info in GlucoseForecast.model_fields.items():
        unit = ("mg/dL" if name.endswith("_mg_dl") else "mg/dL/min" if name.endswith("_mg_dl_per_min")
                else "min" if name.endswith("_min") else "")
        out.append({"name": name, "description": info.description or "", "unit": unit})
    return out
