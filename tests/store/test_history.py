"""Versioned store (issue 16 defect 1) and decimal fidelity (defect 2), on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.record import exactjson
from medtwin.record.sources import RawUnit, unit_from_bytes
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.twin.build import import_units


def _bundle(height: float | str, *, last_updated: str | None = None) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation", "id": "obs-1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": "Patient/p-1"}, "effectiveDateTime": "2024-01-02T03:04:05Z",
        "valueQuantity": {"value": height, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
    }
    if last_updated is not None:
        observation["meta"] = {"lastUpdated": last_updated}
    # a collection, as a hospital export or a Synthea file re-sent: each resource names itself
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p-1"}}, {"resource": observation}]}


def _import(store: Store, bundle: dict[str, Any], *, force: bool = False, name: str = "b.json") -> Any:
    raw = unit_from_bytes(orjson.dumps(bundle), source=name)
    return import_units(store, [raw], force=force).units[0]


def _value(resource: dict[str, Any]) -> Any:
    return resource["valueQuantity"]["value"]


def test_every_version_kept_and_an_older_bundle_is_a_conflict(store: Store) -> None:
    assert _import(store, _bundle(170.0)).ok
    second = _import(store, _bundle(171.5))
    assert second.ok and second.updated == 1
    with store.connect() as connection:
        history = RecordRepository(connection, store.codec).history("Observation", "obs-1")
    assert [v.version for v in history] == [2, 1]
    assert [_value(v.resource()) for v in history] == [171.5, 170.0]

    # re-importing the first bundle would silently revert: a conflict naming the resource, nothing written
    reverted = _import(store, _bundle(170.0))
    assert not reverted.ok and reverted.error is not None
    assert reverted.error.kind == "conflict" and "Observation/obs-1" in reverted.error.message
    assert reverted.error.entry == 2
    # identical content: unchanged, no new version
    same = _import(store, _bundle(171.5))
    assert same.ok and same.unchanged == 2 and same.updated == 0
    with store.connect() as connection:
        repo = RecordRepository(connection, store.codec)
        current = repo.current("Observation", "obs-1")
        assert current is not None and current.version == 2 and _value(current.resource()) == 171.5
        old = repo.version("Observation", "obs-1", 1)
        assert old is not None and _value(old.resource()) == 170.0
        assert repo.version("Observation", "obs-1", 3) is None

    # a PUT to the resource's URL is a deliberate update: going back is allowed (version 3)
    put = _bundle(171.5)
    put["entry"][1]["request"] = {"method": "PUT", "url": "Observation/obs-1"}
    put["entry"][1]["resource"]["valueQuantity"]["value"] = 172.0
    assert _import(store, put).ok
    put["entry"][1]["resource"]["valueQuantity"]["value"] = 171.5
    assert _import(store, put).ok
    # forced, a revert of a re-imported copy is a new version whose content is version 1's
    forced = _import(store, _bundle(170.0), force=True)
    assert forced.ok and forced.updated == 1
    with store.connect() as connection:
        history = RecordRepository(connection, store.codec).history("Observation", "obs-1")
    assert [(v.version, _value(v.resource())) for v in history] == [(5, 170.0), (4, 171.5), (3, 172.0),
                                                                      (2, 171.5), (1, 170.0)]


def test_older_last_updated_is_a_conflict(store: Store) -> None:
    assert _import(store, _bundle(170.0, last_updated="2025-03-01T00:00:00Z")).ok
    older = _import(store, _bundle(160.0, last_updated="2024-03-01T00:00:00Z"))
    assert not older.ok and older.error is not None and older.error.kind == "conflict"
    assert older.error.field == "Observation.meta.lastUpdated"
    newer = _import(store, _bundle(180.0, last_updated="2026-03-01T00:00:00Z"))
    assert newer.ok and newer.updated == 1


DECIMALS = b'{"resourceType":"Bundle","type":"transaction","entry":[' \
    b'{"resource":{"resourceType":"Patient","id":"p-1"},"request":{"method":"PUT","url":"Patient/p-1"}},' \
    b'{"resource":{"resourceType":"Observation","id":"obs-1","status":"final","code":{"coding":[' \
    b'{"system":"http://loinc.org","code":"2339-0"}]},"subject":{"reference":"Patient/p-1"},' \
    b'"effectiveDateTime":"2024-01-02T03:04:05Z","valueQuantity":{"value":840.20,"unit":"mg/dL",' \
    b'"system":"http://unitsofmeasure.org","code":"mg/dL"},"component":[{"code":{"text":"a"},' \
    b'"valueQuantity":{"value":0.00}},{"code":{"text":"b"},"valueQuantity":{"value":12345678901234567890.123}},' \
    b'{"code":{"text":"c"},"valueQuantity":{"value":1.5E3}},{"code":{"text":"d"},"valueQuantity":{"value":' \
    b'123456789012345678901234}}]},"request":{"method":"PUT","url":"Observation/obs-1"}}]}'


def test_decimals_stored_and_returned_as_written(store: Store) -> None:
    report = import_units(store, [unit_from_bytes(DECIMALS, source="d.json")]).units[0]
    assert report.ok, report.error
    with store.connect() as connection:
        repo = RecordRepository(connection, store.codec)
        stored = repo.current("Observation", "obs-1")
        assert stored is not None
        for literal in (b'"value":840.20', b'"value":0.00', b'"value":12345678901234567890.123',
                        b'"value":1.5E3', b'"value":123456789012345678901234'):
            assert literal in stored.raw
        # the index computes with the number
        total, rows = repo.observations("p-1", code="2339-0")
    assert total == 1 and rows[0]["value"] == 840.2
    # importing the same text again is idempotent
    again = import_units(store, [unit_from_bytes(DECIMALS, source="d.json")]).units[0]
    assert again.ok and again.unchanged == 2


@settings(max_examples=200, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False).map(str)
       | st.floats(allow_nan=False, allow_infinity=False).map(repr))
def test_exactjson_round_trips_any_number_literal(literal: str) -> None:
    text = f'{{"v":{literal},"w":[{literal}]}}'.encode()
    try:
        json.loads(text)
    except ValueError:
        return  # not a JSON number literal (e.g. "1E+2" is, "sNaN" is not)
    assert exactjson.dumps(exactjson.loads(text)) == text
    parsed = exactjson.loads(text)
    assert float(parsed["v"]) == float(literal)


def test_exactjson_edge_literals() -> None:
    for literal in ("-0", "-0.0", "0.00", "1e400", "-1E-400", "12345678901234567890", "1.0", "100"):
        text = f'{{"v":{literal}}}'.encode()
        assert exactjson.dumps(exactjson.loads(text)) == text


def test_exactjson_refuses_nan() -> None:
    for bad in (b'{"v":NaN}', b'{"v":Infinity}'):
        try:
            exactjson.loads(bad)
        except ValueError as error:
            assert "NaN" in str(error) or "Infinity" in str(error)
        else:
            raise AssertionError("accepted a non-JSON number")


def test_raw_unit_copy_keeps_text() -> None:
    unit = unit_from_bytes(DECIMALS, source="d.json")
    assert isinstance(unit, RawUnit)
    copied = copy.deepcopy(unit.data)
    assert b"840.20" in exactjson.dumps(copied)


def test_the_original_patient_id_finds_the_patient(store: Store) -> None:
    """Issue 16 defect 6: a POSTed Patient gets a server id; the id it had in the input still finds it."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:3f1c0c2e-5a8b-4bcb-a1d0-0c8c1f6a1111",
         "resource": {"resourceType": "Patient", "id": "3f1c0c2e-5a8b-4bcb-a1d0-0c8c1f6a1111",
                      "identifier": [{"system": "http://hospital.example/mrn", "value": "MRN-77"}]},
         "request": {"method": "POST", "url": "Patient"}}]}
    assert _import(store, bundle).ok
    with store.connect() as connection:
        repo = RecordRepository(connection, store.codec)
        server_id = repo.patient_ids()[0]
        assert server_id != "3f1c0c2e-5a8b-4bcb-a1d0-0c8c1f6a1111"
        assert repo.resolve_patient("3f1c0c2e-5a8b-4bcb-a1d0-0c8c1f6a1111") == server_id
        assert repo.resolve_patient("MRN-77") == server_id
        assert repo.find_by_source_id("Observation", "3f1c0c2e-5a8b-4bcb-a1d0-0c8c1f6a1111") is None
        assert repo.resolve_patient("no-such-id") is None


def test_export_has_valid_full_urls_include_modes_versions_and_reimports_unchanged(store: Store) -> None:
    """Issue 16 defect 3."""
    from medtwin.twin.build import export_patient

    shared = {"resourceType": "Organization", "id": "org-1", "name": "General"}
    bundle = _bundle(170.0)
    bundle["entry"].insert(0, {"resource": shared})
    bundle["entry"][2]["resource"]["performer"] = [{"reference": "Organization/org-1"}]
    assert _import(store, bundle).ok
    assert _import(store, _bundle(171.0) | {"entry": [bundle["entry"][0], bundle["entry"][1],
                                                        {"resource": bundle["entry"][2]["resource"]
                                                         | {"valueQuantity": {"value": 171.0}}}]}).ok
    exported = export_patient(store, "p-1")
    assert exported is not None and "link" not in exported
    modes = {e["resource"]["resourceType"]: e["search"]["mode"] for e in exported["entry"]}
    assert modes == {"Patient": "match", "Observation": "match", "Organization": "include"}
    assert exported["total"] == 2
    assert all(e["fullUrl"].startswith("urn:uuid:") and len(e["fullUrl"]) == 45 for e in exported["entry"])
    observation = next(e["resource"] for e in exported["entry"] if e["resource"]["resourceType"] == "Observation")
    assert observation["meta"]["versionId"] == "2" and observation["meta"]["lastUpdated"].endswith("Z")
    served = export_patient(store, "p-1", base_url="http://host/fhir/")
    assert served is not None and served["link"] == [{"relation": "self",
                                                       "url": "http://host/fhir/Patient/p-1/$everything"}]
    assert {e["fullUrl"] for e in served["entry"]} >= {"http://host/fhir/Observation/obs-1"}
    again = import_units(store, [RawUnit("export.json", "json", exactjson.loads(exactjson.dumps(exported)))])
    assert again.ok and again.totals()["updated"] == 0 and again.totals()["created"] == 0


def test_search_and_type_history_in_the_store(store: Store) -> None:
    """The queries behind /fhir search and _history, on each backend."""
    from datetime import UTC, datetime

    from medtwin.store.records import SearchQuery

    assert _import(store, _bundle(170.0)).ok
    assert _import(store, _bundle(171.0)).ok
    with store.connect() as connection:
        repo = RecordRepository(connection, store.codec)
        total, found = repo.search("Observation", SearchQuery(patient="p-1", codes=(("http://loinc.org", "8302-2"),)))
        assert total == 1 and found[0].version == 2
        assert repo.search("Observation", SearchQuery(codes=((None, "8302-2"),)))[0] == 1
        assert repo.search("Observation", SearchQuery(codes=(("http://snomed.info/sct", "8302-2"),)))[0] == 0
        day = datetime(2024, 1, 2, tzinfo=UTC)
        assert repo.search("Observation", SearchQuery(dates=(("ge", day), ("lt", day.replace(day=3)))))[0] == 1
        assert repo.search("Observation", SearchQuery(dates=(("ge", day.replace(day=3)),)))[0] == 0
        assert repo.search("Observation", SearchQuery(visible=frozenset({"someone-else"})))[0] == 0
        assert repo.search("Patient", SearchQuery(ids=frozenset({"p-1", "nope"})))[0] == 1
        total, versions = repo.type_history("Observation", visible=None, count=10, offset=0)
        assert total == 2 and [v.version for v in versions] == [2, 1]
        assert repo.type_history("Observation", visible=frozenset({"x"}), count=10, offset=0)[0] == 0


def test_key_rotation_reseals_earlier_versions() -> None:
    from medtwin.security.crypto import sealed_columns
    from medtwin.store.schema import metadata

    found = {(t.name, c) for t, _, c in sealed_columns(metadata.tables.values())}
    # the tables' own mark is the one list: the current version, its history and the twin's payload alike
    assert {("resource_history", "content"), ("resources", "content"), ("twin_versions", "payload")} <= found
