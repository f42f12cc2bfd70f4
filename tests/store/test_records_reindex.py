"""Revision 0008 on a store filled the old way (before category tokens, R4 date elements and ImagingStudy
modality were indexed): after migrating, the searches find what they missed; a second reindex changes
nothing. Both backends; the content is sealed (AES-GCM), so the revision must use the store's codec."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import delete, select, update

from medtwin.record.sources import unit_from_bytes
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import MIGRATIONS_DIR, Store
from medtwin.store.records import RecordRepository, SearchQuery
from medtwin.store.reindex import reindex
from medtwin.store.schema import resource_identifiers, resource_index, resources
from medtwin.twin.build import import_units

MAY = datetime(2024, 5, 1, tzinfo=UTC)
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "a"},
    {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/a"},
     "category": [{"coding": [{"system": CAT, "code": "vital-signs"}]}],
     "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
     "effectiveDateTime": "2024-04-01T10:00:00Z", "issued": "2024-05-01T10:00:00Z"},
    {"resourceType": "ImagingStudy", "id": "s1", "status": "available", "subject": {"reference": "Patient/a"},
     "started": "2024-04-02T10:00:00Z",
     "procedureCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "77477000"}]}],
     "series": [{"uid": "1.2", "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}}]},
]


def _upgrade(store: Store, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["codec"] = store.codec
        command.upgrade(config, revision)


def _index(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with store.connect() as connection:
        rows = connection.execute(select(resource_index.c.resource_pk, resource_index.c.element,
                                         resource_index.c.code, resource_index.c.effective_start,
                                         resource_index.c.chart_at)
                                  .order_by(resource_index.c.resource_pk, resource_index.c.code)).all()
        tokens = connection.execute(select(resource_identifiers.c.resource_pk, resource_identifiers.c.token,
                                           resource_identifiers.c.kind)
                                    .order_by(resource_identifiers.c.resource_pk, resource_identifiers.c.token)).all()
    return [tuple(r) for r in rows], [tuple(t) for t in tokens]


def _found(store: Store) -> dict[str, list[str]]:
    with store.connect() as connection:
        repo = RecordRepository(connection, store.codec)
        queries = {"category": ("Observation", SearchQuery(categories=((None, "vital-signs"),))),
                   "modality": ("ImagingStudy", SearchQuery(codes=((None, "CT"),))),
                   "may": ("Observation", SearchQuery(dates=(("ge", MAY),)))}
        return {name: [v.id for v in repo.search(rtype, query)[1]] for name, (rtype, query) in queries.items()}


@pytest.mark.parametrize("database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_migration_reindexes_a_store_filled_the_old_way(database_url: str) -> None:
    store = Store(database_url, AesGcmCodec(KeyRing.generate()))
    try:
        store.migrate()  # today's code imports into today's schema; the old store is made from it below
        body = orjson.dumps({"resourceType": "Bundle", "type": "collection",
                             "entry": [{"resource": r} for r in RESOURCES]})
        assert import_units(store, [unit_from_bytes(body, source="old.json")]).ok
        fresh = _index(store)
        with store.begin() as connection:  # a 0007 store: what the code before revision 0008 wrote
            connection.exec_driver_sql("ALTER TABLE resource_index DROP COLUMN chart_at")  # added by 0009
            connection.exec_driver_sql("DROP TABLE hospital_adt_journal")  # added by 0010
            connection.exec_driver_sql("DROP TABLE hospital_equipment_samples")  # added by 0010
            connection.exec_driver_sql("DROP TABLE hospital_equipment_quarantine")  # added by 0010
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0007_images'")
            connection.execute(delete(resource_identifiers).where(resource_identifiers.c.kind == "category"))
            study = select(resources.c.pk).where(resources.c.id == "s1").scalar_subquery()
            connection.execute(update(resource_index).where(resource_index.c.resource_pk == study)
                               .values(code="77477000"))  # procedureCode, not modality
            obs = select(resources.c.pk).where(resources.c.id == "o1").scalar_subquery()
            connection.execute(update(resource_index).where(resource_index.c.resource_pk == obs)
                               .values(effective_start=MAY))  # issued: not R4's date of an Observation
        assert _found(store) == {"category": [], "modality": [], "may": ["o1"]}  # the old store's wrong answers
        store.migrate()
        assert store.schema_revision() != "0007_images"
        assert _found(store) == {"category": ["o1"], "modality": ["s1"], "may": []}
        assert _index(store) == fresh  # exactly what an import writes today
        with store.begin() as connection:
            assert reindex(connection, store.codec) == 3
        assert _index(store) == fresh  # idempotent
    finally:
        store.dispose()
