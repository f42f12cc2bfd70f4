"""Which identifiers may name a patient in a URL path (issue 13, defect 4): the record number only."""

from __future__ import annotations

from typing import Any

import pytest

from medtwin.record.identifiers import names_the_patient
from medtwin.record.sources import RawUnit
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.stream.pipeline import IngestPipeline, UnknownPatientError
from medtwin.twin.build import import_units

V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _typed(code: str, value: str, system: str = "urn:x") -> dict[str, Any]:
    return {"type": {"coding": [{"system": V2, "code": code}]}, "system": system, "value": value}


@pytest.mark.parametrize(("identifier", "raw", "allowed"), [
    (_typed("MR", "5eb10682-8a75"), "5eb10682-8a75", True),
    (_typed("SS", "999-81-6103", "http://hl7.org/fhir/sid/us-ssn"), "999-81-6103", False),
    (_typed("DL", "S99993334", "urn:oid:2.16.840.1.113883.4.3.25"), "S99993334", False),
    (_typed("PPN", "X67227352X", "http://hl7.org/fhir/sid/passport-USA"), "X67227352X", False),
    (_typed("MR", "A1"), "A2", False),  # another value
    ({"system": "urn:mrn", "value": "MRN-1"}, "MRN-1", True),  # an untyped local record number
    ({"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999281234"}, "999281234", False),
    ({"system": "http://hl7.org/fhir/sid/passport-DEU", "value": "C01X00T47"}, "C01X00T47", False),
    ({"system": "urn:local", "value": "999-28-9483"}, "999-28-9483", False),  # SSN-shaped, untyped
    ({"type": {"coding": [{"system": "urn:other", "code": "MR"}]}, "value": "Z9"}, "Z9", False),
])
def test_only_record_numbers_name_a_patient_in_a_path(identifier: dict[str, Any], raw: str, allowed: bool) -> None:
    assert names_the_patient(identifier, raw) is allowed


def test_the_store_and_the_ingest_pipeline_name_a_patient_by_id_or_record_number_only(store: Store) -> None:
    """The rule lives in the store's resolution, so an MQTT topic or a CLI argument follows it as a path does:
    an SSN or passport number resolves to nothing (the ingest pipeline answers 'unknown patient')."""
    patient = {"resourceType": "Patient", "id": "p-1", "identifier": [
        _typed("MR", "MRN-77"), _typed("SS", "999-81-6103", "http://hl7.org/fhir/sid/us-ssn"),
        _typed("PPN", "X67227352X", "http://hl7.org/fhir/sid/passport-USA")]}
    report = import_units(store, [RawUnit("p.json", "json", patient)], actor="test")
    assert report.ok
    with store.connect() as connection:
        repo = RecordRepository(connection, store.codec)
        assert [repo.resolve_patient(k) for k in ("p-1", "MRN-77", "999-81-6103", "X67227352X", "nobody")] == [
            "p-1", "p-1", None, None, None]
    pipeline = IngestPipeline(store)
    assert pipeline.resolve_patient("MRN-77") == "p-1"
    for raw in ("999-81-6103", "X67227352X"):
        with pytest.raises(UnknownPatientError):
            pipeline.resolve_patient(raw)
