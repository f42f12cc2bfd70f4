"""Parsers: JSON samples, FHIR Observations (Bundle, single, BP components), Open mHealth / IEEE 1752.1;
format detection; per-sample problems with field paths; timezone handling. Hypothesis for round trips and
for arbitrary JSON (a parser answers with readings, problems or PayloadError, never anything else)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.stream.parse import (
    FieldError,
    ParseResult,
    PayloadError,
    Reading,
    decode,
    detect_format,
    parse_payload,
    parse_time,
)
from medtwin.vocab import CANONICAL_UNITS

T = "2024-05-01T08:00:00Z"


def _problems(result: ParseResult) -> set[tuple[int | None, str, str]]:
    return {(p.index, p.field, p.reason) for p in result.problems}


# ------------------------------------------------------------------------------------------ JSON samples

def test_json_array_and_single_object() -> None:
    result = parse_payload([{"metric": "heart_rate", "time": T, "value": 61, "unit": "bpm", "device": "w",
                             "id": 7}])
    assert result.format == "samples" and not result.problems
    r = result.readings[0]
    assert (r.metric, r.time, r.value, r.unit, r.device, r.client_id) == (
        "heart_rate", datetime(2024, 5, 1, 8, tzinfo=UTC), 61.0, "bpm", "w", "7")
    single = parse_payload({"metric": "glucose", "time": "2024-05-01T10:00:00+02:00", "value": 5.5,
                            "unit": "mmol/L"})
    assert single.readings[0].time == datetime(2024, 5, 1, 8, tzinfo=UTC)  # offset applied
    assert single.readings[0].field_path("value") == "value"


def test_json_problems_name_the_field() -> None:
    payload = [
        {"metric": "heart_rate", "time": T, "value": "61", "unit": "bpm"},
        {"metric": "heart_rate", "time": "2024-05-01T08:00:00", "value": 61, "unit": "bpm"},
        {"metric": "heart_rate", "time": "yesterday", "value": 61, "unit": "bpm"},
        {"metric": "heart_rate", "time": "2024-05-01", "value": 61, "unit": "bpm"},
        {"time": T, "value": 61, "unit": "bpm"},
        {"metric": "heart_rate", "time": T, "value": 61},
        {"metric": "heart_rate", "time": T, "value": True, "unit": "bpm"},
        {"metric": "heart_rate", "time": 1714550400, "value": 61, "unit": "bpm"},
        {"metric": "heart_rate", "time": T, "value": 61, "unit": "bpm", "device": ""},
        {"metric": "pulse", "time": T, "value": 61, "unit": "bpm"},
        [1, 2],
    ]
    result = parse_payload(payload)
    assert not result.readings
    assert _problems(result) == {
        (0, "[0].value", "bad-value"), (1, "[1].time", "naive-time"), (2, "[2].time", "bad-time"),
        (3, "[3].time", "naive-time"), (4, "[4].metric", "missing"), (5, "[5].unit", "missing"),
        (6, "[6].value", "bad-value"), (7, "[7].time", "bad-time"), (8, "[8].device", "malformed"),
        (9, "[9].metric", "unknown-metric"), (10, "[10]", "malformed")}


@pytest.mark.parametrize(("body", "field"), [(b"", "$"), (b"{oops", "$"), (b'"text"', "$"), (b"42", "$"),
                                             (b'{"a": 1}', "$")])
def test_unreadable_payloads_raise_payload_error(body: bytes, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_payload(decode(body))
    assert caught.value.field == field and caught.value.reason == "malformed"


def test_naive_and_offset_times() -> None:
    with pytest.raises(FieldError) as caught:
        parse_time("2024-05-01T08:00:00.123", "time")
    assert caught.value.reason == "naive-time"
    assert parse_time("2024-05-01T08:00:00.5-05:00", "t") == datetime(2024, 5, 1, 13, 0, 0, 500000, tzinfo=UTC)
    with pytest.raises(FieldError, match="before 1970"):
        parse_time("1900-01-01T00:00:00Z", "t")


# ------------------------------------------------------------------------------------------ FHIR

def _obs(code: str, value: Any = None, unit: str = "", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                                "effectiveDateTime": T, **extra}
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                     "code": unit}
    return resource


def test_fhir_bundle_with_vitals_bp_components_cgm_and_problems() -> None:
    bp = {"resourceType": "Observation", "id": "bp1", "status": "final", "effectiveDateTime": T,
          "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
          "subject": {"reference": "Patient/p1"}, "device": {"display": "cuff"},
          "component": [
              {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
               "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                 "code": "mm[Hg]"}},
              {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
               "valueQuantity": {"value": 80, "unit": "mmHg"}}]}
    cgm = _obs("99504-3", 104, "mg/dL", id="g1")
    cgm_mmol = _obs("105272-9", 5.8, "mmol/L")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": bp}, {"resource": cgm}, {"resource": cgm_mmol},
        {"resource": _obs("8867-4", 62, "/min")},
        {"resource": _obs("2708-6", 97, "%", effectiveDateTime="2024-05-01T08:00:00")},
        {"resource": {**_obs("8310-5", 37.2, "Cel"), "valueQuantity": {"value": 37.2}}},
        {"resource": _obs("1234-5", 1, "1")},
        {"resource": {"resourceType": "Patient", "id": "p1"}},
        {"resource": {**_obs("8867-4", 60, "/min"), "status": "entered-in-error"}},
        {"fullUrl": "urn:uuid:x"},
    ]}
    result = parse_payload(bundle)
    assert result.format == "fhir"
    by_metric = {r.metric: r for r in result.readings}
    assert set(by_metric) == {"systolic_bp", "diastolic_bp", "glucose", "heart_rate"}
    assert by_metric["systolic_bp"].value == 120 and by_metric["systolic_bp"].unit == "mm[Hg]"
    assert by_metric["diastolic_bp"].unit == "mmHg"  # no UCUM code: the display unit
    assert by_metric["systolic_bp"].client_id == "bp1/systolic_bp" and by_metric["systolic_bp"].device == "cuff"
    assert by_metric["systolic_bp"].subject == "p1"
    assert by_metric["diastolic_bp"].field_path("unit") == "entry[0].resource.component[1].valueQuantity.unit"
    glucose = [r for r in result.readings if r.metric == "glucose"]
    assert {(g.value, g.unit) for g in glucose} == {(104.0, "mg/dL"), (5.8, "mmol/L")}
    assert _problems(result) == {
        (4, "entry[4].resource.effectiveDateTime", "naive-time"),
        (5, "entry[5].resource.valueQuantity.unit", "missing"),
        (6, "entry[6].resource.code", "unknown-metric"),
        (7, "entry[7].resource.resourceType", "unsupported"),
        (8, "entry[8].resource.status", "status"),
        (9, "entry[9].resource", "missing")}


def test_fhir_single_observation_steps_period_and_sleep() -> None:
    steps = _obs("55423-8", 5234, "{steps}")
    del steps["effectiveDateTime"]
    steps["effectivePeriod"] = {"start": "2024-05-01T00:00:00Z", "end": "2024-05-01T23:59:59Z"}
    result = parse_payload(steps)
    assert result.readings[0].time == datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC)  # end of the interval
    sleep = {"resourceType": "Observation", "status": "final", "id": "s1",
             "code": {"coding": [{"system": "http://loinc.org", "code": "93832-4"}]},
             "effectivePeriod": {"start": "2024-04-30T23:00:00Z", "end": "2024-05-01T07:00:00Z"},
             "valueQuantity": {"value": 8, "unit": "h"}}
    stages = parse_payload(sleep).readings
    assert [(r.time.hour, r.value, r.client_id) for r in stages] == [(23, 1.0, "s1/start"), (7, 0.0, "s1/end")]


# ------------------------------------------------------------------------------------------ Open mHealth

def _omh(schema: str, body: dict[str, Any], **header: Any) -> dict[str, Any]:
    return {"header": {"id": header.pop("id", "h1"), "creation_date_time": T,
                       "schema_id": {"namespace": "omh", "name": schema, "version": "2.0"},
                       "acquisition_provenance": {"source_name": "ring", "modality": "sensed"}, **header},
            "body": body}


def test_omh_points() -> None:
    points = [
        _omh("heart-rate", {"heart_rate": {"value": 58, "unit": "beats/min"},
                            "effective_time_frame": {"date_time": T}}, id="a"),
        _omh("blood-pressure", {"systolic_blood_pressure": {"value": 118, "unit": "mmHg"},
                                "diastolic_blood_pressure": {"value": 76, "unit": "mmHg"},
                                "effective_time_frame": {"date_time": T}}, id="b"),
        _omh("step-count", {"step_count": 812, "effective_time_frame": {"time_interval": {
            "start_date_time": "2024-05-01T08:00:00Z", "duration": {"value": 15, "unit": "min"}}}}, id="c"),
        _omh("step-count", {"step_count": {"value": 90, "unit": "steps"}, "effective_time_frame": {
            "time_interval": {"end_date_time": "2024-05-01T09:00:00Z", "duration": {"value": 1, "unit": "min"}}}},
            id="c2"),
        _omh("body-temperature", {"body_temperature": {"value": 98.1, "unit": "F"},
                                  "effective_time_frame": {"date_time": T}}),
        _omh("sleep-episode", {"effective_time_frame": {"time_interval": {
            "start_date_time": "2024-04-30T23:30:00Z", "end_date_time": "2024-05-01T06:30:00Z"}}}, id="s"),
        _omh("oxygen-saturation", {"oxygen_saturation": {"value": 97, "unit": "%"},
                                   "effective_time_frame": {"date_time": "2024-05-01T08:00:00"}}),
        _omh("heart-rate", {"heart_rate": {"value": 58, "unit": "beats/min"}}),
        _omh("physical-activity", {"activity_name": "walk", "effective_time_frame": {"date_time": T}}),
        {"body": {"blood_glucose": {"value": 101, "unit": "mg/dL"}, "effective_time_frame": {"date_time": T}}},
    ]
    result = parse_payload(points)
    assert result.format == "omh"
    got = [(r.metric, r.value, r.unit, r.time.strftime("%H:%M"), r.client_id) for r in result.readings]
    assert got == [("heart_rate", 58.0, "beats/min", "08:00", "a"),
                   ("systolic_bp", 118.0, "mmHg", "08:00", "b/systolic_bp"),
                   ("diastolic_bp", 76.0, "mmHg", "08:00", "b/diastolic_bp"),
                   ("steps", 812.0, "{steps}", "08:15", "c"),
                   ("steps", 90.0, "steps", "09:00", "c2"),
                   ("body_temperature", 98.1, "F", "08:00", "h1"),
                   ("sleep_stage", 1.0, "{stage}", "23:30", "s/start"),
                   ("sleep_stage", 0.0, "{stage}", "06:30", "s/end"),
                   ("glucose", 101.0, "mg/dL", "08:00", None)]
    assert result.readings[0].device == "ring"
    assert result.readings[0].field_path("value") == "[0].body.heart_rate.value"
    assert _problems(result) == {
        (6, "[6].body.effective_time_frame.date_time", "naive-time"),
        (7, "[7].body.effective_time_frame", "missing"),
        (8, "[8].header.schema_id.name", "unknown-metric")}


# ------------------------------------------------------------------------------------------ properties

_metric = st.sampled_from(sorted(CANONICAL_UNITS))
_times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 1, 1),
                      timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                 timezone(timedelta(hours=-8))]))


@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.tuples(_metric, _times, st.floats(allow_nan=False, allow_infinity=False, width=64),
                                st.one_of(st.none(), st.text(min_size=1, max_size=20).filter(str.strip))),
                      max_size=20))
def test_json_samples_round_trip(items: list[tuple[str, datetime, float, str | None]]) -> None:
    payload = [{"metric": m, "time": t.isoformat(), "value": v, "unit": CANONICAL_UNITS[m],
                **({"id": cid} if cid is not None else {})} for m, t, v, cid in items]
    result = parse_payload(orjson.loads(orjson.dumps(payload)))
    assert not result.problems
    assert [(r.metric, r.time, r.value, r.unit, r.client_id, r.index) for r in result.readings] == [
        (m, t.astimezone(UTC), v, CANONICAL_UNITS[m], cid, i) for i, (m, t, v, cid) in enumerate(items)]
    assert all(r.time.tzinfo is UTC for r in result.readings)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.sampled_from(["metric", "time", "value", "unit", "id", "device",
                                                        "resourceType", "entry", "resource", "header", "body",
                                                        "code", "valueQuantity", "component", "x"]),
                                       children, max_size=6),
                     max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(data=_json)
def test_arbitrary_json_gives_readings_problems_or_payload_error(data: Any) -> None:
    try:
        result = parse_payload(data)
    except PayloadError as exc:
        assert exc.field and exc.reason == "malformed"
        return
    for reading in result.readings:
        assert isinstance(reading, Reading) and reading.time.tzinfo is not None
    for problem in result.problems:
        assert problem.field and problem.reason and problem.detail


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40))
def test_parse_time_accepts_only_zoned_datetimes(text: str) -> None:
    try:
        parsed = parse_time(text, "t")
    except FieldError as exc:
        assert exc.reason in {"bad-time", "naive-time"}
        return
    assert parsed.tzinfo is UTC
    assert datetime.fromisoformat(text).utcoffset() is not None


def test_detect_format() -> None:
    assert detect_format([]) == "samples"
    assert detect_format([{"resourceType": "Observation"}]) == "fhir"
    assert detect_format({"header": {}, "body": {}}) == "omh"
    with pytest.raises(PayloadError):
        detect_format("x")
