"""National Early Warning Score 2 (NEWS2), exactly as the Royal College of Physicians' chart.

Source: Royal College of Physicians. *National Early Warning Score (NEWS) 2: Standardising the assessment
of acute-illness severity in the NHS.* Updated report of a working party. London: RCP, 2017 -- Chart 1
(scoring system), Chart 2 (thresholds and triggers), Chart 4 (clinical response). The parameter bands are
data, not code: the vocabulary's ``vocab/data/news2_rcp2017.toml`` (with the citation), checked for contiguity on load.

Scoring (:func:`score`):

* seven parameters: respiration rate, SpO2 (Scale 1, or Scale 2 for a patient with hypercapnic respiratory
  failure -- a per-patient clinical decision; Scale 2 scores saturation >= 93 % on oxygen 1/2/3 but on air
  0), air or oxygen (oxygen scores 2), systolic BP, pulse, consciousness (ACVPU: any of new Confusion,
  Voice, Pain, Unresponsive scores 3) and temperature;
* each measurement is rounded half-up to the chart's resolution (whole numbers; temperature 0.1 degC)
  and then banded, so 90.4 /min is recorded as 90 and 35.05 degC as 35.1;
* aggregate = sum of the sub-scores (0..20); clinical risk (Chart 2): **high** >= 7, **medium** 5-6,
  **low-medium** a red score (3) in any single parameter with aggregate < 5, **low** otherwise (0-4);
  the response and minimum monitoring frequency are Chart 4's.

Incomplete observation sets. A missing parameter is reported (``missing``) and contributes nothing, and
with the oxygen status unknown Scale 2 is scored as on air. Every sub-score is >= 0 and Scale 2 on air
never exceeds Scale 2 on oxygen, so the aggregate of an incomplete set is a **lower bound** of the complete
set's aggregate: a trigger reached on an incomplete set is real, but a low score on an incomplete set
does not show that the patient is well (``complete`` says which it is).

Which observation set (:func:`observation_set`): at an evaluation time *t* (the newest vital sign's time),
the latest value of each parameter measured within ``window`` before *t* (default 60 minutes); older
values count as missing. Continuous monitors report parameters at different times; the chart assumes one
set taken together, and the window bounds how stale a parameter may be.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, Final

from medtwin import vocab as m
from medtwin.errors import InputError
from medtwin.vocab.news2 import news2_band, news2_bands, news2_chart_text

#: Parameter keys in chart order (the SpO2 key is resolved per scale).
PARAMETERS: Final = ("respiratory_rate", "spo2", "supplemental_oxygen", "systolic_bp", "heart_rate",
                     "consciousness", "temperature")
#: Stream metric of each parameter.
METRIC_OF: Final[dict[str, str]] = {
    "respiratory_rate": m.RESPIRATORY_RATE,
    "spo2": m.SPO2,
    "supplemental_oxygen": m.SUPPLEMENTAL_OXYGEN,
    "systolic_bp": m.SYSTOLIC_BP,
    "heart_rate": m.HEART_RATE,
    "consciousness": m.CONSCIOUSNESS,
    "temperature": m.BODY_TEMPERATURE,
}
NEWS2_METRICS: Final = frozenset(METRIC_OF.values())
PARAMETER_OF: Final[dict[str, str]] = {metric: parameter for parameter, metric in METRIC_OF.items()}
RISKS: Final = ("low", "low-medium", "medium", "high")
DEFAULT_WINDOW: Final = timedelta(minutes=60)


class News2InputError(InputError):
    """A vital-sign value cannot be scored; ``field`` names it."""


@dataclass(frozen=True)
class Band:
    low: Decimal | None  # inclusive; None: open below
    high: Decimal | None  # inclusive; None: open above
    score: int
    name: str | None = None  # a categorical band's name (air/oxygen, alert/CVPU)

    def contains(self, value: Decimal) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.low is None:
            return f"<= {self.high}"
        if self.high is None:
            return f">= {self.low}"
        return f"{self.low}-{self.high}"


@dataclass(frozen=True)
class ParameterChart:
    key: str
    label: str
    metric: str
    unit: str
    resolution: Decimal
    bands: tuple[Band, ...]

    def record(self, value: float) -> Decimal:
        """The value as the chart records it (rounded half-up to the chart's resolution)."""
        return Decimal(repr(float(value))).quantize(self.resolution, rounding=ROUND_HALF_UP)

    def band(self, value: float) -> Band:
        recorded = self.record(value)
        for band in self.bands:
            if band.contains(recorded):
                return band
        raise AssertionError(f"{self.key}: no band for {recorded}")  # excluded by the load-time check


@dataclass(frozen=True)
class Chart:
    source: str
    version: str
    parameters: dict[str, ParameterChart]
    medium_aggregate: int
    high_aggregate: int
    red_score: int
    responses: dict[str, dict[str, str]]


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _parameter(key: str, raw: dict[str, Any]) -> ParameterChart:
    resolution = Decimal(str(raw["resolution"]))
    bands = tuple(Band(_decimal(b.get("min")), _decimal(b.get("max")), int(b["score"]), b.get("name"))
                  for b in raw["bands"])
    if bands[0].low is not None or bands[-1].high is not None:
        raise ValueError(f"{key}: the first band must be open below and the last open above")
    for before, after in zip(bands, bands[1:], strict=False):
        if before.high is None or after.low is None or after.low != before.high + resolution:
            raise ValueError(f"{key}: bands {before.label} and {after.label} are not contiguous at {resolution}")
    if any(not 0 <= b.score <= 3 for b in bands):
        raise ValueError(f"{key}: scores must be 0..3")
    return ParameterChart(key, str(raw["label"]), str(raw["metric"]), str(raw["unit"]), resolution, bands)


def parse_chart(text: str) -> Chart:
    raw = tomllib.loads(text)
    params = {key: _parameter(key, value) for key, value in raw["parameters"].items()}
    risk = raw["risk"]
    return Chart(source=str(raw["source"]), version=str(raw["version"]), parameters=params,
                 medium_aggregate=int(risk["medium_aggregate"]), high_aggregate=int(risk["high_aggregate"]),
                 red_score=int(risk["red_score"]),
                 responses={k: {kk: str(vv) for kk, vv in v.items()} for k, v in raw["response"].items()})


@lru_cache(maxsize=1)
def chart() -> Chart:
    """The RCP 2017 chart from the package data file."""
    return parse_chart(news2_chart_text())


def _measured(low: float, high: float) -> Any:
    """A measured parameter (default None: not measured) and the range a real measurement lies in (inclusive,
    in the parameter's unit); :func:`score` refuses a value outside it."""
    return field(default=None, metadata={"plausible": (low, high)})


@dataclass(frozen=True)
class VitalSigns:
    """One observation set. ``None``: not measured (or too old). Units are the stream's canonical ones:
    /min, %, mm[Hg], Cel; ``supplemental_oxygen`` True on oxygen; ``consciousness`` ACVPU 0..4."""

    respiratory_rate: float | None = _measured(0, 120)
    spo2: float | None = _measured(0, 100)
    supplemental_oxygen: bool | None = None
    systolic_bp: float | None = _measured(0, 400)
    heart_rate: float | None = _measured(0, 400)
    consciousness: int | None = None
    temperature: float | None = _measured(20, 46)


#: Parameter -> (low, high) of a real measurement, as :class:`VitalSigns` declares them (checked in this order).
_PLAUSIBLE: Final[dict[str, tuple[float, float]]] = {
    f.name: f.metadata["plausible"] for f in fields(VitalSigns) if "plausible" in f.metadata}


@dataclass(frozen=True)
class SubScore:
    parameter: str
    label: str
    value: float
    recorded: str  # as the chart records it, e.g. "35.1"
    band: str
    score: int


@dataclass(frozen=True)
class News2:
    aggregate: int
    risk: str  # low | low-medium | medium | high
    red_score: bool  # a 3 in any single parameter
    sub_scores: tuple[SubScore, ...]
    missing: tuple[str, ...]
    spo2_scale: int
    monitoring: str
    response: str
    source: str = field(default="", repr=False)
    missing_labels: tuple[str, ...] = ()  # the chart's names of ``missing`` ("Air or oxygen?"), for messages

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def triggered(self) -> bool:
        """At or above the first escalation trigger: a single red score, or aggregate >= 5."""
        return self.risk != "low"


def _check(name: str, value: float | None, low: float, high: float) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or value != value or not low <= float(value) <= high:
        raise News2InputError(name, f"must be a number in {low}..{high}, got {value!r}")


def _validate(v: VitalSigns, spo2_scale: int) -> None:
    if spo2_scale not in (1, 2):
        raise News2InputError("spo2_scale", f"must be 1 or 2, got {spo2_scale!r}")
    for name, (low, high) in _PLAUSIBLE.items():
        _check(name, getattr(v, name), low, high)
    if v.consciousness is not None and v.consciousness not in (0, 1, 2, 3, 4):
        raise News2InputError("consciousness", f"must be ACVPU 0..4, got {v.consciousness!r}")


def score(vitals: VitalSigns, spo2_scale: int = 1) -> News2:
    """The NEWS2 of one observation set (see the module docstring for incomplete sets)."""
    _validate(vitals, spo2_scale)
    c = chart()
    on_oxygen = bool(vitals.supplemental_oxygen)
    spo2_key = "spo2_scale1" if spo2_scale == 1 else ("spo2_scale2_oxygen" if on_oxygen else "spo2_scale2_air")
    values: dict[str, float | None] = {
        "respiratory_rate": vitals.respiratory_rate,
        spo2_key: vitals.spo2,
        "supplemental_oxygen": None if vitals.supplemental_oxygen is None else float(vitals.supplemental_oxygen),
        "systolic_bp": vitals.systolic_bp,
        "heart_rate": vitals.heart_rate,
        "consciousness": None if vitals.consciousness is None else float(vitals.consciousness),
        "temperature": vitals.temperature,
    }
    subs: list[SubScore] = []
    missing: list[str] = []
    labels: list[str] = []
    for key, value in values.items():
        name = "spo2" if key.startswith("spo2") else key
        if value is None:
            missing.append(name)
            labels.append("SpO2" if name == "spo2" else c.parameters[key].label)
            continue
        param = c.parameters[key]
        band = param.band(value)
        subs.append(SubScore(name, param.label, float(value), str(param.record(value)), band.label, band.score))
    aggregate = sum(s.score for s in subs)
    red = any(s.score >= c.red_score for s in subs)
    risk = news2_band(aggregate, red).name  # the one mapping (vocab.news2)
    response = c.responses["zero" if risk == "low" and aggregate == 0 else risk]
    return News2(aggregate=aggregate, risk=risk, red_score=red, sub_scores=tuple(subs), missing=tuple(missing),
                 missing_labels=tuple(labels),
                 spo2_scale=spo2_scale, monitoring=response["monitoring"], response=response["response"],
                 source=c.source)


@dataclass(frozen=True)
class ObservationSet:
    """The observation set used for a score: the vitals and the time each parameter was measured."""

    at: datetime
    vitals: VitalSigns
    times: dict[str, datetime]  # parameter -> time of the value used


def observation_set(latest: dict[str, tuple[datetime, float]], *, at: datetime | None = None,
                    window: timedelta = DEFAULT_WINDOW) -> ObservationSet | None:
    """The set scored at ``at`` (default: the newest time in ``latest``) from the latest value of each
    stream metric (``latest[metric] = (time, value)``): parameters measured after ``at`` or more than
    ``window`` before it are left out. None when there is no NEWS2 parameter at all."""
    relevant = {metric: tv for metric, tv in latest.items() if metric in NEWS2_METRICS}
    if not relevant:
        return None
    when = at or max(t for t, _v in relevant.values())
    chosen: dict[str, float] = {}
    times: dict[str, datetime] = {}
    for parameter, metric in METRIC_OF.items():
        found = relevant.get(metric)
        if found is None or found[0] > when or when - found[0] > window:
            continue
        chosen[parameter], times[parameter] = found[1], found[0]
    oxygen = chosen.get("supplemental_oxygen")
    consciousness = chosen.get("consciousness")
    vitals = VitalSigns(
        respiratory_rate=chosen.get("respiratory_rate"), spo2=chosen.get("spo2"),
        supplemental_oxygen=None if oxygen is None else oxygen >= 0.5,
        systolic_bp=chosen.get("systolic_bp"), heart_rate=chosen.get("heart_rate"),
        consciousness=None if consciousness is None else int(round(consciousness)),
        temperature=chosen.get("temperature"),
    )
    return ObservationSet(at=when, vitals=vitals, times=times)


def as_dict(result: News2) -> dict[str, Any]:
    """JSON-ready form (alert details, API)."""
    return {
        "aggregate": result.aggregate, "risk": result.risk, "label": news2_bands()[result.risk].label,
        "red_score": result.red_score,
        "complete": result.complete, "missing": list(result.missing), "spo2_scale": result.spo2_scale,
        "monitoring": result.monitoring, "response": result.response,
        "sub_scores": [{"parameter": s.parameter, "label": s.label, "value": s.value, "recorded": s.recorded,
                        "band": s.band, "score": s.score} for s in result.sub_scores],
    }
