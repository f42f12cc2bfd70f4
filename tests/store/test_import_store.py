"""Importing into the store on SQLite and PostgreSQL: the 10 Synthea patients, round trip, idempotency,
all-or-nothing units, unit flags."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from medtwin.record import exactjson
from medtwin.record.sources import RawUnit, read_units
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.schema import imports, resource_index, resources, samples
from medtwin.twin.build import export_patient, import_units


def bundle_counts(path: Path) -> Counter[str]:
    bundle = json.loads(path.read_text())
    return Counter(e["resource"]["resourceType"] for e in bundle["entry"])


def stored_counts(store: Store) -> Counter[str]:
    with store.connect() as connection:
        return Counter(RecordRepository(connection, store.codec).count_by_type())


@pytest.mark.slow
def test_synthea_import_counts_round_trip_and_idempotency(store: Store, synthea_dir: Path, tmp_path: Path) -> None:
    report = import_units(store, read_units([synthea_dir]))
    assert report.ok, [u.error for u in report.errors]
    expected: Counter[str] = Counter()
    for path in synthea_dir.glob("*.json"):
        if path.name != "MANIFEST.json":
            expected += bundle_counts(path)
    # every entry is stored once; the support bundles' conditional creates don't duplicate
    assert stored_counts(store) == expected
    manifest = json.loads((synthea_dir / "MANIFEST.json").read_text())
    for rtype, count in manifest["patient_resource_type_totals"].items():
        assert stored_counts(store)[rtype] == count

    # importing the same files again changes nothing
    again = import_units(store, read_units([synthea_dir]))
    assert again.totals()["created"] == 0 and again.totals()["updated"] == 0
    assert again.totals()["unchanged"] == sum(expected.values())
    assert stored_counts(store) == expected

    # export each patient and import the exports into an empty store: same resources, same content
    with store.connect() as connection:
        ids = RecordRepository(connection, store.codec).patient_ids()
    assert len(ids) == 10
    exports = [b for b in (export_patient(store, pid) for pid in ids) if b is not None]
    assert len(exports) == len(ids)
    empty = Store(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    empty.migrate()
    units = [RawUnit(f"export-{i}.json", "json", exactjson.loads(exactjson.dumps(b))) for i, b in enumerate(exports)]
    assert import_units(empty, units).ok
    original = _all_resources(store)
    copied = _all_resources(empty)
    exported_keys = {(e["resource"]["resourceType"], e["resource"]["id"]) for b in exports for e in b["entry"]}
    assert set(copied) == exported_keys
    for key in exported_keys:
        assert copied[key] == original[key]
    # every patient-compartment resource made the trip
    patient_keys = {k for k, v in original.items() if _patient_of(store, k)}
    assert patient_keys <= set(copied)
    empty.dispose()


def _all_resources(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    with store.connect() as connection:
        rows = connection.execute(select(resources.c.resource_type, resources.c.id, resources.c.content)).all()
    return {(t, i): orjson.loads(store.codec.open(c)) for t, i, c in rows}


def _patient_of(store: Store, key: tuple[str, str]) -> bool:
    with store.connect() as connection:
        row = connection.execute(select(resources.c.patient_id).where(resources.c.resource_type == key[0],
                                                                      resources.c.id == key[1])).first()
    return bool(row and row[0])


def _bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _obs(n: int, unit: str = "/min", value: float = 70.0, code: str = "8867-4") -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:obs-{n}", "request": {"method": "POST", "url": "Observation"},
            "resource": {"resourceType": "Observation", "status": "final",
                         "category": [{"coding": [{"code": "vital-signs"}]}],
                         "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                         "subject": {"reference": "urn:uuid:pat"}, "effectiveDateTime": f"2024-01-01T10:{n % 60:02d}:00Z",
                         "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                           "code": unit}}}


PATIENT = {"fullUrl": "urn:uuid:pat", "request": {"method": "POST", "url": "Patient"},
           "resource": {"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jo"]}],
                        "birthDate": "1980-02-03"}}


def test_bad_entry_500_rejects_whole_bundle(store: Store) -> None:
    entries = [PATIENT] + [_obs(n) for n in range(1, 700)]
    entries[499] = {**entries[499], "resource": {**entries[499]["resource"], "code": None}}
    report = import_units(store, [RawUnit("big.json", "json", _bundle(entries))])
    assert not report.ok
    error = report.units[0].error
    assert error is not None and error.entry == 500 and error.field == "Observation.code"
    with store.connect() as connection:
        assert connection.execute(select(func.count()).select_from(resources)).scalar_one() == 0
        assert connection.execute(select(func.count()).select_from(resource_index)).scalar_one() == 0
        statuses = [r[0] for r in connection.execute(select(imports.c.status))]
    assert statuses == ["failed"]  # the attempt is recorded, nothing of it stored


def test_invalid_ucum_unit_is_kept_flagged_and_reported(store: Store) -> None:
    entries = [PATIENT, _obs(1, unit="beats/min", value=72), _obs(2, unit="[lb_av]", value=154.0, code="29463-7")]
    report = import_units(store, [RawUnit("u.json", "json", _bundle(entries))])
    assert report.ok
    assert any("beats/min" in w and "not valid UCUM" in w for w in report.units[0].warnings)
    with store.connect() as connection:
        rows = {r.code: r for r in connection.execute(select(resource_index))}
    assert rows["8867-4"].unit_valid is False
    assert rows["8867-4"].value_num == 72 and rows["8867-4"].value_code == "beats/min"
    assert rows["8867-4"].value_norm is None  # never converted wrongly
    assert rows["29463-7"].unit_valid is True
    assert rows["29463-7"].value_norm == pytest.approx(154.0 * 0.45359237)
    assert rows["29463-7"].unit_norm == "kg"


def test_twice_is_unchanged_and_changed_resource_is_new_version(store: Store) -> None:
    first = import_units(store, [RawUnit("a.json", "json", _bundle([PATIENT, _obs(1)]))])
    assert first.totals()["created"] == 2
    second = import_units(store, [RawUnit("a.json", "json", _bundle([PATIENT, _obs(1)]))])
    assert second.totals() == {"created": 0, "updated": 0, "unchanged": 2, "failed_units": 0}
    changed = _obs(1, value=99.0)
    third = import_units(store, [RawUnit("a.json", "json", _bundle([PATIENT, changed]))])
    assert third.totals()["updated"] == 1
    with store.connect() as connection:
        version = connection.execute(select(resources.c.version).where(resources.c.resource_type == "Observation")
                                     ).scalar_one()
        values = [r[0] for r in connection.execute(select(resource_index.c.value_num))]
    assert version == 2 and values == [99.0]


def test_samples_table_enforces_idempotency_key(store: Store) -> None:
    from datetime import UTC, datetime

    from sqlalchemy.exc import IntegrityError

    row = {"patient_id": "p", "metric": "glucose", "time": datetime(2024, 1, 1, tzinfo=UTC), "value": 100.0,
           "unit": "mg/dL", "idempotency_key": "dev|glucose|2024-01-01T00:00:00Z"}
    with store.begin() as connection:
        connection.execute(samples.insert(), [row])
    with pytest.raises(IntegrityError), store.begin() as connection:
        connection.execute(samples.insert(), [row])
    with store.connect() as connection:
        assert connection.execute(select(func.count()).select_from(samples)).scalar_one() == 1


def _index_rows_point_to_their_resources(store: Store) -> int:
    """Every index and identifier row belongs to the resource it says (type, patient, code in the content)."""
    from medtwin.store.schema import resource_identifiers

    with store.connect() as connection:
        stored = {pk: (t, i, p, orjson.loads(store.codec.open(c))) for pk, t, i, p, c in connection.execute(
            select(resources.c.pk, resources.c.resource_type, resources.c.id, resources.c.patient_id,
                   resources.c.content))}
        checked = 0
        for row in connection.execute(select(resource_index)):
            rtype, _, patient, content = stored[row.resource_pk]
            assert (row.resource_type, row.patient_id) == (rtype, patient)
            assert row.code is None or f'"code":"{row.code}"'.encode() in orjson.dumps(content)
            checked += 1
        for row in connection.execute(select(resource_identifiers)):
            assert row.resource_type == stored[row.resource_pk][0]
    return checked


def test_find_by_identifiers_answers_like_find_by_identifier(store: Store) -> None:
    org = {"resourceType": "Organization", "id": "o1", "identifier": [{"system": "urn:org", "value": "A"},
                                                                      {"value": "B"}]}
    twin = {"resourceType": "Location", "id": "l1", "identifier": [{"system": "urn:org", "value": "A"}]}
    assert import_units(store, [RawUnit("o.json", "json", org), RawUnit("l.json", "json", twin)]).ok
    keys = [("Organization", "urn:org", "A"), ("Organization", None, "B"), ("Organization", None, "A"),
            ("Location", "urn:org", "A"), ("Location", None, "B"), ("Patient", "urn:org", "A"),
            ("Organization", "urn:other", "A")]
    with store.connect() as connection:
        records = RecordRepository(connection, store.codec)
        one_by_one = {key: records.find_by_identifier(*key) for key in keys}
        batch = records.find_by_identifiers(keys)
        assert records.existing_keys([("Organization", "o1"), ("Organization", "l1"), ("Location", "l1")]) == \
            {("Organization", "o1"), ("Location", "l1")}
    assert batch == {key: rid for key, rid in one_by_one.items() if rid is not None}
    assert batch[("Organization", None, "A")] == "o1" and ("Location", None, "B") not in batch


def test_new_rows_get_their_own_keys(store: Store) -> None:
    entries = [PATIENT] + [_obs(n, value=float(n)) for n in range(1, 40)]
    assert import_units(store, [RawUnit("a.json", "json", _bundle(entries))]).ok
    assert _index_rows_point_to_their_resources(store) == 39


def test_new_rows_get_their_own_keys_when_sqlite_keys_are_not_consecutive(sqlite_store: Store) -> None:
    # With a row at the largest rowid SQLite picks new rowids at random: the keys are read back instead.
    from datetime import UTC, datetime

    with sqlite_store.begin() as connection:
        connection.execute(resources.insert().values(pk=2**63 - 1, resource_type="Basic", id="last", version=1,
                                                     last_updated=datetime.now(UTC), content_hash="x",
                                                     content=b"{}"))
    entries = [PATIENT] + [_obs(n, value=float(n)) for n in range(1, 40)]
    assert import_units(sqlite_store, [RawUnit("a.json", "json", _bundle(entries))]).ok
    assert _index_rows_point_to_their_resources(sqlite_store) == 39


def test_sqlite_looks_up_stored_versions_by_index(sqlite_store: Store) -> None:
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "JOIN resources AS r" in statement:
            seen.append((statement, parameters))

    event.listen(sqlite_store.engine, "before_cursor_execute", record)
    assert import_units(sqlite_store, [RawUnit("a.json", "json", _bundle([PATIENT, _obs(1)]))]).ok
    event.remove(sqlite_store.engine, "before_cursor_execute", record)
    assert seen
    with sqlite_store.connect() as connection:
        for statement, parameters in seen:
            plan = " ".join(str(r[-1]) for r in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                                            parameters))
            assert "SCAN resources" not in plan and "SCAN r " not in plan, plan
