"""The pure parts of the FHIR REST API: version tags, Bundle planning, search parameter tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.record import fhir_bundle, fhir_search
from medtwin.record.errors import InvalidFieldError, RecordError


@given(st.integers(min_value=0, max_value=10**17), st.sampled_from(['W/"{}"', '"{}"', "{}", ' W/"{}" ']))
def test_etag_round_trip(version: int, form: str) -> None:
    assert fhir_bundle.parse_etag(form.format(version)) == version
    assert fhir_bundle.parse_etag(fhir_bundle.EntryResult("Patient", "p", "updated", version).etag) == version


@given(st.text().filter(lambda t: not t.strip().strip('W/"').isdigit()))
def test_etag_refuses_anything_else(text: str) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        fhir_bundle.parse_etag(text)
    assert caught.value.field == "If-Match"


def test_transaction_with_a_bad_entry_is_refused_whole_batch_answers_it() -> None:
    entries = [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
               {"resource": {"resourceType": "Patient"}, "request": {"method": "PATCH", "url": "Patient/x"}},
               {"resource": {"resourceType": "Patient", "id": "x"},
                "request": {"method": "PUT", "url": "Patient/x", "ifMatch": 'W/"4"'}}]
    with pytest.raises(RecordError) as caught:
        fhir_bundle.plan_bundle({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert caught.value.entry == 2 and caught.value.field == "Bundle.entry.request.method"
    plan = fhir_bundle.plan_bundle({"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert list(plan.refused) == [1] and plan.unit_entries == [[0], [2]]
    assert plan.expect == [{}, {("Patient", "x"): 4}]
    answers: list[fhir_bundle.EntryResult | RecordError] = [
        fhir_bundle.EntryResult("Patient", "a", "created", 1), plan.refused[1],
        fhir_bundle.EntryResult("Patient", "x", "updated", 5)]
    response = fhir_bundle.response_bundle("batch", answers, base="http://h/fhir")
    assert [e["response"]["status"] for e in response["entry"]] == ["201 Created", "400 Bad Request", "200 OK"]
    assert response["entry"][2]["response"]["location"] == "Patient/x/_history/5"
    assert response["entry"][1]["response"]["outcome"]["issue"][0]["location"] == ["Bundle.entry[1]"]


def test_update_needs_the_urls_id() -> None:
    with pytest.raises(InvalidFieldError) as caught:
        fhir_bundle.update_unit("Patient", "a", {"resourceType": "Patient", "id": "b"})
    assert caught.value.field == "Patient.id"
    unit = fhir_bundle.create_unit("Patient", {"resourceType": "Patient", "id": "mine"}, if_none_exist="identifier=s|v")
    entry = unit["entry"][0]
    assert "id" not in entry["resource"] and entry["fullUrl"].startswith("urn:uuid:")
    assert entry["request"] == {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=s|v"}


def test_search_tables() -> None:
    assert set(fhir_search.search_params("Organization")) == {"_id", "_lastUpdated", "identifier"}
    assert {"code", "date", "status", "category", "patient"} <= set(fhir_search.search_params("Observation"))
    assert "date" not in fhir_search.sort_keys("Patient")
    assert fhir_search.parse_sort("Observation", ["-date,_id"]) == (("date", True), ("_id", False))
    with pytest.raises(fhir_search.SearchParamError):
        fhir_search.check_params("Organization", ["code"])
    includes = fhir_search.parse_includes("Procedure", ["Procedure:performer", "Procedure:patient"])
    found = fhir_search.included_keys([{"performer": [{"actor": {"reference": "Practitioner/p1"}}],
                                        "subject": {"reference": "Patient/a"},
                                        "encounter": {"reference": "urn:uuid:x"}}], includes)
    assert found == [("Practitioner", "p1"), ("Patient", "a")]
    with pytest.raises(fhir_search.SearchParamError):
        fhir_search.parse_revincludes("Observation", ["Observation:patient"])
