"""Preparing FHIR units: ids, references, validation errors that name entry and field."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from medtwin.record.errors import (
    MalformedJsonError,
    MissingFieldError,
    NotFhirError,
    PreconditionFailedError,
    UnknownResourceTypeError,
    UnresolvedReferenceError,
)
from medtwin.record.prepare import ID_NAMESPACE, IdentifierKey, IdentifierMatch, NoExistingRecords, prepare
from medtwin.record.sources import unit_from_bytes


def patient(uid: str) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{uid}", "request": {"method": "POST", "url": "Patient"},
            "resource": {"resourceType": "Patient", "id": uid, "name": [{"family": "Test", "given": ["Ann"]}],
                         "identifier": [{"system": "urn:mrn", "value": "MRN-1"}]}}


def observation(uid: str, subject: str, code: str = "8867-4", value: float = 70.0, unit: str = "/min") -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{uid}", "request": {"method": "POST", "url": "Observation"},
            "resource": {"resourceType": "Observation", "id": uid, "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                         "subject": {"reference": f"urn:uuid:{subject}"},
                         "effectiveDateTime": "2024-01-01T10:00:00Z",
                         "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                           "code": unit}}}


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


PID = "11111111-1111-1111-1111-111111111111"


def test_posted_entries_get_stable_server_ids_and_references_follow() -> None:
    bundle = transaction(patient(PID), observation("22222222-2222-2222-2222-222222222222", PID))
    unit = prepare(bundle, source="b.json")
    new_pid = str(uuid.uuid5(ID_NAMESPACE, f"urn:uuid:{PID}"))
    assert unit.resources[0].id == new_pid
    assert unit.resources[0].content["id"] == new_pid
    assert unit.resources[1].content["subject"] == {"reference": f"Patient/{new_pid}"}
    assert unit.resources[1].patient_id == new_pid
    # the same bundle gives the same ids again (idempotent import)
    assert [r.id for r in prepare(copy.deepcopy(bundle), source="b.json").resources] == [r.id for r in unit.resources]
    # the source's identifier (Synthea puts the MRN there) is not the stored id
    assert PID not in {r.id for r in unit.resources}


def test_collection_and_single_resources_keep_their_ids() -> None:
    resource = {"resourceType": "Patient", "id": "p1"}
    assert prepare(resource, source="p.json").resources[0].id == "p1"
    collection = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": resource},
        {"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                      "code": {"text": "x"}, "subject": {"reference": "http://example.org/fhir/Patient/p1"}}}]}
    unit = prepare(collection, source="c.json")
    assert [r.id for r in unit.resources] == ["p1", "o1"]
    assert unit.resources[1].content["subject"]["reference"] == "Patient/p1"


def test_unresolved_urn_reference_names_entry_and_field() -> None:
    bundle = transaction(patient(PID), observation("22222222-2222-2222-2222-222222222222", "no-such-uuid"))
    with pytest.raises(UnresolvedReferenceError) as info:
        prepare(bundle, source="b.json")
    assert info.value.entry == 2
    assert info.value.field == "Observation.subject.reference"
    assert "b.json" in str(info.value) and "entry 2" in str(info.value)


def test_relative_reference_to_nothing_is_rejected() -> None:
    obs = observation("22222222-2222-2222-2222-222222222222", PID)["resource"]
    obs["subject"] = {"reference": "Patient/does-not-exist"}
    with pytest.raises(UnresolvedReferenceError, match="resolves to nothing"):
        prepare(obs, source="o.json")


class _Existing(NoExistingRecords):
    def matches_by_identifier(self, resource_type: str, system: str | None, value: str) -> list[IdentifierMatch]:
        if (resource_type, system, value) == ("Practitioner", "http://hl7.org/fhir/sid/us-npi", "999"):
            return [("prac-1", None, 1)]
        if (resource_type, system, value) == ("Organization", "urn:org", "o1"):
            return [("org-existing", None, 1)]
        if value == "twice":
            return [("first", None, 1), ("second", None, 3)]
        return []


@pytest.mark.parametrize("where", ["ifNoneExist", "reference", "conditional update"])
def test_several_matches_are_refused_naming_entry_and_field(where: str) -> None:
    """R4: identifier criteria matching several stored resources are a 412, never the first one found."""
    org: dict[str, Any] = {"resourceType": "Organization", "identifier": [{"system": "urn:org", "value": "twice"}]}
    request = {"ifNoneExist": {"method": "POST", "url": "Organization", "ifNoneExist": "identifier=urn:org|twice"},
               "reference": {"method": "POST", "url": "Organization"},
               "conditional update": {"method": "PUT", "url": "Organization?identifier=urn:org|twice"}}[where]
    if where == "reference":
        org = {"resourceType": "Organization", "partOf": {"reference": "Organization?identifier=urn:org|twice"}}
    bundle = transaction({"fullUrl": "urn:uuid:o0", "request": {"method": "POST", "url": "Organization"},
                          "resource": {"resourceType": "Organization", "name": "fine"}},
                         {"fullUrl": "urn:uuid:o1", "request": request, "resource": org})
    with pytest.raises(PreconditionFailedError, match="multiple matches: 2 Organization") as refused:
        prepare(bundle, source="b", existing=_Existing())
    field = {"ifNoneExist": "Bundle.entry.request.ifNoneExist", "reference": "Organization.partOf.reference",
             "conditional update": "Bundle.entry.request.url"}[where]
    assert (refused.value.entry, refused.value.field, refused.value.kind) == (2, field, "precondition-failed")


def test_conditional_reference_and_if_none_exist_resolve_against_store() -> None:
    enc = {"fullUrl": "urn:uuid:e1", "request": {"method": "POST", "url": "Encounter"},
           "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                        "participant": [{"individual": {
                            "reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|999"}}],
                        "serviceProvider": {"reference": "urn:uuid:org"}}}
    org = {"fullUrl": "urn:uuid:org", "request": {"method": "POST", "url": "Organization",
                                                  "ifNoneExist": "identifier=urn:org|o1"},
           "resource": {"resourceType": "Organization", "identifier": [{"system": "urn:org", "value": "o1"}]}}
    unit = prepare({"resourceType": "Bundle", "type": "batch", "entry": [org, enc]}, source="b", existing=_Existing())
    assert unit.matched_existing == 1  # the organization existed: not written again
    assert [r.resource_type for r in unit.resources] == ["Encounter"]
    content = unit.resources[0].content
    assert content["participant"][0]["individual"]["reference"] == "Practitioner/prac-1"
    assert content["serviceProvider"]["reference"] == "Organization/org-existing"
    with pytest.raises(UnresolvedReferenceError, match="import it first"):
        prepare({"resourceType": "Bundle", "type": "batch", "entry": [enc]}, source="b")


def test_not_fhir_unknown_type_and_missing_field() -> None:
    with pytest.raises(NotFhirError, match="resourceType"):
        prepare({"hello": "world"}, source="x.json")
    with pytest.raises(UnknownResourceTypeError) as info:
        prepare({"resourceType": "Spaceship"}, source="x.json")
    assert info.value.field == "resourceType"
    obs = observation("22222222-2222-2222-2222-222222222222", PID)["resource"]
    del obs["code"]
    with pytest.raises(MissingFieldError) as missing:
        prepare(transaction(patient(PID), {"fullUrl": "urn:uuid:o", "request": {"method": "POST",
                                                                                  "url": "Observation"},
                                          "resource": obs}), source="x.json")
    assert (missing.value.entry, missing.value.field) == (2, "Observation.code")


def test_bad_500th_entry_is_named() -> None:
    entries = [patient(PID)] + [observation(str(uuid.UUID(int=i)), PID) for i in range(1, 600)]
    entries[499]["resource"]["resourceType"] = "NotAThing"
    with pytest.raises(UnknownResourceTypeError) as info:
        prepare(transaction(*entries), source="big.json")
    assert info.value.entry == 500
    assert "entry 500" in str(info.value)


def test_malformed_json_and_ndjson_line_numbers() -> None:
    with pytest.raises(MalformedJsonError, match="line 2"):
        unit_from_bytes(b'{"resourceType":\n "Patient",,}', source="bad.json")
    with pytest.raises(MalformedJsonError) as info:
        unit_from_bytes(b'{"resourceType": "Patient", "id": "a"}\n{oops\n', source="p.ndjson")
    assert info.value.entry == 2


def test_ndjson_unit() -> None:
    raw = unit_from_bytes(b'{"resourceType": "Patient", "id": "a"}\n{"resourceType": "Observation", "id": "o", '
                          b'"status": "final", "code": {"text": "t"}, "subject": {"reference": "Patient/a"}}\n',
                          source="Observation.ndjson")
    assert raw.kind == "ndjson"
    unit = prepare(raw.data, source=raw.source, kind="ndjson")
    assert [(r.resource_type, r.id, r.patient_id) for r in unit.resources] == [("Patient", "a", "a"),
                                                                              ("Observation", "o", "a")]


def test_server_ids_are_rfc4122_uuid5() -> None:
    from medtwin.record.prepare import uuid5

    for name in ("urn:uuid:1", "Organization?identifier=urn:org|o1", "Patient:{\"a\":\"é\"}", ""):
        assert uuid5(name) == str(uuid.uuid5(ID_NAMESPACE, name))


def test_reference_with_json_escapes_is_resolved_and_named() -> None:
    # a fullUrl with a quote and a backslash: serialised with escapes, handled by the general path
    odd = 'urn:uuid:we"ird\\one'
    obs = observation("22222222-2222-2222-2222-222222222222", PID)
    obs["resource"]["subject"] = {"reference": odd}
    entries = [{**patient(PID), "fullUrl": odd}, obs]
    unit = prepare(transaction(*entries), source="b.json")
    new_pid = str(uuid.uuid5(ID_NAMESPACE, odd))
    assert unit.resources[1].content["subject"] == {"reference": f"Patient/{new_pid}"}
    assert unit.resources[1].patient_id == new_pid
    obs["resource"]["hasMember"] = [{"reference": 'urn:uuid:no"such'}]
    with pytest.raises(UnresolvedReferenceError) as info:
        prepare(transaction(*entries), source="b.json")
    assert (info.value.entry, info.value.field) == (2, "Observation.hasMember.reference")


class _Counting(_Existing):
    """The store of ``_Existing`` that also answers in batches, counting the questions."""

    def __init__(self) -> None:
        self.single = 0
        self.batches: list[list[tuple[str, str | None, str]]] = []
        self.key_batches: list[list[tuple[str, str]]] = []

    def matches_by_identifier(self, resource_type: str, system: str | None, value: str) -> list[IdentifierMatch]:
        self.single += 1
        return super().matches_by_identifier(resource_type, system, value)

    def matches_by_identifiers(self, keys: list[IdentifierKey]) -> dict[IdentifierKey, list[IdentifierMatch]]:
        self.batches.append(list(keys))
        found = {key: _Existing.matches_by_identifier(self, *key) for key in keys}
        return {key: matches for key, matches in found.items() if matches}

    def existing_keys(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        self.key_batches.append(list(keys))
        return {key for key in keys if key == ("Patient", "stored")}

    def exists(self, resource_type: str, resource_id: str) -> bool:
        raise AssertionError("asked one at a time although the store answers in batches")


def test_store_is_asked_in_batches_with_the_same_answers() -> None:
    npi = "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|999"
    entries = [
        {"fullUrl": "urn:uuid:org", "request": {"method": "POST", "url": "Organization",
                                                "ifNoneExist": "identifier=urn:org|o1"},
         "resource": {"resourceType": "Organization", "identifier": [{"system": "urn:org", "value": "o1"}]}},
        {"fullUrl": "urn:uuid:org2", "request": {"method": "POST", "url": "Organization",
                                                 "ifNoneExist": "identifier=urn:org|new"},
         "resource": {"resourceType": "Organization", "identifier": [{"system": "urn:org", "value": "new"}]}},
    ] + [
        {"fullUrl": f"urn:uuid:e{n}", "request": {"method": "POST", "url": "Encounter"},
         "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                      "subject": {"reference": "Patient/stored"},
                      "participant": [{"individual": {"reference": npi}}],
                      "serviceProvider": {"reference": "Organization?identifier=urn:org|new"}}}
        for n in range(5)
    ]
    counting = _Counting()
    unit = prepare({"resourceType": "Bundle", "type": "batch", "entry": entries}, source="b", existing=counting)
    # one batch for the conditional creates, one for the references; nothing asked one at a time
    assert counting.single == 0
    assert counting.batches == [[("Organization", "urn:org", "o1"), ("Organization", "urn:org", "new")],
                                [("Practitioner", "http://hl7.org/fhir/sid/us-npi", "999")]]
    assert counting.key_batches == [[("Patient", "stored")]]
    # the same resources as asking one at a time
    class _OneByOne(_Existing):
        def exists(self, resource_type: str, resource_id: str) -> bool:
            return (resource_type, resource_id) == ("Patient", "stored")

    one_by_one = prepare({"resourceType": "Bundle", "type": "batch", "entry": copy.deepcopy(entries)}, source="b",
                         existing=_OneByOne())
    assert [(r.id, r.raw, r.patient_id) for r in unit.resources] == \
        [(r.id, r.raw, r.patient_id) for r in one_by_one.resources]
    assert unit.matched_existing == one_by_one.matched_existing == 1
    encounter = unit.resources[1].content
    assert encounter["participant"][0]["individual"]["reference"] == "Practitioner/prac-1"
    assert encounter["serviceProvider"]["reference"] == f"Organization/{unit.resources[0].id}"  # created in the unit
    assert unit.resources[1].patient_id == "stored"
