"""The store queries behind /fhir on both backends: category tokens, _sort by date, _revinclude's
resources of patients, Bulk export batches (reach, unowned, _since), $everything's transitive references,
If-Match expectations and per-resource outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.api.fhir_support import date_conditions
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



# (start, end) of each Observation's effective time: an instant (end None), a closed period, an ongoing one
_TIMES = [(datetime(2024, m, d, 9, tzinfo=UTC), end) for m, d, end in (
    (1, 15, None), (2, 28, None), (3, 1, None), (3, 31, None), (12, 31, None),
    (2, 10, datetime(2024, 3, 5, tzinfo=UTC)), (3, 10, datetime(2024, 3, 20, tzinfo=UTC)),
    (1, 1, datetime(2025, 1, 2, tzinfo=UTC)), (3, 15, "open"), (11, 1, "open"))]


def _timed(number: int, start: datetime, end: datetime | str | None) -> dict[str, object]:
    stamp = start.isoformat().replace("+00:00", "Z")
    timed: dict[str, object] = {"effectiveDateTime": stamp} if end is None else {"effectivePeriod": {
        "start": stamp, **({} if end == "open" else {"end": end.isoformat().replace("+00:00", "Z")})}}  # type: ignore[union-attr]
    return {"resourceType": "Observation", "id": f"t{number}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, **timed}


def _r4_match(prefix: str, low: datetime, high: datetime, start: datetime, end: datetime | str | None) -> bool:
    """R4's reading of a date prefix: the value is [low, high), the target [start, end] (an instant: end = start;
    ongoing: no end)."""
    last = start if end is None else datetime.max.replace(tzinfo=UTC) if end == "open" else end
    assert isinstance(last, datetime)
    return {"eq": low <= start and last < high, "ge": last >= low, "gt": last >= high,
            "le": start < high, "lt": start < low}[prefix]


@pytest.fixture(scope="module")
def timed_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('timed') / 'timed.db'}")
    store.migrate()
    resources = [{"resourceType": "Patient", "id": "a"}] + [
        {**_timed(n, s, e), "subject": {"reference": "Patient/a"}} for n, (s, e) in enumerate(_TIMES)]
    body = orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]})
    assert import_units(store, [unit_from_bytes(body, source="t.json")]).ok
    yield store
    store.dispose()


@settings(max_examples=60, deadline=None)
@given(prefix=st.sampled_from(["eq", "ge", "gt", "le", "lt"]), day=st.dates(date(2023, 12, 1), date(2025, 1, 31)),
       precision=st.sampled_from(["year", "month", "day"]))
def test_date_prefixes_on_instants_and_periods_read_as_r4(timed_store: Store, prefix: str, day: date,
                                                          precision: str) -> None:
    """The search's date comparisons (``date_conditions`` + the store's period comparison) against R4's
    definition restated here, on instants, closed periods and ongoing ones, at year/month/day precision."""
    text = {"year": f"{day.year}", "month": f"{day.year}-{day.month:02d}", "day": day.isoformat()}[precision]
    low = datetime(day.year, day.month if precision != "year" else 1, day.day if precision == "day" else 1, tzinfo=UTC)
    high = (low.replace(year=low.year + 1) if precision == "year" else
            low.replace(year=low.year + low.month // 12, month=low.month % 12 + 1) if precision == "month" else
            low + timedelta(days=1))
    with timed_store.connect() as connection:
        _, found = RecordRepository(connection, timed_store.codec).search(
            "Observation", SearchQuery(dates=date_conditions("date", [prefix + text]), count=100))
    expected = {f"t{n}" for n, (s, e) in enumerate(_TIMES) if _r4_match(prefix, low, high, s, e)}
    assert {v.id for v in found} == expected
