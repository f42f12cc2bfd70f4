"""One chart per quantity of a patient-page panel, whatever code and unit each reading was recorded under.

A quantity (``model.panels.QUANTITIES``: creatinine under LOINC 2160-0 in mg/dL and 14682-9 in umol/L; eGFR under
its three codes) is drawn in one display unit: the unit of the patient's newest reading, else the quantity's
default (mg/dL). Values are converted here, by the domain's factor (``vocab.renal``: 88.4 umol/L per mg/dL), so
the dashboard and the report never re-type it. Every point keeps its original value, unit and code. "latest" is
the newest point over every code (the caption and the tile quote the same one).

A calculated series (``model.panels.DERIVED``: eGFR by CKD-EPI 2021) is a second series of its quantity's chart,
``kind="calculated"``: calculated for each creatinine reading on a day (in the patient's time zone) without a
reported eGFR, never mixed into the reported line. A reading whose unit is not the quantity's is not drawn and
is listed with the reason; a creatinine the equation cannot use is listed as "not callable" with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from medtwin.clock import as_utc
from medtwin.model.panels import DerivedSeries, Quantity
from medtwin.store.records import RecordRepository
from medtwin.vocab.display import display_unit
from medtwin.vocab.renal import CreatinineReading, EgfrSeries, egfr_from_creatinine

__all__ = ["NOT_RESULTS", "ChartPoint", "ChartSeries", "QuantityChart", "Reading", "convert", "quantity_charts",
           "read_observations"]

#: statuses of a reading that is not a result (neither drawn nor used in a calculation)
NOT_RESULTS = frozenset({"entered-in-error", "cancelled", "registered"})


class Reading(BaseModel):
    """One observation as recorded."""

    time: datetime
    value: float
    unit: str | None
    code: str


class ChartPoint(BaseModel):
    time: datetime
    value: float = Field(description="in the chart's unit")
    kind: Literal["reported", "calculated"]
    original_value: float = Field(description="as recorded (calculated: the creatinine it came from)")
    original_unit: str | None = Field(description="UCUM unit as recorded")
    code: str = Field(description="LOINC code of the observation (calculated: of the creatinine)")
    basis: str | None = Field(default=None, description="calculated: the reading, age and sex it came from")


class ChartSeries(BaseModel):
    name: str
    label: str = Field(description="'reported' or the calculation's label ('eGFR, calculated (CKD-EPI 2021)')")
    kind: Literal["reported", "calculated"]
    method: str | None = None
    source: str | None = Field(default=None, description="the method's citation")
    points: list[ChartPoint] = Field(default_factory=list)


class QuantityChart(BaseModel):
    key: str
    label: str
    unit: str = Field(description="UCUM unit every value is drawn in")
    unit_basis: Literal["newest reading", "default"]
    codes: list[str]
    series: list[ChartSeries]
    latest: ChartPoint | None = Field(description="the newest point over every code and series")
    reference: list[dict[str, Any]] = Field(default_factory=list, description="{value, label} lines (KDIGO G)")
    axis: list[float] | None = Field(default=None, description="values the value axis always spans (chart unit)")
    calculated_by: list[str] = Field(default_factory=list, description="labels of what the panel may calculate "
                                     "into this chart (so a value says 'reported' or 'calculated')")
    category: dict[str, str] | None = Field(default=None, description="{label, source}: the latest value's category "
                                            "(KDIGO GFR category of the newest eGFR)")
    not_drawn: list[dict[str, Any]] = Field(default_factory=list, description="{time, value, unit, code, reason}")
    not_callable: list[dict[str, Any]] = Field(default_factory=list,
                                               description="{time, creatinine, creatinine_code, reason}")


def _category(quantity: Quantity, value: float) -> dict[str, str] | None:
    """The category (``Quantity.reference``: lower limits, when named) ``value`` falls in, or None."""
    if not quantity.reference_name:
        return None
    for limit, label in sorted(quantity.reference, reverse=True):
        if value >= limit:
            return {"label": f"{quantity.reference_name} {label}".strip(), "source": quantity.reference_source}
    return None


def _in_unit(quantity: Quantity, unit: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reference lines (in the default unit) in the chart's unit."""
    converted = [{**line, "value": convert(quantity, line["value"], quantity.unit, unit)} for line in lines]
    return [line for line in converted if line["value"] is not None]


def _axis(quantity: Quantity, unit: str) -> list[float] | None:
    if quantity.axis is None:
        return None
    ends = [convert(quantity, v, quantity.unit, unit) for v in quantity.axis]
    return [float(v) for v in ends if v is not None] or None


def read_observations(records: RecordRepository, patient_id: str, codes: Sequence[str]) -> list[Reading]:
    """Every result of ``codes`` (oldest first): a value and a time, not entered in error or cancelled."""
    found: list[Reading] = []
    for code in codes:
        _, rows = records.observations(patient_id, code=code, limit=1000)
        found += [Reading(time=as_utc(r["effective"]), value=r["value"], unit=r["unit"], code=code) for r in rows
                  if r["value"] is not None and r["effective"] is not None and r["status"] not in NOT_RESULTS]
    return sorted(found, key=lambda r: r.time)


def _factor(quantity: Quantity, unit: str | None) -> float | None:
    """How much of the quantity's default unit one ``unit`` is; None: not this quantity's unit."""
    if quantity.per_unit is None:
        return 1.0 if display_unit(unit) == display_unit(quantity.unit) else None
    try:
        return quantity.per_unit(unit)
    except ValueError:
        return None


def convert(quantity: Quantity, value: float, unit: str | None, to_unit: str) -> float | None:
    """``value`` in ``unit`` expressed in ``to_unit`` (both the quantity's units); None: a unit it cannot read."""
    factor, to = _factor(quantity, unit), _factor(quantity, to_unit)
    return None if factor is None or not to else value * factor / to


def _display_unit(quantity: Quantity, readings: Sequence[Reading]) -> tuple[str, Literal["newest reading", "default"]]:
    for reading in reversed(readings):
        if reading.unit and _factor(quantity, reading.unit) is not None:
            return reading.unit, "newest reading"
    return quantity.unit, "default"


def _reported(quantity: Quantity, readings: Sequence[Reading], unit: str, not_drawn: list[dict[str, Any]]
              ) -> ChartSeries:
    points = []
    for r in readings:
        value = convert(quantity, r.value, r.unit, unit)
        if value is None:
            not_drawn.append({"time": r.time.isoformat(), "value": r.value, "unit": r.unit, "code": r.code,
                              "reason": f"unit {r.unit!r} is not a unit of {quantity.label} "
                                        f"({display_unit(quantity.unit)})"})
            continue
        points.append(ChartPoint(time=r.time, value=value, kind="reported",
                                 original_value=r.value, original_unit=r.unit, code=r.code))
    return ChartSeries(name="reported", label="reported", kind="reported", points=points)


def _local_day(t: datetime, tz: ZoneInfo) -> date:
    return t.astimezone(tz).date()


def _calculated(spec: DerivedSeries, inputs: Sequence[Reading], reported: ChartSeries, tz: ZoneInfo,
                birth_date: date | None, sex: str | None) -> tuple[EgfrSeries, list[Reading]]:
    """The calculation over every input reading on a day without a reported value (of ``spec.unless``), and
    those readings (oldest first, as the calls)."""
    days = {_local_day(p.time, tz) for p in reported.points if p.code in spec.unless}
    todo = [r for r in inputs if _local_day(r.time, tz) not in days]
    series = egfr_from_creatinine([CreatinineReading(time=r.time, value=r.value, unit=r.unit, code=r.code)
                                   for r in todo], birth_date=birth_date, sex=sex)
    return series, todo


def _calculated_series(spec: DerivedSeries, series: EgfrSeries, inputs: Sequence[Reading], chart: QuantityChart
                       ) -> ChartSeries:
    points = []
    for c, r in zip(series.calls, inputs, strict=True):
        if c.egfr_ml_min_1_73m2 is None:
            chart.not_callable.append({"time": c.time.isoformat(), "creatinine": c.creatinine,
                                       "creatinine_code": c.creatinine_code, "reason": c.not_callable})
            continue
        points.append(ChartPoint(
            time=c.time, value=c.egfr_ml_min_1_73m2, kind="calculated", original_value=r.value, original_unit=r.unit,
            code=r.code, basis=f"from creatinine {c.creatinine} (LOINC {r.code}), age {c.age_years}, {c.sex}"))
    return ChartSeries(name=spec.name, label=spec.label, kind="calculated", method=series.method, source=series.source,
                       points=points)


def quantity_charts(records: RecordRepository, patient_id: str, quantities: Sequence[Quantity],
                    derived: Sequence[DerivedSeries], *, tz: ZoneInfo, birth_date: date | None, sex: str | None
                    ) -> list[QuantityChart]:
    """The charts of a panel's quantities (those with a point, a reading not drawn or a not-callable one): the
    calculated series and the readings it cannot use ("not callable", with the reason) are in their chart."""
    charts: list[QuantityChart] = []
    read: dict[tuple[str, ...], list[Reading]] = {}  # each code list read once (eGFR's input is the creatinine chart's)

    def observations(codes: Sequence[str]) -> list[Reading]:
        key = tuple(codes)
        if key not in read:
            read[key] = read_observations(records, patient_id, key)
        return read[key]

    for q in quantities:
        readings = observations(q.codes)
        unit, basis = _display_unit(q, readings)
        lines = _in_unit(q, unit, [{"value": v, "label": lab} for v, lab in q.reference])
        chart = QuantityChart(key=q.key, label=q.label, unit=unit, unit_basis=basis, codes=list(q.codes), series=[],
                              latest=None, reference=lines, axis=_axis(q, unit),
                              calculated_by=[d.label for d in derived if d.into == q.key])
        reported = _reported(q, readings, unit, chart.not_drawn)
        chart.series.append(reported)
        for spec in (d for d in derived if d.into == q.key):
            inputs = observations(spec.inputs)
            calc, used = _calculated(spec, inputs, reported, tz, birth_date, sex)
            if calc.calls:
                chart.series.append(_calculated_series(spec, calc, used, chart))
        points = [p for s in chart.series for p in s.points]
        chart.latest = max(points, key=lambda p: p.time) if points else None
        newest = convert(q, chart.latest.value, unit, q.unit) if chart.latest else None  # limits: default unit
        chart.category = _category(q, newest) if newest is not None else None
        if points or chart.not_callable or chart.not_drawn:
            charts.append(chart)
    return charts
