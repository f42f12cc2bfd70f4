"""Payload parsers for device data, one function per format, auto-detected by :func:`parse_payload`.

Formats:

* **JSON samples** (:func:`parse_samples`): an array of ``{"metric", "time", "value", "unit", "device"?,
  "id"?}`` objects, or one such object. ``time`` is ISO 8601 *with* a timezone (``Z`` or ``+hh:mm``).
* **FHIR** (:func:`parse_fhir`): a Bundle of Observations, or one Observation, coded with LOINC
  (vital signs, CGM glucose per the HL7 CGM IG, steps, sleep); blood-pressure panels (85354-9) by their
  components. Time from ``effectiveDateTime`` / ``effectiveInstant`` / the end of ``effectivePeriod``.
* **Open mHealth / IEEE 1752.1** (:func:`parse_omh`): data points ``{"header", "body"}`` (one or an
  array), with ``effective_time_frame`` a ``date_time`` or a ``time_interval`` (the sample time is its end).

Every problem is per sample: a :class:`Problem` with the JSON path of the wrong field (``[3].value``,
``entry[2].resource.valueQuantity.unit``) and a reason code (``malformed``, ``missing``, ``bad-time``,
``naive-time``, ``bad-value``, ``unknown-metric``, ``unit``, ``unsupported``, ``status``). Units and ranges
are checked later, by the pipeline (:func:`medtwin.stream.metrics.normalise`), with the paths a
:class:`Reading` carries. A payload that is not one of these shapes at all raises :class:`PayloadError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from medtwin.stream import metrics
from medtwin.vocab import CANONICAL_UNITS, SLEEP_STAGE
from medtwin.vocab.systems import LOINC, UCUM

__all__ = ["FieldError", "ParseResult", "PayloadError", "Problem", "Reading", "decode", "detect_format", "parse_fhir",
           "parse_omh", "parse_payload", "parse_samples", "parse_time"]

UCUM_SYSTEM = UCUM
BP_PANELS = frozenset({"85354-9", "55284-4", "35094-2"})
_SKIP_STATUS = frozenset({"entered-in-error", "cancelled"})
_MAX_ID = 200


class PayloadError(ValueError):
    """The payload as a whole is unreadable (not JSON, not a known shape)."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field, self.reason, self.detail = field, reason, detail


@dataclass(frozen=True, slots=True)
class Reading:
    """A parsed sample before unit normalisation: ``value`` in the device's ``unit``.

    ``index`` is the position of the item in the payload and ``path`` its JSON path; ``fields`` maps
    ``metric``/``value``/``unit``/``time`` to the full path of that part when it is not ``path.<name>``
    (FHIR and Open mHealth). ``client_id`` is the sender's id for the sample, if any (idempotency).
    """

    metric: str
    time: datetime  # timezone-aware, UTC
    value: float
    unit: str
    device: str | None = None
    client_id: str | None = None
    index: int = 0
    path: str = ""
    fields: Mapping[str, str] | None = None
    raw: Any = None  # the payload item, kept for quarantine
    subject: str | None = None  # FHIR Observation.subject reference id, if any

    def field_path(self, name: str) -> str:
        if self.fields is not None and name in self.fields:
            return self.fields[name]
        return f"{self.path}.{name}" if self.path else name


@dataclass(frozen=True, slots=True)
class Problem:
    """A sample that could not be read: where (``index``, ``field`` as a JSON path) and why (``reason``)."""

    index: int | None
    field: str
    reason: str
    detail: str
    raw: Any = None
    metric: str | None = None
    time: datetime | None = None
    device: str | None = None


@dataclass
class ParseResult:
    format: str  # samples | fhir | omh
    readings: list[Reading]
    problems: list[Problem]

    @property
    def count(self) -> int:
        return len(self.readings) + len(self.problems)


class FieldError(ValueError):
    """One wrong field of one sample: ``field`` is its JSON path, ``reason`` the code."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.field, self.reason, self.detail = field, reason, detail


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def decode(payload: bytes | bytearray | str) -> Any:
    """JSON bytes to Python values; :class:`PayloadError` (``$``, ``malformed``) when not JSON."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("$", "malformed", f"the body is not JSON ({exc})") from None


_MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(text: Any, field: str) -> datetime:
    """An ISO 8601 date-time with a timezone, as UTC. Naive times are refused (``naive-time``)."""
    if not isinstance(text, str):
        raise FieldError(field, "bad-time" if text is not None else "missing",
                         "time must be an ISO 8601 date-time string with a timezone, e.g. 2024-05-01T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise FieldError(field, "bad-time", f"not an ISO 8601 date-time: {text[:64]!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise FieldError(field, "naive-time", f"time {text[:64]!r} has no timezone (add Z or an offset like +01:00)")
    if len(text) < 16 or text[10] not in "Tt ":
        raise FieldError(field, "bad-time", f"time {text[:64]!r} must include the time of day")
    if parsed.tzinfo is not UTC:
        parsed = parsed.astimezone(UTC)
    if parsed < _MIN_TIME:
        raise FieldError(field, "bad-time", f"time {text[:64]!r} is before 1970")
    return parsed


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(field, "missing" if value is None else "bad-value",
                         f"value must be a number, got {type(value).__name__}" if value is not None else "value is required")
    number = float(value)
    if not math.isfinite(number):
        raise FieldError(field, "bad-value", "value must be finite")
    return number


def _text(value: Any, field: str, *, required: bool, limit: int = 128) -> str | None:
    if value is None:
        if required:
            raise FieldError(field, "missing", f"{field.rsplit('.', 1)[-1]} is required")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise FieldError(field, "malformed", "must be a non-empty string")
    if len(value) > limit:
        raise FieldError(field, "malformed", f"longer than {limit} characters")
    return value


# ----------------------------------------------------------------------------------------------------
# JSON samples


_KNOWN_METRICS = frozenset(CANONICAL_UNITS)


def _sample(item: Any, index: int, path: str) -> Reading | Problem:
    """One JSON sample. The common well-formed case (UTC time, plain types) is checked inline; anything
    else goes through :func:`_sample_checked`, which names the wrong field."""
    if type(item) is dict:
        metric, text, value, unit = item.get("metric"), item.get("time"), item.get("value"), item.get("unit")
        device, cid = item.get("device"), item.get("id")
        if (type(metric) is str and metric in _KNOWN_METRICS and type(text) is str and len(text) >= 16
                and text[10] in "Tt " and (type(value) is float or type(value) is int) and type(unit) is str
                and 0 < len(unit) <= 32 and not unit.isspace()
                and (device is None or (type(device) is str and 0 < len(device) <= 128 and not device.isspace()))
                and (cid is None or (type(cid) is str and 0 < len(cid) <= _MAX_ID and not cid.isspace()))):
            try:
                time = datetime.fromisoformat(text)
            except ValueError:
                time = None
            if time is not None and time.tzinfo is UTC and time >= _MIN_TIME and math.isfinite(value):
                return Reading(metric, time, float(value), unit, device, cid, index, path, None, item)
    return _sample_checked(item, index, path)


def _sample_checked(item: Any, index: int, path: str) -> Reading | Problem:
    if not isinstance(item, dict):
        return Problem(index, path or "$", "malformed", "a sample must be a JSON object with metric, time, "
                       "value and unit", raw=item)
    metric = item.get("metric")
    device = item.get("device")
    try:
        if not isinstance(metric, str) or not metric:
            raise FieldError(_join(path, "metric"), "missing" if metric is None else "malformed",
                             "metric must be a name such as glucose, heart_rate")
        if metric not in metrics.registry():
            raise FieldError(_join(path, "metric"), "unknown-metric", f"unknown metric {metric[:64]!r}")
        time = parse_time(item.get("time"), _join(path, "time"))
        value = _number(item.get("value"), _join(path, "value"))
        unit = _text(item.get("unit"), _join(path, "unit"), required=True, limit=32)
        dev = _text(device, _join(path, "device"), required=False)
        client_id = _text(item.get("id"), _join(path, "id"), required=False, limit=_MAX_ID)
    except FieldError as bad:
        return Problem(index, bad.field, bad.reason, bad.detail, raw=item,
                       metric=metric if isinstance(metric, str) else None,
                       device=device if isinstance(device, str) else None)
    assert unit is not None
    return Reading(metric, time, value, unit, dev, client_id, index, path, None, item)


def parse_samples(data: Any) -> ParseResult:
    """JSON samples: an array of sample objects, or one object."""
    readings: list[Reading] = []
    problems: list[Problem] = []
    if isinstance(data, dict):
        got = _sample(data, 0, "")
        (readings if isinstance(got, Reading) else problems).append(got)  # type: ignore[arg-type]
        return ParseResult("samples", readings, problems)
    if not isinstance(data, list):
        raise PayloadError("$", "malformed", "expected a JSON array of samples or one sample object")
    for i, item in enumerate(data):
        got = _sample(item, i, f"[{i}]")
        if type(got) is Reading:
            readings.append(got)
        else:
            problems.append(got)  # type: ignore[arg-type]
    return ParseResult("samples", readings, problems)


# ----------------------------------------------------------------------------------------------------
# FHIR


def _loinc_codes(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return []
    return [c["code"] for c in codings if isinstance(c, dict) and c.get("system") == LOINC
            and isinstance(c.get("code"), str)]


def _quantity(holder: dict[str, Any], path: str) -> tuple[float, str, dict[str, str]]:
    """value and unit of ``holder.valueQuantity`` (UCUM ``code`` preferred over the display ``unit``)."""
    qpath = _join(path, "valueQuantity")
    quantity = holder.get("valueQuantity")
    if not isinstance(quantity, dict):
        if "valueInteger" in holder:
            raise FieldError(_join(path, "valueInteger"), "unit", "valueInteger carries no unit; use valueQuantity")
        raise FieldError(qpath, "missing", "valueQuantity is required"
                         + (" (dataAbsentReason given)" if "dataAbsentReason" in holder else ""))
    value = _number(quantity.get("value"), _join(qpath, "value"))
    code = quantity.get("code")
    if isinstance(code, str) and code and quantity.get("system") in (UCUM_SYSTEM, None):
        unit, unit_path = code, _join(qpath, "code")
    else:
        unit_text = _text(quantity.get("unit"), _join(qpath, "unit"), required=True, limit=32)
        assert unit_text is not None
        unit, unit_path = unit_text, _join(qpath, "unit")
    return value, unit, {"value": _join(qpath, "value"), "unit": unit_path}


def _fhir_time(resource: dict[str, Any], path: str, *, interval: bool = False) -> tuple[datetime, datetime | None]:
    """(time, start): the effective time, or the end of effectivePeriod (start when given)."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in resource:
            return parse_time(resource[key], _join(path, key)), None
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        ppath = _join(path, "effectivePeriod")
        start = parse_time(period["start"], _join(ppath, "start")) if "start" in period else None
        if "end" in period:
            return parse_time(period["end"], _join(ppath, "end")), start
        if start is not None and not interval:
            return start, start
        raise FieldError(_join(ppath, "end"), "missing", "effectivePeriod needs an end")
    raise FieldError(_join(path, "effectiveDateTime"), "missing", "effective[x] is required (the sample time)")


def _reference_id(reference: Any) -> str | None:
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        ref = reference["reference"]
        if ref.startswith("Patient/"):
            return ref.split("/", 2)[1]
    return None


def _device_name(resource: dict[str, Any]) -> str | None:
    device = resource.get("device")
    if isinstance(device, dict):
        for key in ("display", "reference"):
            if isinstance(device.get(key), str) and device[key]:
                return str(device[key])[:128]
        ident = device.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            return str(ident["value"])[:128]
    return None


def _observation(resource: Any, index: int, path: str, out: ParseResult) -> None:
    if not isinstance(resource, dict):
        out.problems.append(Problem(index, path or "$", "malformed", "expected a FHIR resource object", raw=resource))
        return
    device = _device_name(resource)
    try:
        rtype = resource.get("resourceType")
        if rtype != "Observation":
            raise FieldError(_join(path, "resourceType"), "unsupported",
                             f"only Observation resources carry samples, not {str(rtype)[:40]!r}")
        status = resource.get("status")
        if status in _SKIP_STATUS:
            raise FieldError(_join(path, "status"), "status", f"an Observation with status {status!r} is not a sample")
        rid = resource.get("id")
        client_id = rid if isinstance(rid, str) and 0 < len(rid) <= _MAX_ID else None
        subject = _reference_id(resource.get("subject"))
        codes = _loinc_codes(resource.get("code"))
        code_path = _join(path, "code")
        if any(c in BP_PANELS for c in codes) or (not codes and "component" in resource):
            components = resource.get("component")
            if not isinstance(components, list) or not components:
                raise FieldError(_join(path, "component"), "missing", "a blood-pressure panel needs its components")
            time, _ = _fhir_time(resource, path)
            for j, component in enumerate(components):
                cpath = _join(path, f"component[{j}]")
                _component(component, index, cpath, time, device, client_id, subject, resource, out)
            return
        metric = next((m for m in map(metrics.by_loinc, codes) if m is not None), None)
        if metric is None:
            raise FieldError(code_path, "unknown-metric" if codes else "missing",
                             f"no supported LOINC code (got {', '.join(codes)[:80] or 'none'})")
        if metric == SLEEP_STAGE:
            time, start = _fhir_time(resource, path, interval=True)
            if start is None:
                raise FieldError(_join(path, "effectivePeriod.start"), "missing",
                                 "a sleep observation needs effectivePeriod start and end")
            _sleep(start, time, device, client_id, index, path, resource, out, subject)
            return
        time, _ = _fhir_time(resource, path)
        value, unit, fields = _quantity(resource, path)
        fields = {**fields, "metric": code_path, "time": _join(path, "effective")}
        out.readings.append(Reading(metric, time, value, unit, device, client_id, index, path, fields, resource,
                                    subject))
    except FieldError as bad:
        out.problems.append(Problem(index, bad.field, bad.reason, bad.detail, raw=resource, device=device))


def _component(component: Any, index: int, cpath: str, time: datetime, device: str | None, obs_id: str | None,
               subject: str | None, resource: dict[str, Any], out: ParseResult) -> None:
    try:
        if not isinstance(component, dict):
            raise FieldError(cpath, "malformed", "a component must be an object")
        codes = _loinc_codes(component.get("code"))
        metric = next((m for m in map(metrics.by_loinc, codes) if m is not None), None)
        if metric is None:
            raise FieldError(_join(cpath, "code"), "unknown-metric",
                             f"no supported LOINC code (got {', '.join(codes)[:80] or 'none'})")
        value, unit, fields = _quantity(component, cpath)
        fields = {**fields, "metric": _join(cpath, "code")}
        client_id = f"{obs_id}/{metric}" if obs_id else None
        out.readings.append(Reading(metric, time, value, unit, device, client_id, index, cpath, fields, resource,
                                    subject))
    except FieldError as bad:
        out.problems.append(Problem(index, bad.field, bad.reason, bad.detail, raw=resource, device=device))


def _sleep(start: datetime, end: datetime, device: str | None, client_id: str | None, index: int, path: str,
           raw: Any, out: ParseResult, subject: str | None = None) -> None:
    """A sleep episode becomes two stage changes: asleep (stage not reported: 1, light) at its start,
    awake (0) at its end."""
    if end < start:
        raise FieldError(_join(path, "effective"), "bad-time", "the sleep episode ends before it starts")
    for time, stage, tag in ((start, 1.0, "start"), (end, 0.0, "end")):
        out.readings.append(Reading(SLEEP_STAGE, time, stage, "{stage}", device,
                                    f"{client_id}/{tag}" if client_id else None, index, path,
                                    {"value": _join(path, "value"), "unit": _join(path, "value")}, raw, subject))


def parse_fhir(data: Any) -> ParseResult:
    """A FHIR Bundle of Observations, one Observation, or an array of Observations."""
    out = ParseResult("fhir", [], [])
    if isinstance(data, list):
        for i, resource in enumerate(data):
            _observation(resource, i, f"[{i}]", out)
        return out
    if not isinstance(data, dict):
        raise PayloadError("$", "malformed", "expected a FHIR Bundle or Observation object")
    if data.get("resourceType") == "Bundle":
        entries = data.get("entry", [])
        if not isinstance(entries, list):
            raise PayloadError("entry", "malformed", "Bundle.entry must be an array")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "resource" not in entry:
                out.problems.append(Problem(i, f"entry[{i}].resource", "missing", "a Bundle entry needs a resource",
                                            raw=entry))
                continue
            _observation(entry["resource"], i, f"entry[{i}].resource", out)
        return out
    _observation(data, 0, "", out)
    return out


# ----------------------------------------------------------------------------------------------------
# Open mHealth / IEEE 1752.1

# schema name -> (body property, metric), in body order; blood pressure has two.
_OMH_BODY: dict[str, tuple[tuple[str, str], ...]] = {
    "heart-rate": (("heart_rate", "heart_rate"),),
    "blood-pressure": (("systolic_blood_pressure", "systolic_bp"), ("diastolic_blood_pressure", "diastolic_bp")),
    "blood-glucose": (("blood_glucose", "glucose"),),
    "oxygen-saturation": (("oxygen_saturation", "spo2"),),
    "respiratory-rate": (("respiratory_rate", "respiratory_rate"),),
    "body-temperature": (("body_temperature", "body_temperature"),),
    "step-count": (("step_count", "steps"),),
}
_OMH_SLEEP = frozenset({"sleep-episode", "sleep-duration"})
_BODY_KEY_SCHEMA = {prop: schema for schema, pairs in _OMH_BODY.items() for prop, _ in pairs}
_BODY_KEY_SCHEMA["sleep_duration"] = "sleep-duration"
_DURATION_UNITS = {"ms": 0.001, "sec": 1.0, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "wk": 604800.0}


def _omh_duration(value: Any, field: str) -> timedelta:
    if not isinstance(value, dict):
        raise FieldError(field, "malformed", "duration must be {value, unit}")
    number = _number(value.get("value"), _join(field, "value"))
    factor = _DURATION_UNITS.get(value.get("unit"))  # type: ignore[arg-type]
    if factor is None:
        raise FieldError(_join(field, "unit"), "unit", f"duration unit must be one of {', '.join(_DURATION_UNITS)}")
    return timedelta(seconds=number * factor)


def _omh_time(body: dict[str, Any], bpath: str) -> tuple[datetime, datetime | None]:
    """(time, start) of ``effective_time_frame``: the date_time, or the interval's end (and start)."""
    fpath = _join(bpath, "effective_time_frame")
    frame = body.get("effective_time_frame")
    if not isinstance(frame, dict):
        raise FieldError(fpath, "missing", "effective_time_frame is required")
    if "date_time" in frame:
        return parse_time(frame["date_time"], _join(fpath, "date_time")), None
    interval = frame.get("time_interval")
    ipath = _join(fpath, "time_interval")
    if not isinstance(interval, dict):
        raise FieldError(fpath, "missing", "effective_time_frame needs date_time or time_interval")
    start = parse_time(interval["start_date_time"], _join(ipath, "start_date_time")) \
        if "start_date_time" in interval else None
    end = parse_time(interval["end_date_time"], _join(ipath, "end_date_time")) if "end_date_time" in interval else None
    if "duration" in interval:
        length = _omh_duration(interval["duration"], _join(ipath, "duration"))
        if end is None and start is not None:
            end = start + length
        elif start is None and end is not None:
            start = end - length
    if end is None or start is None:
        raise FieldError(ipath, "missing", "time_interval needs two of start_date_time, end_date_time, duration")
    if end < start:
        raise FieldError(_join(ipath, "end_date_time"), "bad-time", "the interval ends before it starts")
    return end, start


def _omh_point(point: Any, index: int, path: str, out: ParseResult) -> None:
    if not isinstance(point, dict):
        out.problems.append(Problem(index, path or "$", "malformed", "a data point must be an object", raw=point))
        return
    header = point.get("header") if isinstance(point.get("header"), dict) else {}
    assert isinstance(header, dict)
    provenance = header.get("acquisition_provenance")
    device = None
    if isinstance(provenance, dict) and isinstance(provenance.get("source_name"), str):
        device = provenance["source_name"][:128] or None
    try:
        body = point.get("body")
        bpath = _join(path, "body")
        if not isinstance(body, dict):
            raise FieldError(bpath, "missing" if body is None else "malformed", "a data point needs a body object")
        schema_id = header.get("schema_id")
        schema = schema_id.get("name") if isinstance(schema_id, dict) else None
        if schema is None:
            schema = next((_BODY_KEY_SCHEMA[k] for k in body if k in _BODY_KEY_SCHEMA), None)
        if schema is None:
            raise FieldError(_join(path, "header.schema_id.name"), "missing", "the schema is not named and the body "
                             "has no known measure")
        hid = header.get("id")
        client_id = hid if isinstance(hid, str) and 0 < len(hid) <= _MAX_ID else None
        if schema in _OMH_SLEEP:
            end, start = _omh_time(body, bpath)
            if start is None:
                raise FieldError(_join(bpath, "effective_time_frame.time_interval"), "missing",
                                 "a sleep episode needs a time_interval")
            _sleep(start, end, device, client_id, index, bpath, point, out)
            return
        pairs = _OMH_BODY.get(schema)
        if pairs is None:
            raise FieldError(_join(path, "header.schema_id.name"), "unknown-metric", f"unsupported schema {str(schema)[:64]!r}")
        time, _ = _omh_time(body, bpath)
        for prop, metric in pairs:
            mpath = _join(bpath, prop)
            measure = body.get(prop)
            if metric == "steps" and isinstance(measure, int | float) and not isinstance(measure, bool):
                value, unit, fields = float(measure), "{steps}", {"value": mpath, "unit": mpath}
            elif isinstance(measure, dict):
                value = _number(measure.get("value"), _join(mpath, "value"))
                unit_text = _text(measure.get("unit"), _join(mpath, "unit"), required=True, limit=32)
                assert unit_text is not None
                value, unit, fields = value, unit_text, {"value": _join(mpath, "value"), "unit": _join(mpath, "unit")}
            else:
                raise FieldError(mpath, "missing" if measure is None else "malformed", f"{prop} must be {{value, unit}}")
            cid = (f"{client_id}/{metric}" if len(pairs) > 1 else client_id) if client_id else None
            out.readings.append(Reading(metric, time, value, unit, device, cid, index, mpath,
                                        {**fields, "metric": _join(path, "header.schema_id.name"),
                                         "time": _join(bpath, "effective_time_frame")}, point))
    except FieldError as bad:
        out.problems.append(Problem(index, bad.field, bad.reason, bad.detail, raw=point, device=device))


def parse_omh(data: Any) -> ParseResult:
    """Open mHealth / IEEE 1752.1 data points: one ``{header, body}`` object or an array of them."""
    out = ParseResult("omh", [], [])
    if isinstance(data, dict):
        _omh_point(data, 0, "", out)
        return out
    if not isinstance(data, list):
        raise PayloadError("$", "malformed", "expected an Open mHealth data point or an array of them")
    for i, point in enumerate(data):
        _omh_point(point, i, f"[{i}]", out)
    return out


# ----------------------------------------------------------------------------------------------------
# Detection


def _kind(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    if "metric" in item:
        return "samples"
    if "resourceType" in item:
        return "fhir"
    if "body" in item or "header" in item:
        return "omh"
    return None


def detect_format(data: Any) -> str:
    """``samples``, ``fhir`` or ``omh``; :class:`PayloadError` when the shape is none of them."""
    if isinstance(data, dict):
        kind = _kind(data)
        if kind is None:
            raise PayloadError("$", "malformed", "unrecognised object: expected a sample {metric, time, value, "
                               "unit}, a FHIR Bundle/Observation or an Open mHealth data point {header, body}")
        return kind
    if isinstance(data, list):
        for item in data:
            kind = _kind(item)
            if kind is not None:
                return kind
        return "samples"  # empty, or nothing recognisable: every item is reported as malformed
    raise PayloadError("$", "malformed", "expected a JSON array or object, got "
                       + ("a string" if isinstance(data, str) else type(data).__name__))


_PARSERS = {"samples": parse_samples, "fhir": parse_fhir, "omh": parse_omh}


def parse_payload(data: Any) -> ParseResult:
    """Detect the format of decoded JSON and parse it (bytes: use :func:`decode` first)."""
    return _PARSERS[detect_format(data)](data)
