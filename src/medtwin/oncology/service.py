"""JSON core of the tumour twin behind ``medtwin tumour fit|forecast|compare`` and ``/patients/{id}/tumour/``.

* ``fit``: every lesion (grouped by ``lesion``) checked (:func:`medtwin.oncology.measurements.series`), then
  each law fitted to all lesions in one batch; per lesion AIC/BIC of every law and the chosen one (``auto``:
  the lowest AIC among laws the readings can determine; a law with more parameters than readings is not
  offered, and an explicitly asked one falls back to a simpler law, said in ``note``).
* ``forecast``: the chosen law's volume ahead with the calibrated interval
  (:mod:`medtwin.oncology.intervals`); no interval beyond the calibrated horizon.
* ``compare``: at the next assessment, chemotherapy regimens (continue / stop / switch / dose-dense, as log-kill
  rates on top of the fitted course: the fitted curve already contains the current regimen, so a regimen
  changes the volume by ``exp(-(k_new E_new(t) - k_now E_now(t)))``) and radiotherapy schedules (LQ with
  repopulation, :mod:`medtwin.oncology.treatment`) with cell kill and BED/EQD2. A chemotherapy scenario gets
  the predicted RECIST category; a radiotherapy one "not callable" (no dead-cell clearance model).
  The assumptions are returned with the answer.
"""

from __future__ import annotations

import math
import tomllib
from collections import defaultdict
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from medtwin.arrays import Array
from medtwin.model.parameters import read_text
from medtwin.oncology import recist, treatment
from medtwin.oncology.fitting import BatchFit, fit_batch
from medtwin.oncology.growth import LAWS
from medtwin.oncology.intervals import forecast_interval, load_calibration
from medtwin.oncology.measurements import MeasurementError, Series, law_for, series


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lesion: str = "1"
    time_day: float
    size: float
    unit: str = Field(description="mm or cm (longest diameter); mm3, cm3 or mL (volume)")
    row: int | None = Field(None, description="the source row, for error messages")


class FitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    measurements: list[Measurement] = Field(default_factory=list, max_length=5000,
                                            description="empty: the API reads the record's tumour sizes")
    model: str = Field("auto", description="a growth law or 'auto' (lowest AIC)")


class ForecastRequest(FitRequest):
    horizon_days: list[float] = Field(default_factory=lambda: [42.0, 84.0], min_length=1, max_length=100)
    level: float = 0.8


class Regimen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    log_kill_per_day: float = Field(ge=0.0, le=5.0, description="log-kill rate while exposed (1/d); 0: stop")
    cycle_days: float = Field(21.0, gt=0.0)
    days_on: float = Field(1.0, ge=0.0)


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    total_gy: float = Field(gt=0.0, le=120.0)
    fractions: int = Field(ge=1, le=60)
    overall_days: float = Field(ge=0.0, le=120.0)


class CompareRequest(FitRequest):
    assessment_day: float = Field(56.0, gt=0.0, description="days after the last reading")
    current: Regimen | None = Field(None, description="the regimen the readings were taken under")
    regimens: list[Regimen] = Field(default_factory=list, max_length=20)
    radiotherapy: list[Schedule] = Field(default_factory=list, max_length=20)
    alpha_beta_gy: float | None = Field(None, gt=0.0)
    alpha_per_gy: float | None = Field(None, gt=0.0)


def _group(measurements: list[Measurement]) -> dict[str, Series]:
    if not measurements:
        raise MeasurementError("measurements", "no measurements")
    rows: dict[str, list[tuple[int, Measurement]]] = defaultdict(list)
    for i, m in enumerate(measurements):
        rows[m.lesion].append((m.row if m.row is not None else i + 1, m))
    out = {}
    for lesion, items in rows.items():
        try:
            out[lesion] = series([m.time_day for _, m in items], [m.size for _, m in items],
                                 [m.unit for _, m in items], rows=[r for r, _ in items])
        except MeasurementError as exc:
            raise MeasurementError(f"lesion {lesion}, {exc.field}", exc.message) from None
    return out


def _pad(lesions: dict[str, Series]) -> tuple[Array, Array, NDArray[np.bool_]]:
    width = max(len(s.t_days) for s in lesions.values())
    t = np.zeros((len(lesions), width))
    y = np.zeros((len(lesions), width))
    mask = np.zeros((len(lesions), width), dtype=bool)
    for i, s in enumerate(lesions.values()):
        t[i, :len(s.t_days)], y[i, :len(s.t_days)], mask[i, :len(s.t_days)] = s.t_days, s.volume_mm3, True
    return t, y, mask


def _choose(requested: str, n: int, fits: dict[str, BatchFit], i: int) -> tuple[str, str]:
    if requested != "auto":
        return law_for(requested, n)
    offered = [m for m in LAWS if LAWS[m].n_parameters <= n and fits[m].converged[i]]
    if not offered:
        raise MeasurementError("measurements", f"{n} reading(s): no growth law can be determined")
    return min(offered, key=lambda m: float(fits[m].aic[i])), "auto: lowest AIC among the laws the readings determine"


def _fits(request: FitRequest) -> tuple[dict[str, Series], dict[str, BatchFit], list[tuple[str, str]]]:
    if request.model != "auto" and request.model not in LAWS:
        raise MeasurementError("model", f"unknown growth model {request.model!r}; known: auto, {', '.join(LAWS)}")
    lesions = _group(request.measurements)
    t, y, mask = _pad(lesions)
    fits = {name: fit_batch(name, t, y, mask) for name in LAWS}
    chosen = [_choose(request.model, len(s.t_days), fits, i) for i, s in enumerate(lesions.values())]
    return lesions, fits, chosen


def _law_row(fit: BatchFit, i: int, n: int) -> dict[str, Any]:
    spec = LAWS[fit.model]
    determined = spec.n_parameters <= n
    return {"parameters": {p: {"value": float(fit.params[i, j]), "unit": u.replace("V", "mm3")}
                           for j, (p, u) in enumerate(zip(spec.parameters, spec.units, strict=True))},
            "aic": float(fit.aic[i]) if determined else None, "bic": float(fit.bic[i]) if determined else None,
            "converged": bool(fit.converged[i]),
            "determined": determined}


def fit(request: FitRequest) -> dict[str, Any]:
    lesions, fits, chosen = _fits(request)
    out = []
    for i, (lesion, s) in enumerate(lesions.items()):
        model, note = chosen[i]
        if not fits[model].converged[i]:
            note = (note + "; " if note else "") + "the fit did not converge: treat it as unreliable"
        out.append({"lesion": lesion, "readings": len(s.t_days), "start_day": s.start_day, "model": model,
                    "note": note, "laws": {m: _law_row(f, i, len(s.t_days)) for m, f in fits.items()}})
    return {"volume_unit": "mm3", "time_unit": "d", "lesions": out}


def forecast(request: ForecastRequest) -> dict[str, Any]:
    lesions, fits, chosen = _fits(request)
    table = load_calibration()
    horizons = np.asarray(request.horizon_days, dtype=float)
    out = []
    for i, (lesion, s) in enumerate(lesions.items()):
        model, note = chosen[i]
        last = float(s.t_days[-1])
        fitted = fits[model]
        predicted = fitted.predict(np.asarray([last + horizons]))[i]
        lo, hi, ok = forecast_interval(table, model, request.level, predicted, float(fitted.scale[i]), horizons)
        out.append({"lesion": lesion, "model": model, "note": note, "converged": bool(fitted.converged[i]),
                    "points": [{"day": s.start_day + last + h, "days_ahead": float(h), "volume_mm3": float(v),
                                "lower_mm3": None if not c else float(a), "upper_mm3": None if not c else float(b),
                                "interval": "calibrated" if c else "not calibrated this far ahead"}
                               for h, v, a, b, c in zip(horizons, predicted, lo, hi, ok, strict=True)]})
    return {"level": request.level, "volume_unit": "mm3", "interval_source": table["source"], "lesions": out}


def _exposure(regimen: Regimen | None, start: float, t: float) -> float:
    """Days on therapy between ``start`` and ``t`` (cycles starting at ``start``)."""
    if regimen is None or regimen.days_on == 0 or t <= start:
        return 0.0
    span = t - start
    full, rest = divmod(span, regimen.cycle_days)
    return full * min(regimen.days_on, regimen.cycle_days) + min(rest, regimen.days_on)


def radiobiology(request: CompareRequest) -> dict[str, float]:
    text, _ = read_text("medtwin.oncology:data/radiobiology.toml")
    values = {k: float(v["value"]) for k, v in tomllib.loads(text)["parameters"].items()}
    if request.alpha_beta_gy is not None:
        values["alpha_beta"] = request.alpha_beta_gy
    if request.alpha_per_gy is not None:
        values["alpha"] = request.alpha_per_gy
    return values


def _scenario(name: str, factor: float, base: float, s: Series, extra: dict[str, Any]) -> dict[str, Any]:
    volume = base * factor
    diameters = [recist.diameter_mm(v) for v in s.volume_mm3]
    current = recist.diameter_mm(volume)
    return {"name": name, "volume_mm3": volume, "diameter_mm": current,
            "recist": recist.category(diameters[0], min(diameters), current), **extra}


def compare(request: CompareRequest) -> dict[str, Any]:
    lesions, fits, chosen = _fits(request)
    rb = radiobiology(request)
    beta = rb["alpha"] / rb["alpha_beta"]
    out = []
    for i, (lesion, s) in enumerate(lesions.items()):
        model, note = chosen[i]
        last = float(s.t_days[-1])
        at = last + request.assessment_day
        base = float(fits[model].predict(np.asarray([[at]]))[i, 0])
        kill_now = 0.0 if request.current is None else request.current.log_kill_per_day
        now = kill_now * _exposure(request.current, last, at)
        scenarios = [_scenario("continue", 1.0, base, s, {"kind": "chemotherapy"})]
        for regimen in request.regimens:
            change = regimen.log_kill_per_day * _exposure(regimen, last, at) - now
            scenarios.append(_scenario(regimen.name, math.exp(-change), base, s, {"kind": "chemotherapy"}))
        for plan in request.radiotherapy:
            schedule = treatment.Fractionation(plan.total_gy, plan.fractions, plan.overall_days)
            factor = float(treatment.radiotherapy_volume(1.0, schedule, rb["alpha"], beta, rb["t_pot"],
                                                         rb["kickoff"], np.array([plan.overall_days]))[0])
            scenarios.append({
                "name": plan.name, "kind": "radiotherapy", "log10_cell_kill": -math.log10(factor),
                "bed_gy": treatment.bed(schedule, rb["alpha_beta"]), "eqd2_gy": treatment.eqd2(schedule, rb["alpha_beta"]),
                "bed_with_repopulation_gy": treatment.bed(schedule, rb["alpha_beta"], alpha=rb["alpha"],
                                                          t_pot_days=rb["t_pot"], kickoff_days=rb["kickoff"]),
                "volume_mm3": None, "recist": "not callable",
                "reason": "the volume after radiotherapy depends on how fast dead cells are cleared, which this "
                          "twin does not model; compare schedules by cell kill, BED and EQD2"})
        out.append({"lesion": lesion, "model": model, "note": note, "assessment_day": s.start_day + at,
                    "scenarios": scenarios})
    return {"volume_unit": "mm3", "radiobiology": rb, "lesions": out, "assumptions": [
        "the fitted course already contains the current regimen; a regimen changes it by log-kill only",
        "radiotherapy: clonogen kill by LQ with repopulation (radiobiology.toml); no volume or RECIST forecast",
        "RECIST from one lesion's longest diameter (volume = 0.52 d^3); baseline = first reading"]}
