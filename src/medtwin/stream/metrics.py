"""The metric registry: canonical unit, accepted device units and their conversion, plausible range, and
the FHIR (LOINC) codes and Open mHealth / IEEE 1752.1 schema names that map to each metric.

The data is the vocabulary's ``vocab/data/metrics.toml`` (:mod:`medtwin.vocab.metrics`: names, labels, display
units), with a one-line source per range; this module adds the conversion rules. Conversions use
:mod:`medtwin.record.ucum`; every accepted unit converts linearly (``canonical = a * value + b``: ``b`` is
non-zero only for temperatures), so each (metric, unit) pair is resolved once and cached.

``normalise(metric, value, unit)`` is the one check every sample passes: it raises :class:`MetricError`
with a machine-readable ``reason`` (``unknown-metric``, ``unit``, ``bad-value``, ``out-of-range``) and the
``field`` (``metric``, ``unit``, ``value``) that is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

from medtwin.record import ucum
from medtwin.vocab.metrics import read_metrics_file

__all__ = ["MetricError", "MetricSpec", "by_loinc", "by_omh_schema", "normalise", "registry", "spec",
           "unit_factor"]


class MetricError(ValueError):
    """A sample that cannot be accepted: ``reason`` is machine-readable, ``field`` names the wrong part."""

    def __init__(self, reason: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.field, self.detail = reason, field, detail


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str  # canonical UCUM unit
    units: tuple[str, ...]  # further accepted UCUM units
    aliases: Mapping[str, str]  # non-UCUM spelling -> UCUM code
    min: float  # plausible range, canonical unit, inclusive
    max: float
    range_source: str
    integer: bool
    strict: bool  # only the listed units (else any commensurable UCUM unit)
    molar_mass_g_per_mol: float | None
    loinc: tuple[str, ...]
    omh: tuple[str, ...]

    def ucum_code(self, unit: str) -> str:
        """The UCUM code a device unit stands for (aliases resolved)."""
        return self.aliases.get(unit, unit)


@lru_cache(maxsize=1)
def registry() -> Mapping[str, MetricSpec]:
    """metric name -> spec, for every metric of the vocabulary."""
    out: dict[str, MetricSpec] = {}
    for name, row in read_metrics_file().items():
        unit = row["unit"]
        dimensionless = ucum.parse(unit).is_dimensionless or not any(ucum.parse(unit).dimension)
        out[name] = MetricSpec(
            name=name, unit=unit, units=tuple(row.get("units", ())), aliases=MappingProxyType(
                dict(row.get("aliases", {}))), min=float(row["min"]), max=float(row["max"]),
            range_source=row["range_source"], integer=bool(row.get("integer", False)),
            strict=bool(row.get("strict", False)) or dimensionless,
            molar_mass_g_per_mol=row.get("molar_mass"), loinc=tuple(row.get("loinc", ())),
            omh=tuple(row.get("omh", ())))
    return MappingProxyType(out)


def spec(metric: str) -> MetricSpec:
    """The spec of a metric; :class:`MetricError` (``unknown-metric``) if there is none."""
    found = registry().get(metric)
    if found is None:
        raise MetricError("unknown-metric", "metric", f"unknown metric {metric!r}; known: "
                          f"{', '.join(sorted(registry()))}")
    return found


@lru_cache(maxsize=1)
def _loinc_index() -> Mapping[str, str]:
    return MappingProxyType({code: s.name for s in registry().values() for code in s.loinc})


def by_loinc(code: str) -> str | None:
    """The metric a LOINC code maps to, or None."""
    return _loinc_index().get(code)


def by_omh_schema(name: str) -> tuple[str, ...]:
    """Metrics an Open mHealth schema maps to (blood-pressure: systolic and diastolic)."""
    return tuple(s.name for s in registry().values() if name in s.omh)


@lru_cache(maxsize=1024)
def unit_factor(metric: str, unit: str) -> tuple[float, float]:
    """``(a, b)`` with ``canonical = a * value + b`` for a device ``unit`` of ``metric``.

    Raises :class:`MetricError` with reason ``unknown-metric`` or ``unit``."""
    s = spec(metric)
    if not isinstance(unit, str) or not unit:
        raise MetricError("unit", "unit", f"{metric}: a unit is required ({s.unit})")
    code = s.ucum_code(unit)
    listed = code == s.unit or code in s.units
    if not listed:
        if s.strict:
            raise MetricError("unit", "unit", f"{metric}: unit {unit!r} is not accepted (use {s.unit}"
                              f"{', ' + ', '.join(s.units) if s.units else ''})")
        if not ucum.is_valid(code):
            raise MetricError("unit", "unit", f"{metric}: {unit!r} is not a UCUM unit (use {s.unit})")
    if code == s.unit:
        return 1.0, 0.0
    try:
        if ucum.is_commensurable(code, s.unit):  # exact: value * fs + os = canonical * fd + od
            src, dst = ucum.parse(code), ucum.parse(s.unit)
            return src.factor / dst.factor, (src.offset - dst.offset) / dst.factor
        one = ucum.convert(1.0, code, s.unit, molar_mass_g_per_mol=s.molar_mass_g_per_mol)  # via molar mass
    except (ucum.UcumError, ucum.IncommensurableUnitsError) as exc:
        raise MetricError("unit", "unit", f"{metric}: {unit!r} is not a unit of {metric} ({s.unit})") from exc
    return one, 0.0


def normalise(metric: str, value: float, unit: str) -> float:
    """``value`` in ``unit`` converted to the metric's canonical unit, checked against the plausible range.

    Raises :class:`MetricError` (``unknown-metric``, ``unit``, ``bad-value``, ``out-of-range``)."""
    a, b = unit_factor(metric, unit)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MetricError("bad-value", "value", f"{metric}: value must be a finite number, got {value!r}")
    canonical = a * value + b if (a != 1.0 or b != 0.0) else float(value)
    s = registry()[metric]
    tolerance = 1e-9 * max(1.0, abs(s.max))  # conversion round-off at a bound (113 [degF] is 45 Cel)
    if not s.min - tolerance <= canonical <= s.max + tolerance:
        raise MetricError("out-of-range", "value", f"{metric}: {value:g} {unit} is outside the plausible range "
                          f"{s.min:g}-{s.max:g} {s.unit}")
    if s.integer:
        rounded = round(canonical)
        if abs(canonical - rounded) > 1e-9:
            raise MetricError("bad-value", "value", f"{metric}: must be a whole number, got {value!r}")
        canonical = float(rounded)
    return canonical
