"""FHIR search on a running server: category, status, identifier, code with system, date with prefixes,
_sort, _include/_revinclude, paging links; and the CapabilityStatement claims exactly what works (every
advertised parameter of every stored type finds a resource made to match; the usual parameters it does not
advertise are refused)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
from fhirclient.models.bundle import Bundle
from fhirclient.models.observation import Observation
from tests.api.test_fhir_server import P1, P2, PASSWORD, Server, _client, live_server

from medtwin.record import fhir_search
from medtwin.record.indexing import CODE_ELEMENTS, SEARCH_TIME, status_of

LOINC, CAT = "http://loinc.org", "http://terminology.hl7.org/CodeSystem/observation-category"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"


def _obs(oid: str, patient: str, day: int, category: str, status: str = "final", performer: str | None = None
         ) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": status,
        "identifier": [{"system": "urn:obs", "value": oid}],
        "category": [{"coding": [{"system": CAT, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4" if category == "vital-signs" else "2339-0"}]},
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": f"2024-03-{day:02d}T09:00:00Z",
        "valueQuantity": {"value": 70 + day, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
    if performer:
        resource["performer"] = [{"reference": performer}]
    return resource


RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org1", "identifier": [{"system": "urn:org", "value": "O1"}],
     "name": "Clinic"},
    {"resourceType": "Practitioner", "id": "doc1", "identifier": [{"system": "urn:npi", "value": "N1"}]},
    {"resourceType": "Patient", "id": P1, "identifier": [{"system": "urn:mrn", "value": "M1"}],
     "managingOrganization": {"reference": "Organization/org1"}},
    {"resourceType": "Patient", "id": P2, "identifier": [{"system": "urn:mrn", "value": "M2"}]},
    _obs("hr3", P1, 3, "vital-signs", performer="Practitioner/doc1"),
    _obs("hr1", P1, 1, "vital-signs"),
    _obs("lab2", P1, 2, "laboratory", status="amended"),
    _obs("lab9", P2, 9, "laboratory"),
    {"resourceType": "Condition", "id": "c1", "identifier": [{"system": "urn:cond", "value": "C1"}],
     "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                    "code": "active"}]},
     "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                               "code": "problem-list-item"}]}],
     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
     "subject": {"reference": f"Patient/{P1}"}, "onsetDateTime": "2020-05-01"},
    {"resourceType": "Encounter", "id": "e1", "identifier": [{"system": "urn:enc", "value": "E1"}],
     "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
     "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003"}]}],
     "subject": {"reference": f"Patient/{P1}"}, "period": {"start": "2024-03-01T08:00:00Z"},
     "serviceProvider": {"reference": "Organization/org1"}},
    # types whose indexed code has another R4 name or none (#16): modality, created, started, category
    {"resourceType": "CarePlan", "id": "cp1", "identifier": [{"system": "urn:cp", "value": "CP1"}],
     "status": "active", "intent": "plan", "subject": {"reference": f"Patient/{P1}"},
     "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "734163000"}]}],
     "period": {"start": "2024-02-01T10:00:00Z"}},
    {"resourceType": "ImagingStudy", "id": "is1", "identifier": [{"system": "urn:is", "value": "IS1"}],
     "status": "available", "subject": {"reference": f"Patient/{P1}"}, "started": "2024-02-02T10:00:00Z",
     "procedureCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "77477000"}]}],
     "series": [{"uid": "1.2.3", "modality": {"system": _DCM, "code": "MR"}},
                {"uid": "1.2.4", "modality": {"system": _DCM, "code": "CT"}}]},
    {"resourceType": "Claim", "id": "cl1", "identifier": [{"system": "urn:cl", "value": "CL1"}],
     "status": "active", "use": "claim", "patient": {"reference": f"Patient/{P1}"}, "created": "2024-02-03",
     "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}]},
     "provider": {"reference": "Organization/org1"}, "priority": {"coding": [{"code": "normal"}]},
     "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Cash"}}]},
    {"resourceType": "SupplyDelivery", "id": "sd1", "identifier": [{"system": "urn:sd", "value": "SD1"}],
     "status": "completed", "patient": {"reference": f"Patient/{P1}"},
     "suppliedItem": {"itemCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}}},
    {"resourceType": "SupplyDelivery", "id": "sd2", "identifier": [{"system": "urn:sd", "value": "SD2"}],
     "status": "in-progress", "patient": {"reference": f"Patient/{P1}"}},  # no code: status still found
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    body = orjson.dumps({"resourceType": "Bundle", "type": "collection",
                         "entry": [{"resource": r} for r in RESOURCES]})
    with live_server(tmp_path_factory, "fhir-search", body) as (server, _):
        yield server


def _get(server: Server, path: str, user: str = "admin", **params: str) -> requests.Response:
    return requests.get(f"{server.base}/{path}", params=params, timeout=30,
                        headers={"Authorization": f"Bearer {server.tokens[user]}"})


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def test_category_status_identifier_code_date(served: Server) -> None:
    smart = _client(served, "admin")
    vitals = Observation.where(struct={"category": f"{CAT}|vital-signs"}).perform_resources(smart.server)
    assert sorted(r.id for r in vitals) == ["hr1", "hr3"]
    assert sorted(_ids(_get(served, "Observation", category="laboratory").json())) == ["lab2", "lab9"]
    assert _get(served, "Observation", category="urn:other|laboratory").json()["total"] == 0
    assert _ids(_get(served, "Observation", status="amended").json()) == ["lab2"]
    assert _ids(_get(served, "Observation", identifier="urn:obs|hr3").json()) == ["hr3"]
    assert sorted(_ids(_get(served, "Observation", code=f"{LOINC}|2339-0").json())) == ["lab2", "lab9"]
    assert _get(served, "Observation", code="http://snomed.info/sct|2339-0").json()["total"] == 0
    assert sorted(_ids(_get(served, "Observation", date="gt2024-03-02").json())) == ["hr3", "lab9"]
    assert _ids(_get(served, "Observation", date="le2024-03-01").json()) == ["hr1"]
    assert _get(served, "Condition", category="problem-list-item", **{"clinical-status": "active"}).json()["total"] == 1
    mine = _get(served, "Observation", "clinician", category="laboratory").json()
    assert _ids(mine) == ["lab2"]  # P2's laboratory result is outside reach


def test_sort_and_paging_links(served: Server) -> None:
    newest = _get(served, "Observation", _sort="-date", _count="2").json()
    assert _ids(newest) == ["lab9", "hr3"]
    following = next(link["url"] for link in newest["link"] if link["relation"] == "next")
    second = requests.get(following, headers={"Authorization": f"Bearer {served.tokens['admin']}"},
                          timeout=30).json()
    assert _ids(second) == ["lab2", "hr1"]
    assert any(link["relation"] == "previous" for link in second["link"])
    assert _ids(_get(served, "Observation", _sort="date", _count="1").json()) == ["hr1"]
    assert _ids(_get(served, "Observation", _sort="-_id", _count="1").json()) == ["lab9"]
    bad = _get(served, "Patient", _sort="date")
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["_sort"]


def test_include_and_revinclude(served: Server) -> None:
    page = _get(served, "Observation", _id="hr3", _include="Observation:patient").json()
    assert _ids(page) == ["hr3"] and _ids(page, "include") == [P1]
    both = _get(served, "Observation", _id="hr3,hr1", _include=["Observation:performer"]).json()  # type: ignore[arg-type]
    assert _ids(both, "include") == ["doc1"]
    encounter = _get(served, "Encounter", _include="Encounter:service-provider").json()
    assert _ids(encounter, "include") == ["org1"]
    patients = _get(served, "Patient", _id=P1, _revinclude="Observation:patient").json()
    assert _ids(patients) == [P1] and sorted(_ids(patients, "include")) == ["hr1", "hr3", "lab2"]
    assert patients["total"] == 1  # included resources are not counted as matches
    refused = _get(served, "Observation", _include="Observation:nonsense")
    assert refused.status_code == 400 and refused.json()["issue"][0]["expression"] == ["_include"]
    client_bundle = Bundle.read_from(f"Patient?_id={P1}&_revinclude=Condition:patient", _client(served, "admin").server)
    assert [e.search.mode for e in client_bundle.entry] == ["match", "include"]


def _matching_value(name: str, resource: dict[str, Any]) -> str:
    """A value of search parameter ``name`` that ``resource`` matches, built from the resource itself."""
    rtype = resource["resourceType"]
    if name == "_id":
        return str(resource["id"])
    if name == "_lastUpdated":
        return "ge2000-01-01"
    if name == "identifier":
        ident = resource["identifier"][0]
        return f"{ident['system']}|{ident['value']}"
    if name in ("patient", "subject"):
        return str((resource.get("subject") or resource["patient"])["reference"])
    if name in fhir_search.code_params(rtype):  # the indexed code, by its R4 name (the last one listed)
        path = CODE_ELEMENTS[rtype][0].split(".")
        node = resource[path[0]]
        node = node[-1][path[1]] if len(path) > 1 else node
        coding = (node[0] if isinstance(node, list) else node).get("coding", [node])[0]
        return f"{coding['system']}|{coding['code']}"
    if name == fhir_search.date_param(rtype):
        stamp = next(resource[e] for e in SEARCH_TIME[rtype] if e in resource)
        if isinstance(stamp, dict):  # an ongoing period is not within one day (eq) but reaches past its start
            return "ge" + str(stamp["start"])[:10]
        return "eq" + str(stamp)[:10]
    if name == fhir_search.status_param(rtype):
        return str(status_of(resource))
    if name == "category":
        coding = resource["category"][0]["coding"][0]
        return f"{coding['system']}|{coding['code']}"
    raise AssertionError(f"the test has no value for advertised parameter {name!r} of {rtype}")


def test_capability_claims_exactly_what_works(served: Server) -> None:
    capability = _get(served, "metadata").json()
    described = {r["type"]: r for r in capability["rest"][0]["resource"]}
    stored = {r["resourceType"] for r in RESOURCES}
    assert stored <= set(described)
    usual = {"_id", "_lastUpdated", "identifier", "patient", "subject", "code", "date", "status", "category", "type",
             "modality", "created", "started", "clinical-status"}
    for rtype in sorted(stored):
        advertised = {p["name"] for p in described[rtype]["searchParam"]}
        for resource in (r for r in RESOURCES if r["resourceType"] == rtype):
            for name in advertised:
                answer = _get(served, rtype, **{name: _matching_value(name, resource)})
                assert answer.status_code == 200, (rtype, name, answer.text)
                assert resource["id"] in _ids(answer.json()), (rtype, name)
        for name in usual - advertised:
            refused = _get(served, rtype, **{name: "x"})
            assert refused.status_code == 400, (rtype, name)
            assert refused.json()["issue"][0]["code"] == "not-supported"
        for include in described[rtype]["searchInclude"]:
            assert _get(served, rtype, _include=include).status_code == 200
    assert {"code", "date", "status", "category", "patient"} <= {
        p["name"] for p in described["Observation"]["searchParam"]}
    assert "Observation:patient" in described["Patient"]["searchRevInclude"]
    assert "type" in {p["name"] for p in described["Encounter"]["searchParam"]}
    names = {t: {p["name"] for p in described[t]["searchParam"]} for t in described}
    assert {"modality", "started", "status"} <= names["ImagingStudy"] and "code" not in names["ImagingStudy"]
    assert {"created", "status"} <= names["Claim"] and not {"code", "date"} & names["Claim"]
    assert {"category", "date", "status"} <= names["CarePlan"] and "code" not in names["CarePlan"]
    assert "status" in names["SupplyDelivery"] and not {"code", "date"} & names["SupplyDelivery"]
    assert {"onset-date", "clinical-status"} <= names["Condition"] and not {"date", "status"} & names["Condition"]
    # a category element without an R4 category parameter is not advertised
    assert "category" not in fhir_search.search_params("MedicationAdministration")
    assert "category" in fhir_search.search_params("MedicationRequest")


def test_r4_names_answer_what_they_name(served: Server) -> None:
    """modality matches any series (not the procedure code); a code-less resource is found by status; a
    created range and _sort by the type's date parameter."""
    assert _ids(_get(served, "ImagingStudy", modality=f"{_DCM}|MR").json()) == ["is1"]
    assert _get(served, "ImagingStudy", modality="77477000").json()["total"] == 0
    assert _ids(_get(served, "SupplyDelivery", status="in-progress").json()) == ["sd2"]
    assert _get(served, "Claim", created="lt2024-02-03").json()["total"] == 0
    assert _ids(_get(served, "Condition", _sort="-onset-date").json()) == ["c1"]
    # e1's period started 2024-03-01 and has no end (ongoing): R4 reads ge/le as intersecting, eq as within
    assert _ids(_get(served, "Encounter", date="ge2025-06-01").json()) == ["e1"]
    assert _get(served, "Encounter", date="2024-03").json()["total"] == 0
    assert _get(served, "Encounter", date="lt2024-03-01").json()["total"] == 0
    assert _ids(_get(served, "Encounter", date="le2024-03-01").json()) == ["e1"]


def test_everything_type_since_and_care_dates(served: Server) -> None:
    """R4 $everything parameters: _type narrows matches and includes; start/end keep what overlaps the range
    (an ongoing Period does: CarePlan cp1, Encounter e1) and the undated (SupplyDelivery), saying how many;
    _since drops what did not change after it; a _type the token cannot read or a bad instant is refused."""
    def everything(**params: str) -> dict[str, Any]:
        answer = _get(served, f"Patient/{P1}/$everything", **params)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    assert sorted(_ids(everything(_type="Observation"))) == ["hr1", "hr3", "lab2"]
    with_doc = everything(_type="Observation,Practitioner")
    assert sorted(_ids(with_doc)) == ["hr1", "hr3", "lab2"] and _ids(with_doc, "include") == ["doc1"]
    ranged = everything(start="2024-03-02", end="2024-03-03")
    assert sorted(_ids(ranged)) == sorted([P1, "cp1", "e1", "hr3", "lab2", "sd1", "sd2"])
    assert sorted(_ids(ranged, "include")) == ["doc1", "org1"]
    outcome = ranged["entry"][0]
    assert outcome["search"]["mode"] == "outcome" and "2 resource(s)" in outcome["resource"]["issue"][0]["diagnostics"]
    assert sorted(_ids(everything(end="2020-12-31"))) == sorted([P1, "c1", "sd1", "sd2"])
    assert sorted(_ids(everything(start="2024-03-03T09:00:00Z", _type="Observation"))) == ["hr3"]
    assert everything(_since="2999-01-01T00:00:00Z")["total"] == 0
    assert everything(_since="2000-01-01T00:00:00Z")["total"] == everything()["total"]
    bad = _get(served, f"Patient/{P1}/$everything", _since="yesterday")
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["_since"]
    assert _get(served, f"Patient/{P1}/$everything", _type="Nonsense").status_code == 400


def test_scopes_limit_what_includes_and_everything_add(served: Server) -> None:
    """A token scoped to Patient and Observation reads no Practitioner through _include and no Condition,
    Encounter ... through $everything (the route's decision names only the type it serves)."""
    token = requests.post(f"{served.base.rsplit('/fhir', 1)[0]}/api/v1/auth/token", timeout=30, data={
        "grant_type": "password", "username": "admin", "password": PASSWORD,
        "scope": "system/Patient.rs system/Observation.rs"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    page = requests.get(f"{served.base}/Observation", params={"_id": "hr3", "_include": "Observation:performer"},
                        headers=headers, timeout=30).json()
    assert _ids(page) == ["hr3"] and _ids(page, "include") == []
    record = requests.get(f"{served.base}/Patient/{P1}/$everything", headers=headers, timeout=30).json()
    assert {e["resource"]["resourceType"] for e in record["entry"]} == {"Patient", "Observation"}
    patients = requests.get(f"{served.base}/Patient", params={"_id": P1, "_revinclude": "Condition:patient"},
                            headers=headers, timeout=30).json()
    assert _ids(patients) == [P1] and _ids(patients, "include") == []
