"""Datatype validation on import (issue 16 defect 4): each bad Observation is refused naming the field, the
unit all or nothing; the shared Synthea resources all pass."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.record.errors import InvalidFieldError, RecordError
from medtwin.record.prepare import prepare
from medtwin.record.validate import DATE_TIME, check_resource, validate_datatypes


def observation(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "effectiveDateTime": "2024-01-02T03:04:05Z",
        "valueQuantity": {"value": 170.5, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
    }
    resource.update(changes)
    return resource


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"effectiveDateTime": "2024-13-45T99:00:00Z"}, "Observation.effectiveDateTime", "dateTime"),
    ({"effectiveDateTime": "2023-02-30"}, "Observation.effectiveDateTime", "calendar"),
    ({"effectiveDateTime": "2024-01-02T03:04:05"}, "Observation.effectiveDateTime", "dateTime"),  # no zone
    ({"issued": "2024-01-02"}, "Observation.issued", "instant"),
    ({"status": "done"}, "Observation.status", "required value set"),
    ({"favouriteColour": "blue"}, "Observation.favouriteColour", "unknown element"),
    ({"valueQuantity": {"value": "abc", "unit": "cm"}}, "Observation.valueQuantity.value", "decimal"),
    ({"valueQuantity": {"value": 1, "comparator": "~"}}, "Observation.valueQuantity.comparator", "value set"),
    ({"category": {"text": "vital"}}, "Observation.category", "array"),
    ({"component": [{"code": {"text": "a"}, "valueInteger": 2.5}]}, "Observation.component[0].valueInteger",
     "integer"),
    ({"component": [{"code": {"text": "a"}, "valueBoolean": "true"}]}, "Observation.component[0].valueBoolean",
     "true or false"),
])
def test_bad_observation_is_refused_naming_the_field(changes: dict[str, Any], field: str, words: str) -> None:
    bad = observation(**changes)
    with pytest.raises(InvalidFieldError) as caught:
        check_resource(bad)
    assert caught.value.field == field and words in caught.value.message
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": observation(id="ok")}, {"resource": bad}]}
    with pytest.raises(RecordError) as whole:
        prepare(bundle, source="u.json")
    assert whole.value.entry == 2 and whole.value.field == field and whole.value.source == "u.json"


def test_valid_forms_pass() -> None:
    for when in ("2024", "2024-02", "2024-02-29", "2024-02-29T23:59:60.123+14:00", "2024-01-02T03:04:05Z"):
        check_resource(observation(effectiveDateTime=when))
    check_resource(observation(_status={"extension": []}, valueQuantity={"value": 0}))
    check_resource({"resourceType": "Patient", "contained": [observation()], "gender": "unknown"})
    with pytest.raises(InvalidFieldError) as caught:
        check_resource({"resourceType": "Patient", "contained": [observation(status="x")]})
    assert caught.value.field == "Patient.contained[0].status"


def test_every_shared_synthea_resource_passes(synthea_dir: Path) -> None:
    count = 0
    for path in synthea_dir.glob("*.json"):
        if path.name == "MANIFEST.json":
            continue
        for entry in json.loads(path.read_text())["entry"]:
            validate_datatypes(entry["resource"])
            check_resource(entry["resource"])
            count += 1
    assert count > 7000


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)))
def test_every_real_date_time_matches(moment: datetime) -> None:
    check_resource(observation(effectiveDateTime=moment.strftime("%Y-%m-%dT%H:%M:%S") + "Z"))
    check_resource(observation(effectiveDateTime=moment.date().isoformat()))


@given(st.integers(1, 9999), st.integers(1, 12), st.integers(1, 31))
def test_a_date_passes_exactly_when_it_is_a_calendar_day(year: int, month: int, day: int) -> None:
    text = f"{year:04d}-{month:02d}-{day:02d}"
    try:
        date(year, month, day)
        real = True
    except ValueError:
        real = False
    try:
        check_resource(observation(effectiveDateTime=text))
        passed = True
    except InvalidFieldError:
        passed = False
    assert passed == real and DATE_TIME.match(text)
