"""The store queries behind /fhir on both backends: category tokens, _sort by date, _revinclude's
resources of patients, Bulk export batches (reach, unowned, _since), $everything's transitive references,
If-Match expectations and per-resource outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from medtwin.record.errors import PreconditionFailedError
from medtwin.record.prepare import prepare
from medtwin.record.sources import unit_from_bytes
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository, SearchQuery
from medtwin.twin.build import import_units

CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def _obs(oid: str, patient: str, day: int, category: str) -> dict[str, object]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "category": [{"coding": [{"system": CAT, "code": category}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient}"}, "encounter": {"reference": "Encounter/e1"},
            "effectiveDateTime": f"2024-04-{day:02d}T10:00:00Z"}


def _seed(store: Store) -> None:
    resources = [{"resourceType": "Organization", "id": "org"},
                 {"resourceType": "Patient", "id": "a", "managingOrganization": {"reference": "Organization/org"}},
                 {"resourceType": "Patient", "id": "b"},
                 {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
                  "subject": {"reference": "Patient/a"}},
                 _obs("o2", "a", 2, "vital-signs"), _obs("o1", "a", 1, "laboratory"), _obs("o3", "b", 3, "vital-signs")]
    body = orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]})
    assert import_units(store, [unit_from_bytes(body, source="q.json")]).ok


def test_search_category_sort_and_patients(store: Store) -> None:
    _seed(store)
    with store.connect() as connection:
        repo = RecordRepository(connection, store.codec)
        total, found = repo.search("Observation", SearchQuery(categories=((CAT, "vital-signs"),), sort=(("date", True),)))
        assert total == 2 and [v.id for v in found] == ["o3", "o2"]
        _, by_code_only = repo.search("Observation", SearchQuery(categories=((None, "laboratory"),)))
        assert [v.id for v in by_code_only] == ["o1"]
        _, ascending = repo.search("Observation", SearchQuery(sort=(("date", False),)))
        assert [v.id for v in ascending] == ["o1", "o2", "o3"]
        assert [v.id for v in repo.of_patients("Observation", ["a"], limit=10)] == ["o1", "o2"]  # one import time
        assert [v.id for v in repo.of_patients("Observation", ["a"], limit=1)] == ["o1"]
        matched, included = repo.everything("a")
        assert {v.id for v in matched} == {"a", "e1", "o1", "o2"} and [v.id for v in included] == ["org"]


def test_export_batches_reach_unowned_since(store: Store) -> None:
    _seed(store)
    with store.connect() as connection:
        repo = RecordRepository(connection, store.codec)

        def ids(rtype: str, **kw: object) -> list[str]:
            return [v.id for batch in repo.current_batches(rtype, size=2, **kw) for v in batch]  # type: ignore[arg-type]

        assert ids("Observation", patients=None, unowned=False, since=None) == ["o2", "o1", "o3"]
        assert ids("Observation", patients=frozenset({"b"}), unowned=True, since=None) == ["o3"]
        assert ids("Organization", patients=frozenset({"b"}), unowned=True, since=None) == ["org"]
        assert ids("Organization", patients=None, unowned=False, since=None) == []
        future = datetime.now(UTC) + timedelta(days=1)
        assert ids("Observation", patients=None, unowned=True, since=future) == []


def test_expected_versions_and_outcomes(store: Store) -> None:
    _seed(store)
    changed = orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {**_obs("o1", "a", 1, "laboratory"), "status": "amended"}},
        {"resource": _obs("o2", "a", 2, "vital-signs")}, {"resource": _obs("o9", "a", 9, "laboratory")}]})
    now = datetime.now(UTC)
    with store.begin() as connection:
        repo = RecordRepository(connection, store.codec)
        unit = prepare(unit_from_bytes(changed, source="c.json").data, source="c.json", existing=repo)
        with pytest.raises(PreconditionFailedError) as caught:
            repo.save_unit(unit, import_id=None, now=now, expect={("Observation", "o1"): 2})
        assert caught.value.field == "If-Match" and "version 1 is current" in caught.value.message
        result = repo.save_unit(unit, import_id=None, now=now, expect={("Observation", "o1"): 1})
        assert {k[1]: (o.status, o.version) for k, o in result.outcomes.items()} == {
            "o1": ("updated", 2), "o2": ("unchanged", 1), "o9": ("created", 1)}

