"""Writes through /fhir on a running server, driven by the FHIR client (fhirclient) where it has the call and
by HTTP otherwise: create, conditional create, update with If-Match (412) and conflicts (409), batch and
transaction Bundles (urn:uuid references rewritten, all or nothing), $validate; the /api/v1 write policy
(outside reach and missing answer alike) and audit; OperationOutcomes naming the field."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
from fhirclient.models.bundle import Bundle
from fhirclient.models.observation import Observation
from sqlalchemy import select
from tests.api.test_fhir_server import P1, P2, Server, _client, _collection, _observation, live_server

from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.security_tables import audit_log

FHIR = "application/fhir+json"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Store]]:
    patients = [b'{"resourceType":"Patient","id":"' + p.encode() + b'","gender":"male"}' for p in (P1, P2)]
    body = _collection(*patients, _observation("w1", P1, 1, "5.50"), _observation("w2", P2, 1, "6.0"))
    with live_server(tmp_path_factory, "fhir-write", body) as served:
        yield served


def _call(server: Server, method: str, path: str, user: str = "admin", body: Any = None,
          headers: dict[str, str] | None = None) -> requests.Response:
    sent = {"Authorization": f"Bearer {server.tokens[user]}", "Content-Type": FHIR, **(headers or {})}
    data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    return requests.request(method, f"{server.base}/{path}", data=data, headers=sent, timeout=30)


def _glucose(patient: str, value: str = "7.10", **extra: Any) -> bytes:
    fields = {"status": "final", "effectiveDateTime": "2024-02-01T08:00:00Z", **extra}
    rest = b",".join(b'"' + k.encode() + b'":' + orjson.dumps(v) for k, v in fields.items())
    return (b'{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"15074-8"}]},'
            b'"subject":{"reference":"Patient/' + patient.encode() + b'"},"valueQuantity":{"value":'
            + value.encode() + b',"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"},'
            + rest + b"}")


def test_create_with_the_client_and_decimals_kept(live: tuple[Server, Store]) -> None:
    server, _ = live
    smart = _client(server, "admin")
    made = Observation(orjson.loads(_glucose(P1)))
    answer = made.create(smart.server)
    assert answer["resourceType"] == "Observation" and answer["meta"]["versionId"] == "1"
    back = Observation.read(answer["id"], smart.server)
    assert back.subject.reference == f"Patient/{P1}" and back.status == "final"
    raw = _call(server, "POST", "Observation", body=_glucose(P1, "7.10", status="preliminary"))
    assert raw.status_code == 201 and b'"value":7.10' in raw.content
    location = raw.headers["location"]
    assert location == f"{server.base}/Observation/{raw.json()['id']}/_history/1" and raw.headers["etag"] == 'W/"1"'
    read = _call(server, "GET", location.split("/fhir/", 1)[1])
    assert read.status_code == 200 and b'"value":7.10' in read.content
    again = _call(server, "POST", "Observation", body=_glucose(P1, "7.10", status="preliminary"))
    assert again.status_code == 201 and again.json()["id"] != raw.json()["id"]  # a POST creates


def test_conditional_create_answers_the_match(live: tuple[Server, Store]) -> None:
    server, store = live
    body = _glucose(P1, identifier=[{"system": "urn:lab", "value": "L-1"}])
    first = _call(server, "POST", "Observation", body=body, headers={"If-None-Exist": "identifier=urn:lab|L-1"})
    second = _call(server, "POST", "Observation", body=body, headers={"If-None-Exist": "identifier=urn:lab|L-1"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    with store.connect() as connection:
        assert RecordRepository(connection, store.codec).find_by_identifier("Observation", "urn:lab", "L-1") == \
            first.json()["id"]
    shared = [{"system": "urn:cc", "value": "1"}]  # another patient's first, then one within the clinician's reach
    theirs, mine = (_call(server, "POST", "Observation", body=_glucose(p, identifier=shared)) for p in (P2, P1))
    matched = _call(server, "POST", "Observation", "clinician", body=_glucose(P1, identifier=shared),
                    headers={"If-None-Exist": "identifier=urn:cc|1"})
    assert (matched.status_code, matched.json()["id"]) == (200, mine.json()["id"]) != (200, theirs.json()["id"])


def test_update_with_if_match_and_history(live: tuple[Server, Store]) -> None:
    server, _ = live
    smart = _client(server, "admin")
    current = Observation.read("w1", smart.server)
    current.status = "amended"
    assert current.update(smart.server)["meta"]["versionId"] == "2"
    body = orjson.loads(_glucose(P1, "5.60"))
    body["id"] = "w1"
    ok = _call(server, "PUT", "Observation/w1", body=orjson.dumps(body).replace(b"5.6", b"5.60"),
               headers={"If-Match": 'W/"2"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"3"' and b'"value":5.60' in ok.content
    stale = _call(server, "PUT", "Observation/w1", body=body, headers={"If-Match": 'W/"2"'})
    assert stale.status_code == 412 and stale.json()["issue"][0]["expression"] == ["If-Match"]
    assert "version 3 is current" in stale.json()["issue"][0]["diagnostics"]
    history = _call(server, "GET", "Observation/w1/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3", "2", "1"]
    assert b'"value":5.50' in _call(server, "GET", "Observation/w1/_history/1").content
    assert _call(server, "PUT", "Observation/w1", body=body, headers={"If-Match": "three"}).status_code == 400


def test_update_refusals_name_the_field(live: tuple[Server, Store]) -> None:
    server, _ = live
    body = orjson.loads(_glucose(P1, status="bogus"))
    body["id"] = "w1"
    bad = _call(server, "PUT", "Observation/w1", body=body)
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["Observation.status"]
    body["status"], body["id"] = "final", "w2"
    mismatch = _call(server, "PUT", "Observation/w1", body=body)
    assert mismatch.status_code == 400 and mismatch.json()["issue"][0]["expression"] == ["Observation.id"]
    wrong_type = _call(server, "PUT", "Patient/w1", body=body)
    assert wrong_type.status_code == 400 and wrong_type.json()["issue"][0]["expression"] == ["resourceType"]
    assert _call(server, "POST", "Observation", body=b"{not json").status_code == 400
    assert _call(server, "POST", "Observation", body=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    for method in ("DELETE", "PATCH"):
        refused = _call(server, method, "Observation/w1")
        assert refused.status_code == 405 and refused.json()["issue"][0]["code"] == "not-supported"
    assert _call(server, "GET", "Observation/w1").status_code == 200


def test_older_content_is_a_conflict(live: tuple[Server, Store]) -> None:
    server, _ = live
    body = orjson.loads(_glucose(P1))
    body["id"] = "dated"
    body["meta"] = {"lastUpdated": "2030-01-01T00:00:00Z"}
    assert _call(server, "PUT", "Observation/dated", body=body).status_code == 201  # an admin creates by PUT
    body["meta"] = {"lastUpdated": "2020-01-01T00:00:00Z"}
    body["status"] = "amended"
    older = _call(server, "PUT", "Observation/dated", body=body)
    assert older.status_code == 409 and older.json()["issue"][0]["code"] == "conflict"
    assert older.json()["issue"][0]["expression"] == ["Observation.meta.lastUpdated"]


def test_write_policy_outside_reach_looks_missing(live: tuple[Server, Store]) -> None:
    server, store = live
    own = _call(server, "POST", "Observation", "clinician", body=_glucose(P1))
    assert own.status_code == 201
    other = _call(server, "POST", "Observation", "clinician", body=_glucose(P2))
    nobody = _call(server, "POST", "Observation", "clinician", body=_glucose("nobody"))
    assert other.status_code == nobody.status_code == 400
    assert other.json()["issue"][0]["diagnostics"].replace(P2, "X") == \
        nobody.json()["issue"][0]["diagnostics"].replace("nobody", "X")
    body = orjson.loads(_glucose(P1))
    for rid in ("w2", "absent"):  # P2's Observation and one that does not exist
        body["id"] = rid
        answer = _call(server, "PUT", f"Observation/{rid}", "clinician", body=body)
        assert answer.status_code == 404 and answer.json()["issue"][0]["code"] == "not-found"
    moved = orjson.loads(_glucose(P2))
    moved["id"] = "w1"
    refused = _call(server, "PUT", "Observation/w1", "clinician", body=moved)  # to a patient outside reach
    assert refused.status_code == 400 and "Patient/fhir-p2" in refused.json()["issue"][0]["diagnostics"]
    assert _call(server, "GET", "Observation/w1").json()["subject"]["reference"] == f"Patient/{P1}"
    with store.connect() as connection:
        rows = connection.execute(select(audit_log.c.action, audit_log.c.resource_type, audit_log.c.outcome,
                                         audit_log.c.actor).where(audit_log.c.actor == "clinician")).all()
    assert ("write", "Observation", "success", "clinician") in rows
    assert any(r.action == "write" and r.outcome != "success" for r in rows)


def test_transaction_rewrites_urn_uuid_references_all_or_nothing(live: tuple[Server, Store]) -> None:
    server, store = live
    patient = "urn:uuid:6c5c1c4e-2a7c-4a57-9d7e-1b2f3c4d5e6f"
    observation = orjson.loads(_glucose("X", "8.25"))
    observation["subject"] = {"reference": patient}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient, "resource": {"resourceType": "Patient", "gender": "female"},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:0f4a2c9e-77b1-4f0e-8c61-3d2a1b0c9e8f", "resource": observation,
         "request": {"method": "POST", "url": "Observation"}}]}
    smart = _client(server, "admin")
    answer = smart.server.post_json("", bundle)  # the FHIR client's own transaction call (POST to the base)
    assert answer.status_code == 200, answer.text
    response = answer.json()
    parsed = Bundle(response)  # a valid Bundle to the client's models
    assert parsed.type == "transaction-response" and parsed.entry[0].response.status == "201 Created"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    patient_location, obs_location = (e["response"]["location"] for e in response["entry"])
    patient_id = patient_location.split("/")[1]
    stored = _call(server, "GET", obs_location.rsplit("/_history", 1)[0])
    assert stored.json()["subject"]["reference"] == f"Patient/{patient_id}" and b'"value":8.25' in stored.content
    assert response["entry"][0]["response"]["etag"] == 'W/"1"'
    assert response["entry"][0]["response"]["lastModified"] == stored.json()["meta"]["lastUpdated"]

    with store.connect() as connection:
        before = RecordRepository(connection, store.codec).count_by_type()
    broken = orjson.loads(orjson.dumps(bundle))
    broken["entry"][0]["fullUrl"] = "urn:uuid:9d1e0f7a-1111-4222-8333-444455556666"
    broken["entry"][1]["resource"]["effectiveDateTime"] = "2024-13-45T99:00:00Z"
    refused = _call(server, "POST", "", body=broken)
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"
    issue = refused.json()["issue"][0]
    assert issue["expression"] == ["Observation.effectiveDateTime"] and issue["location"] == ["Bundle.entry[1]"]
    with store.connect() as connection:
        assert RecordRepository(connection, store.codec).count_by_type() == before  # nothing of it stored

    again = _call(server, "POST", "", body=bundle).json()  # the same transaction: the same resources
    assert [e["response"]["status"] for e in again["entry"]] == ["200 OK", "200 OK"]
    assert [e["response"]["location"] for e in again["entry"]] == [patient_location, obs_location]
    stale = orjson.loads(orjson.dumps(bundle))  # an update of the Observation, then a PUT expecting version 7
    stale["entry"][1]["resource"]["effectiveDateTime"] = "2024-02-02T08:00:00Z"
    stale["entry"].append({"resource": {**orjson.loads(_glucose(P1)), "id": "w2"},
                           "request": {"method": "PUT", "url": "Observation/w2", "ifMatch": 'W/"7"'}})
    refused = _call(server, "POST", "", body=stale)
    assert refused.status_code == 412 and refused.json()["issue"][0]["location"] == ["Bundle.entry[2]"], refused.text
    with store.connect() as connection:
        assert RecordRepository(connection, store.codec).count_by_type() == before
    current = _call(server, "GET", obs_location.rsplit("/_history", 1)[0]).json()
    assert current["meta"]["versionId"] == "1" and current["effectiveDateTime"] == "2024-02-01T08:00:00Z"


def test_batch_answers_each_entry(live: tuple[Server, Store]) -> None:
    server, _ = live
    good = orjson.loads(_glucose(P1, "9.00"))
    bad = orjson.loads(_glucose(P1, status="nonsense"))
    update = orjson.loads(_glucose(P1))
    update["id"] = "w1"
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": good, "request": {"method": "POST", "url": "Observation"}},
        {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
        {"resource": update, "request": {"method": "PUT", "url": "Observation/w1", "ifMatch": 'W/"1"'}},
        {"resource": good, "request": {"method": "DELETE", "url": "Observation/w1"}}]}
    response = _call(server, "POST", "", body=bundle).json()
    assert response["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "412 Precondition Failed", "400 Bad Request"]
    assert response["entry"][1]["response"]["outcome"]["issue"][0]["expression"] == ["Observation.status"]
    assert response["entry"][3]["response"]["outcome"]["issue"][0]["code"] == "not-supported"
    assert response["entry"][0]["fullUrl"].startswith(f"{server.base}/Observation/")


def test_validate_type_and_instance(live: tuple[Server, Store]) -> None:
    server, store = live
    with store.connect() as connection:
        before = RecordRepository(connection, store.codec).count_by_type()
    fine = _call(server, "POST", "Observation/$validate", body=_glucose(P1))
    assert fine.status_code == 200 and fine.json()["issue"][0]["severity"] == "information"
    wrong = _call(server, "POST", "Observation/$validate", body=_glucose(P1, effectiveDateTime="2024-13-45"))
    assert wrong.status_code == 200 and wrong.json()["issue"][0]["severity"] == "error"
    assert wrong.json()["issue"][0]["expression"] == ["Observation.effectiveDateTime"]
    unknown = orjson.loads(_glucose(P1))
    unknown["colour"] = "blue"
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": unknown}]}
    flagged = _call(server, "POST", "Observation/w1/$validate", body=parameters).json()["issue"][0]
    assert flagged["severity"] == "error" and "colour" in flagged["expression"][0]
    dangling = _call(server, "POST", "Observation/$validate", "clinician", body=_glucose(P2)).json()["issue"][0]
    assert dangling["severity"] == "error" and dangling["code"] == "invalid"  # P2 is outside reach: unknown
    with store.connect() as connection:
        assert RecordRepository(connection, store.codec).count_by_type() == before


def test_conditional_update_creates_updates_and_refuses_several(live: tuple[Server, Store]) -> None:
    """PUT Type?identifier= (and as a batch/transaction entry): no match, a create; one, an update (If-Match-like
    at the version found); several, 412; a match outside the caller's reach is no match (their write creates,
    the other stays untouched)."""
    server, store = live

    def put(criteria: str, patient: str, value: str, user: str = "admin", **extra: Any) -> requests.Response:
        system, _, code = criteria.partition("|")
        body = _glucose(patient, value, identifier=[{"system": system, "value": code}], **extra)
        return _call(server, "PUT", f"Observation?identifier={criteria}", user, body=body)

    created = put("urn:cu|1", P1, "8.10")
    assert created.status_code == 201 and created.json()["meta"]["versionId"] == "1"
    updated = put("urn:cu|1", P1, "8.20")
    assert (updated.status_code, updated.json()["id"], updated.json()["meta"]["versionId"]) == \
        (200, created.json()["id"], "2")
    assert b'"value":8.20' in updated.content
    wrong = put("urn:cu|1", P1, "8.30", id="not-the-match")
    assert wrong.status_code == 400 and wrong.json()["issue"][0]["expression"] == ["Observation.id"]
    assert _call(server, "POST", "Observation", body=_glucose(P1, identifier=[{"system": "urn:cu", "value": "1"}])
                 ).status_code == 201
    several = put("urn:cu|1", P1, "8.40")
    assert several.status_code == 412 and several.json()["issue"][0]["expression"] == ["url"]
    other = put("urn:cu|2", P2, "9.10")  # P2's, outside the clinician's reach
    mine = put("urn:cu|2", P1, "9.20", user="clinician")
    assert (other.status_code, mine.status_code) == (201, 201) and mine.json()["id"] != other.json()["id"]
    again = put("urn:cu|2", P1, "9.30", user="clinician")  # one within reach: updated, not 412
    assert (again.status_code, again.json()["id"]) == (200, mine.json()["id"])
    assert put("urn:cu|2", P1, "9.40").status_code == 412  # the admin sees both
    with store.connect() as connection:
        assert RecordRepository(connection, store.codec).current("Observation", other.json()["id"]).version == 1  # type: ignore[union-attr]
    entries = [{"resource": orjson.loads(_glucose(P1, v, identifier=[{"system": "urn:cu", "value": n}])),
                "request": {"method": "PUT", "url": f"Observation?identifier=urn:cu|{n}"}}
               for n, v in (("1", "8.50"), ("2", "9.50"))]  # several for anyone; one in the clinician's reach
    batch = _call(server, "POST", "", "clinician", body={"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert [e["response"]["status"] for e in batch.json()["entry"]] == ["412 Precondition Failed", "200 OK"]
    assert batch.json()["entry"][1]["response"]["location"].startswith(f"Observation/{mine.json()['id']}/")
    whole = _call(server, "POST", "", body={"resourceType": "Bundle", "type": "transaction", "entry": entries[1:]})
    assert whole.status_code == 412  # the admin reaches both urn:cu|2
    several_create = _call(server, "POST", "Observation", body=_glucose(P1), headers={"If-None-Exist": "identifier=urn:cu|1"})
    assert several_create.status_code == 412 and several_create.json()["issue"][0]["expression"] == ["If-None-Exist"]
    refused = _call(server, "PUT", "Observation?code=15074-8", body=_glucose(P1))
    assert refused.status_code == 400 and refused.json()["issue"][0]["code"] == "not-supported"
    assert _call(server, "PUT", "Observation", body=_glucose(P1)).status_code == 400


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_identifier_matches_are_counted_within_reach_over_rest_and_in_bundles(live: tuple[Server, Store]) -> None:
    """One rule for If-None-Exist / ifNoneExist and conditional references (``Type?identifier=``), over REST
    and in a batch or transaction: the matches within the caller's reach count (another patient's stored
    first looks missing); one is that one, several are a 412 naming the entry."""
    server, _ = live
    tag = [{"system": "urn:reach", "value": "1"}]
    theirs, mine = (_call(server, "POST", "Observation", body=_glucose(p, identifier=tag)).json()["id"]
                    for p in (P2, P1))
    create = {"fullUrl": "urn:uuid:6f1e0a52-0d1c-4d38-9a51-3c0b8e2b7a01", "resource": orjson.loads(
        _glucose(P1, identifier=tag)), "request": {"method": "POST", "url": "Observation",
                                                   "ifNoneExist": "identifier=urn:reach|1"}}
    derived = orjson.loads(_glucose(P1, "7.20", derivedFrom=[{"reference": "Observation?identifier=urn:reach|1"}]))
    by_reference = {"resource": derived, "request": {"method": "POST", "url": "Observation"}}
    for kind in ("batch", "transaction"):
        fresh = {**by_reference, "fullUrl": f"urn:uuid:{uuid.uuid4()}"}  # a new reading each time
        answer = _call(server, "POST", "", "clinician", body=_bundle(kind, create, fresh))
        assert answer.status_code == 200, answer.text
        matched, made = (e["response"] for e in answer.json()["entry"])
        assert (matched["status"], matched["location"].split("/")[1]) == ("200 OK", mine) != ("200 OK", theirs)
        stored = _call(server, "GET", "/".join(made["location"].split("/")[:2])).json()
        assert made["status"] == "201 Created" and stored["derivedFrom"] == [{"reference": f"Observation/{mine}"}]
    over_rest = _call(server, "POST", "Observation", "clinician", body=orjson.dumps(derived))
    assert over_rest.status_code == 201 and over_rest.json()["derivedFrom"][0]["reference"] == f"Observation/{mine}"
    assert _call(server, "POST", "Observation", body=_glucose(P1, identifier=tag)).status_code == 201  # two mine
    rest_several = _call(server, "POST", "Observation", "clinician", body=orjson.dumps(derived))
    assert rest_several.status_code == 412 and "multiple matches" in rest_several.json()["issue"][0]["diagnostics"]
    for kind, entries in (("batch", (by_reference,)), ("transaction", (create, by_reference))):
        several = _call(server, "POST", "", "clinician", body=_bundle(kind, *entries))
        issue = (several.json() if kind == "transaction" else several.json()["entry"][0]["response"]["outcome"]
                 )["issue"][0]
        assert several.status_code == (412 if kind == "transaction" else 200)
        assert "multiple matches" in issue["diagnostics"] and issue["location"] == ["Bundle.entry[0]"]


def test_conditional_update_without_a_match_creates_under_a_server_id(live: tuple[Server, Store]) -> None:
    """R4: a conditional update with no match performs a create, and a create ignores an id sent; the same
    over REST and as a batch entry (the id sent is never a key, a matching update later finds the resource)."""
    server, _ = live
    for n, send in enumerate(("rest", "batch")):
        body = orjson.loads(_glucose(P1, identifier=[{"system": "urn:noid", "value": str(n)}]))
        body["id"] = f"sent-{send}"
        url = f"Observation?identifier=urn:noid|{n}"
        if send == "rest":
            answer = _call(server, "PUT", url, body=body)
            status, made = answer.status_code, answer.json()["id"]
        else:
            entry = _call(server, "POST", "", body=_bundle("batch", {"resource": body, "request": {
                "method": "PUT", "url": url}})).json()["entry"][0]["response"]
            status, made = int(entry["status"][:3]), entry["location"].split("/")[1]
        assert (status, made != f"sent-{send}") == (201, True)
        assert _call(server, "GET", f"Observation/sent-{send}").status_code == 404
        del body["id"]
        assert _call(server, "PUT", url, body=body).json()["id"] == made  # one match now: updated



def test_issued_only_reading_is_charted_but_not_date_searched(live: tuple[Server, Store]) -> None:
    """An Observation with ``issued`` and no effective[x]: FHIR ``date`` is effective[x] only (not found by
    it), while the chart series of /api/v1 (time-filtered) still find the reading at its issued time."""
    server, _ = live
    reading = orjson.loads(_glucose(P1, "6.60", issued="2031-05-04T10:00:00Z"))
    del reading["effectiveDateTime"]
    made = _call(server, "POST", "Observation", body=reading).json()["id"]
    searched = _call(server, "GET", "Observation?date=ge2031-05-04&date=le2031-05-05").json()
    assert made not in {e["resource"]["id"] for e in searched.get("entry", [])}
    api = server.base.rsplit("/fhir", 1)[0] + "/api/v1"
    page = requests.get(f"{api}/patients/{P1}/observations", timeout=30,
                        params={"code": "15074-8", "start": "2031-05-04T00:00:00Z", "end": "2031-05-05T00:00:00Z"},
                        headers={"Authorization": f"Bearer {server.tokens['clinician']}"}).json()
    assert [(i["resource_id"], i["effective"], i["value"]) for i in page["items"]] == \
        [(made, "2031-05-04T10:00:00Z", 6.6)]
