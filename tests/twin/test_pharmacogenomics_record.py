"""PGx calls in the record: FHIR Genomics Reporting IG Observations (genotype, haplotypes, therapeutic
implication) that validate under fhir.resources (R4B models: the installed package has no R4 package; the
Observation structure used here is the same in R4 and R4B), are stored through the record import with the pgx
twin version, appear in the record export and survive export -> import into another store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.observation import Observation

from medtwin.pharmaco.pgx import build_vcf, call_pgx
from medtwin.record.genomics import IG_CITATION, gene_observations, report_observations
from medtwin.record.sources import RawUnit
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import export_patient, import_units
from medtwin.twin.pharmacogenomics import store_pgx

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
PROFILE = "http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/"


def by_profile(observations: list[dict[str, Any]], gene: str, profile: str) -> list[dict[str, Any]]:
    return [o for o in observations if o["meta"]["profile"] == [PROFILE + profile]
            and gene in orjson.dumps(o).decode()]


def test_genomics_observations_follow_the_ig_profiles_and_validate() -> None:
    report = call_pgx(build_vcf({"CYP2C19": "*1/*2", "DPYD": "Reference/c.1905+1G>A (*2A)", "CYP2D6": "*1/*4"}))
    observations = report_observations(report.genes, patient_id="p1", issued=NOW, report_key="sha",
                                       definition_version=report.definition_version)
    for resource in observations:
        parsed = Observation.model_validate(resource)
        assert parsed.status == "final" and parsed.subject is not None and parsed.subject.reference == "Patient/p1"
        assert report.definition_version in resource["note"][0]["text"] and IG_CITATION in resource["note"][0]["text"]

    (genotype,) = by_profile(observations, "CYP2C19", "genotype")
    assert genotype["code"]["coding"][0]["code"] == "84413-4"
    assert genotype["valueCodeableConcept"]["coding"][0] == {
        "system": "http://www.pharmvar.org", "code": "CYP2C19*1/*2", "display": "CYP2C19 *1/*2"}
    assert genotype["component"][0]["code"]["coding"][0]["code"] == "48018-6"
    assert genotype["component"][0]["valueCodeableConcept"]["coding"][0]["code"] == "HGNC:2621"
    haplotypes = by_profile(observations, "CYP2C19", "haplotype")
    assert sorted(h["valueCodeableConcept"]["text"] for h in haplotypes) == ["CYP2C19 *1", "CYP2C19 *2"]
    assert all(h["code"]["coding"][0]["code"] == "84414-2" for h in haplotypes)
    assert {d["reference"] for d in genotype["derivedFrom"]} == {f"Observation/{h['id']}" for h in haplotypes}
    (implication,) = by_profile(observations, "CYP2C19", "therapeutic-implication")
    assert implication["code"]["coding"][0]["code"] == "therapeutic-implication"
    component = implication["component"][0]
    assert component["code"]["coding"][0]["code"] == "53040-2"
    assert component["valueCodeableConcept"]["text"] == "CYP2C19 Intermediate Metabolizer"
    assert implication["derivedFrom"] == [{"reference": f"Observation/{genotype['id']}"}]

    (dpyd,) = by_profile(observations, "DPYD", "therapeutic-implication")
    assert "CPIC activity score 1" in dpyd["note"][0]["text"]
    assert by_profile(observations, "DPYD", "genotype")[0]["valueCodeableConcept"] == {
        "text": "DPYD Reference/c.1905+1G>A (*2A)"}  # not a PharmVar star allele: text, not a PharmVar code
    # SLCO1B1 is a transporter: its function goes in associated-phenotype, not drug metabolism
    (slco1b1,) = by_profile(observations, "SLCO1B1", "therapeutic-implication")
    assert slco1b1["component"][0]["code"]["coding"][0]["code"] == "81259-4"


def test_uncertain_phenotype_is_not_written_as_one() -> None:
    report = call_pgx(build_vcf({"CYP2D6": "*1/*4"}))  # no copy number: diplotype from SNVs, phenotype not confident
    observations = gene_observations(report.genes["CYP2D6"], patient_id="p1", issued=NOW, report_key="sha")
    assert [o["meta"]["profile"][0].rsplit("/", 1)[-1] for o in observations] == ["haplotype", "haplotype", "genotype"]
    notes = [n["text"] for n in observations[-1]["note"]]
    assert any(n.startswith("No phenotype recorded: CYP2D6 not callable because") for n in notes)
    missing = call_pgx(build_vcf({"CYP2C9": "*1/*2"}, include={"rs9923231"}))  # CYP2C9 positions absent
    assert missing.genes["CYP2C9"].status != "called"
    assert gene_observations(missing.genes["CYP2C9"], patient_id="p1", issued=NOW, report_key="sha") == []


@pytest.fixture
def patient(sqlite_store: Store) -> str:
    bundle = generate_bundles(n_patients=1)[0]
    assert import_units(sqlite_store, [RawUnit("synthetic.json", "json", orjson.loads(orjson.dumps(bundle)))],
                        actor="test").ok
    with sqlite_store.connect() as connection:
        (patient_id,) = RecordRepository(connection, sqlite_store.codec).patient_ids()
    return str(patient_id)


def genomics_in(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["resource"]["id"]: e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Observation"
            and any(p.startswith(PROFILE) for p in e["resource"].get("meta", {}).get("profile", []))}


def test_store_pgx_writes_the_observations_into_the_record_and_export(sqlite_store: Store, patient: str,
                                                                      tmp_path: Path) -> None:
    vcf = build_vcf({"CYP3A5": "*1/*3", "CYP2C19": "*2/*2"})
    stored = store_pgx(sqlite_store, patient, vcf, actor="dr-who", now=NOW)
    record = stored.provenance["record"]
    assert record["stored"] is True and record["observations"] == record["created"] > 20
    exported = export_patient(sqlite_store, patient, clock=lambda: NOW)
    assert exported is not None
    genomics = genomics_in(exported)
    assert len(genomics) == record["observations"]
    texts = {o["valueCodeableConcept"]["text"] for o in genomics.values() if "valueCodeableConcept" in o}
    assert {"CYP3A5 *1/*3", "CYP2C19 *2/*2"} <= texts
    implications = [o for o in genomics.values() if o["meta"]["profile"][0].endswith("therapeutic-implication")]
    assert "CYP2C19 Poor Metabolizer" in {o["component"][0]["valueCodeableConcept"]["text"] for o in implications}
    for resource in genomics.values():  # every derivedFrom resolves inside the record
        assert all(d["reference"].split("/", 1)[1] in genomics for d in resource.get("derivedFrom", []))

    again = store_pgx(sqlite_store, patient, vcf, actor="dr-who", now=NOW)  # same VCF: nothing new in the record
    assert again.provenance["record"]["created"] == 0
    assert again.provenance["record"]["unchanged"] == record["observations"]

    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    other.migrate()
    try:
        # at the same time as the first store, so meta.lastUpdated (the server's, now exported) matches
        assert import_units(other, [RawUnit("export.json", "json", exported)], actor="test", clock=lambda: NOW).ok
        round_trip = export_patient(other, patient, clock=lambda: NOW)
        assert round_trip is not None and genomics_in(round_trip) == genomics
    finally:
        other.dispose()


def test_patient_without_a_record_gets_the_twin_version_only(sqlite_store: Store) -> None:
    stored = store_pgx(sqlite_store, "nobody", build_vcf({}), actor="t", now=NOW)
    assert stored.provenance["record"] == {"stored": False, "reason": "no Patient/nobody in the record"}
