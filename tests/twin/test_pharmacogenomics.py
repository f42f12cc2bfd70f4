"""The pharmacology service on a real store: covariate defaults from the record summary and the stored PGx
report (with unit conversion and provenance of each value), PGx reports and drug simulations as twin versions."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from medtwin.pharmaco.covariates import Sex
from medtwin.pharmaco.errors import CovariateError, UnknownDrugError, VcfError
from medtwin.pharmaco.pgx import build_vcf
from medtwin.store.database import Store
from medtwin.store.twins import TwinRepository
from medtwin.twin.pharmacogenomics import (
    CovariateInput,
    TwinCompareRequest,
    latest_pgx,
    pgx_summary,
    resolve_covariates,
    run_comparison,
    store_pgx,
)
from medtwin.twin.summary import Measurement, PatientSummary

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def summary(**changes: object) -> PatientSummary:
    base = PatientSummary(
        patient_id="p1", name="Test Person", gender="female", birth_date=None, age_years=67,
        weight=Measurement(code="29463-7", value=154.0, unit="[lb_av]", time=NOW),
        height=Measurement(code="8302-2", value=160.0, unit="cm", time=NOW),
        labs=[Measurement(code="2160-0", value=97.0, unit="umol/L", time=NOW),
              Measurement(code="2345-7", value=5.5, unit="mmol/L", time=NOW)])
    return base.model_copy(update=changes)


def add_record(store: Store, patient: str = "p1", **changes: object) -> int:
    with store.begin() as connection:
        return TwinRepository(connection, store.codec).add_version(
            patient, "record", summary(patient_id=patient, **changes).model_dump(mode="json"), {"source": "test"},
            actor="test", now=NOW)


def test_defaults_come_from_the_record_with_units_converted() -> None:
    covariates, sources = resolve_covariates(CovariateInput(), summary(), 3, None)
    assert covariates.weight_kg == pytest.approx(154.0 * 0.45359237)
    assert covariates.serum_creatinine_mg_dl == pytest.approx(97.0 / 88.4)  # vocab/data/ckd_epi_2021.toml
    assert (covariates.age_years, covariates.sex.value, covariates.height_cm) == (67.0, "female", 160.0)
    assert covariates.dialysis is False and covariates.cyp2c9 is None
    assert sources["weight_kg"].startswith("record v3: LOINC 29463-7 154.0 [lb_av]")
    assert sources["age_years"] == "record v3: birth date"


def test_creatinine_is_the_newest_under_any_of_its_codes() -> None:
    """One creatinine quantity (vocab.renal.CREATININE_LOINC), as the kidney panel shows it: a newer reading
    under the molar code 14682-9 wins over an older mass-code one; an unreadable unit names the covariate."""
    labs = [Measurement(code="2160-0", value=1.0, unit="mg/dL", time=NOW - timedelta(days=30)),
            Measurement(code="14682-9", value=130.0, unit="umol/L", time=NOW)]
    covariates, sources = resolve_covariates(CovariateInput(), summary(labs=labs), 3, None)
    assert covariates.serum_creatinine_mg_dl == pytest.approx(130.0 / 88.4)
    assert sources["serum_creatinine_mg_dl"].startswith("record v3: LOINC 14682-9 130.0 umol/L")
    with pytest.raises(CovariateError) as unit:
        resolve_covariates(CovariateInput(), summary(labs=[Measurement(code="38483-4", value=1.0, unit="mg/mmol",
                                                                       time=NOW)]), 3, None)
    assert unit.value.field == "patient.serum_creatinine_mg_dl"


def test_request_values_win_and_are_marked_as_such() -> None:
    covariates, sources = resolve_covariates(CovariateInput(weight_kg=70.0, sex=Sex.MALE), summary(), 3, None)
    assert (covariates.weight_kg, covariates.sex.value) == (70.0, "male")
    assert sources["weight_kg"] == sources["sex"] == "request"


def test_missing_or_unreadable_record_values_name_the_covariate() -> None:
    with pytest.raises(CovariateError) as missing:
        resolve_covariates(CovariateInput(), summary(gender="unknown"), 3, None)
    assert missing.value.field == "patient.sex"
    with pytest.raises(CovariateError) as unit:
        resolve_covariates(CovariateInput(), summary(weight=Measurement(code="29463-7", value=5.0, unit="stone")),
                           3, None)
    assert unit.value.field == "patient.weight_kg"
    with pytest.raises(CovariateError) as out_of_range:
        resolve_covariates(CovariateInput(), summary(weight=Measurement(code="29463-7", value=900.0, unit="kg")),
                           3, None)
    assert out_of_range.value.field == "patient.weight_kg" and "900" in out_of_range.value.message


def test_pgx_report_is_stored_with_provenance_and_summarised(sqlite_store: Store) -> None:
    assert latest_pgx(sqlite_store, "p1") is None and pgx_summary(sqlite_store, "p1") is None
    record_version = add_record(sqlite_store)
    vcf = build_vcf({"CYP2C9": "*2/*3", "VKORC1": "A/A", "CYP2C19": "*2/*2"}, sample="NA1")
    stored = store_pgx(sqlite_store, "p1", vcf, actor="dr-who", now=NOW)
    assert stored.version == record_version + 1
    assert stored.provenance["vcf_sha256"] == hashlib.sha256(vcf.encode()).hexdigest()
    assert (stored.provenance["uploaded_by"], stored.provenance["sample"]) == ("dr-who", "NA1")
    again = latest_pgx(sqlite_store, "p1")
    assert again is not None and again.report == stored.report and again.actor == "dr-who"
    brief = pgx_summary(sqlite_store, "p1")
    assert brief is not None and brief.version == stored.version
    genes = {g.gene: (g.diplotype, g.phenotype, g.activity_score) for g in brief.genes}
    assert genes["CYP2C9"] == ("*2/*3", "Poor Metabolizer", 0.5)  # CPIC: activity score 0.5 is a poor metaboliser
    assert genes["CYP2C19"] == ("*2/*2", "Poor Metabolizer", None)

    covariates, sources = resolve_covariates(CovariateInput(), summary(), record_version, again)
    assert (covariates.cyp2c9, covariates.vkorc1) == ("*2/*3", "A/A")
    assert sources["vkorc1"] == f"pgx v{stored.version}: VKORC1"


def test_genes_the_vcf_could_not_call_are_not_used_as_defaults(sqlite_store: Store) -> None:
    partial = build_vcf({"CYP2C9": "*1/*2"}, include={"rs9923231"})  # only VKORC1 present: CYP2C9 unknown
    stored = store_pgx(sqlite_store, "p1", partial, actor="t", now=NOW)
    assert stored.report.genes["CYP2C9"].diplotype == "unknown"
    covariates, sources = resolve_covariates(CovariateInput(), summary(), 1, stored)
    assert covariates.cyp2c9 is None and covariates.vkorc1 == "G/G"
    # the source says why there is no value (the what-if then runs the genotype-unknown model and says so)
    assert sources["cyp2c9"].startswith(f"CYP2C9 in pgx v{stored.version} is not used: CYP2C9 not callable because")


def test_grch37_vcf_stores_nothing(sqlite_store: Store) -> None:
    with pytest.raises(VcfError) as error:
        store_pgx(sqlite_store, "p1", build_vcf({}, assembly="GRCh37"), actor="t", now=NOW)
    assert "GRCh37" in error.value.message and "GRCh38 is required" in error.value.message
    assert latest_pgx(sqlite_store, "p1") is None


def test_comparison_is_stored_with_its_basis(sqlite_store: Store) -> None:
    record_version = add_record(sqlite_store)
    request = TwinCompareRequest(
        drug="warfarin", patient=CovariateInput(cyp2c9="*1/*1", vkorc1="G/G"), n_samples=100, horizon_h=120,
        regimens=[{"dose": "5 mg", "interval_h": 24, "n_doses": 5}])  # type: ignore[list-item]
    result = run_comparison(sqlite_store, "p1", request, actor="dr-who", clock=lambda: NOW)
    assert result.basis.record_version == record_version and result.basis.pgx_version is None
    assert result.basis.covariates.weight_kg == pytest.approx(69.85, abs=0.01)
    with sqlite_store.connect() as connection:
        stored = TwinRepository(connection, sqlite_store.codec).latest("p1", "drug-simulation")
    assert stored is not None and stored.version == result.basis.twin_version == record_version + 1
    assert stored.provenance["base"] == {"record_version": record_version, "pgx_version": None}
    assert stored.provenance["drug_model"]["source"].startswith("Hamberg AK")
    assert stored.payload["result"]["outcomes"][0]["probability_adverse"] == result.outcomes[0].probability_adverse
    with pytest.raises(UnknownDrugError):
        run_comparison(sqlite_store, "p1", request.model_copy(update={"drug": "nope"}), actor="t", clock=lambda: NOW)
