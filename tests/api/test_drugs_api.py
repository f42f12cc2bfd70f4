"""The drugs API on a real app and store: regimen comparison and dose individualisation on a synthetic
AF-on-warfarin patient imported over HTTP (covariates defaulted from the record and the stored PGx report),
PGx upload stored as a twin version and shown in the summary, errors as problem+json naming the field."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medtwin.pharmaco.pgx import build_vcf
from medtwin.synthetic import archetype_keys, generate_bundles

PROBLEM = "application/problem+json"
WARFARIN_GENOTYPE = {"CYP2C9": "*1/*3", "VKORC1": "G/A", "CYP2D6": "*1/*4"}


@pytest.fixture
def af_patient(client: TestClient) -> str:
    """The atrial-fibrillation-on-warfarin archetype, imported through POST /api/v1/record."""
    index = archetype_keys().index("atrial_fibrillation")
    bundle = generate_bundles(n_patients=index + 1)[index]
    response = client.post("/api/v1/record", content=json.dumps(bundle).encode(),
                           headers={"content-type": "application/fhir+json"})
    assert response.status_code == 201, response.text
    (patient_id,) = response.json()["units"][0]["patients"]
    return str(patient_id)


def upload_vcf(client: TestClient, patient: str, vcf: str, media: str = "text/x-vcf", **params: Any) -> Any:
    return client.post(f"/api/v1/twins/{patient}/drugs/pgx", content=vcf.encode(), headers={"content-type": media},
                       params=params)


def warfarin_regimens(*doses_mg: float) -> list[dict[str, Any]]:
    return [{"dose": f"{d:g} mg", "route": "oral", "interval_h": 24, "n_doses": 10} for d in doses_mg]


def compare(client: TestClient, patient_id: str, **body: Any) -> Any:
    payload = {"drug": "warfarin", "regimens": warfarin_regimens(3, 10), "horizon_h": 240, "n_samples": 200, **body}
    return client.post(f"/api/v1/twins/{patient_id}/drugs/compare", json=payload)


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    if field is not None:
        assert body["field"] == field, body
    return body


def test_library_lists_the_drug_models(client: TestClient) -> None:
    drugs = {d["name"]: d for d in client.get("/api/v1/drugs").json()}
    assert {"warfarin", "vancomycin"} <= set(drugs)
    assert drugs["warfarin"]["response"] == "INR" and drugs["warfarin"]["model"] == "Hamberg2007"
    assert set(drugs["warfarin"]["required_covariates"]) == {"CYP2C9", "VKORC1", "age_years"}
    assert drugs["vancomycin"]["response"] is None and drugs["vancomycin"]["default_route"] == "iv_infusion"


def test_pgx_upload_is_stored_and_shown_in_the_summary(client: TestClient, af_patient: str) -> None:
    assert_problem(client.get(f"/api/v1/twins/{af_patient}/drugs/pgx"), 404, "pgx")
    assert client.get(f"/api/v1/patients/{af_patient}").json()["pharmacogenomics"] is None
    vcf = build_vcf(WARFARIN_GENOTYPE, sample="S1")

    response = upload_vcf(client, af_patient, vcf)
    assert response.status_code == 201, response.text
    stored = response.json()
    genes = stored["report"]["genes"]
    assert (genes["CYP2C9"]["diplotype"], genes["CYP2C9"]["phenotype"], genes["CYP2C9"]["activity_score"]) == (
        "*1/*3", "Intermediate Metabolizer", 1.0)
    assert genes["VKORC1"]["phenotype"] == "-1639 AG"
    assert stored["provenance"]["vcf_sha256"] == hashlib.sha256(vcf.encode()).hexdigest()
    assert stored["provenance"]["uploaded_by"] == "admin" and stored["actor"] == "admin"

    versions = client.get(f"/api/v1/patients/{af_patient}/versions").json()
    # the calls went into the record (Genomics Reporting Observations: a new record version), then the pgx version
    assert [v["kind"] for v in versions] == ["record", "record", "pgx"]
    assert stored["provenance"]["record"]["stored"] is True
    assert versions[1]["provenance"]["import_id"] == stored["provenance"]["record"]["import_id"]
    assert versions[-1]["version"] == stored["version"]
    assert versions[-1]["provenance"]["vcf_sha256"] == stored["provenance"]["vcf_sha256"]
    latest = client.get(f"/api/v1/twins/{af_patient}/drugs/pgx").json()
    assert latest["version"] == stored["version"] and latest["report"]["genes"]["CYP2D6"]["diplotype"] == "*1/*4"

    summary = client.get(f"/api/v1/patients/{af_patient}").json()
    pgx = summary["pharmacogenomics"]
    assert pgx["version"] == stored["version"]
    by_gene = {g["gene"]: g for g in pgx["genes"]}
    # CYP2D6 copy number cannot be seen in a VCF: the chip data say not callable, and why
    cyp2d6 = by_gene["CYP2D6"]
    assert (cyp2d6["diplotype"], cyp2d6["callable"], cyp2d6["phenotype"]) == ("*1/*4", False, "unknown")
    assert cyp2d6["reason"].startswith("CYP2D6 not callable because") and "copy number" in cyp2d6["reason"]
    assert by_gene["CYP2C19"]["phenotype"] == "Normal Metabolizer" and by_gene["CYP2C19"]["callable"] is True
    assert by_gene["CYP2C9"]["reason"] == ""

    # a newer report replaces the older one in the summary
    second = upload_vcf(client, af_patient, build_vcf({"CYP2C9": "*1/*1"}), media="text/plain").json()
    pgx = client.get(f"/api/v1/patients/{af_patient}").json()["pharmacogenomics"]
    assert pgx["version"] == second["version"] > stored["version"]
    assert {g["gene"]: g["diplotype"] for g in pgx["genes"]}["CYP2C9"] == "*1/*1"


def test_compare_warfarin_regimens_on_the_twin(client: TestClient, af_patient: str) -> None:
    pgx_version = upload_vcf(client, af_patient, build_vcf(WARFARIN_GENOTYPE)).json()["version"]
    summary = client.get(f"/api/v1/patients/{af_patient}").json()
    record = summary["summary"]

    response = compare(client, af_patient)
    assert response.status_code == 200, response.text
    result = response.json()
    low, high = result["outcomes"]
    assert (low["regimen"]["dose"], high["regimen"]["dose"]) == ("3 mg", "10 mg")
    for outcome in (low, high):
        assert len(outcome["times_h"]) == 241 and outcome["response_name"] == "INR"
        assert all(a <= b <= c for a, b, c in zip(outcome["response_p05"], outcome["response_p50"],
                                                  outcome["response_p95"], strict=True))
        assert outcome["response_p05"][-1] < outcome["response_p95"][-1]  # a real interval, not a point
        assert 0.0 <= outcome["probability_adverse"] <= 1.0
    assert high["probability_adverse"] > low["probability_adverse"]  # P(INR > 4) rises with the dose
    assert high["response_p50"][-1] > low["response_p50"][-1]

    # covariates defaulted from the record (latest weight, age, sex, creatinine) and the PGx report
    basis = result["basis"]
    covariates, sources = basis["covariates"], basis["covariate_sources"]
    creatinine = next(m for m in record["labs"] if m["code"] == "2160-0")
    assert covariates["weight_kg"] == record["weight"]["value"]
    assert record["weight"]["unit"] == "kg" and "29463-7" in sources["weight_kg"]
    assert covariates["age_years"] == record["age_years"] and covariates["sex"] == record["gender"] == "male"
    assert covariates["serum_creatinine_mg_dl"] == creatinine["value"] and "2160-0" in sources["serum_creatinine_mg_dl"]
    assert (covariates["cyp2c9"], covariates["vkorc1"]) == ("*1/*3", "G/A")
    assert sources["cyp2c9"] == f"pgx v{pgx_version}: CYP2C9"
    assert (basis["record_version"], basis["pgx_version"]) == (summary["version"], pgx_version)

    # stored as a drug-simulation twin version naming request, model and base versions
    versions = client.get(f"/api/v1/patients/{af_patient}/versions").json()
    simulation = versions[-1]
    assert (simulation["kind"], simulation["version"]) == ("drug-simulation", basis["twin_version"])
    provenance = simulation["provenance"]
    assert provenance["base"] == {"record_version": summary["version"], "pgx_version": pgx_version}
    assert provenance["drug_model"]["model"] == "Hamberg2007"
    assert provenance["request"]["regimens"][1]["dose"] == "10 mg" and provenance["operation"] == "compare"


def test_request_covariates_win_over_the_record(client: TestClient, af_patient: str) -> None:
    response = compare(client, af_patient, patient={"weight_kg": 55.5, "cyp2c9": "*3/*3", "vkorc1": "A/A"})
    assert response.status_code == 200, response.text
    basis = response.json()["basis"]
    assert basis["covariates"]["weight_kg"] == 55.5 and basis["covariate_sources"]["weight_kg"] == "request"
    assert basis["pgx_version"] is None and basis["covariate_sources"]["cyp2c9"] == "request"
    # CYP2C9 *3/*3 (slow clearance) with VKORC1 A/A (sensitive): 10 mg daily over-anticoagulates most patients
    assert response.json()["outcomes"][1]["probability_adverse"] > 0.5


def test_warfarin_without_any_genotype_is_not_an_error(client: TestClient, af_patient: str) -> None:
    # issue #15 item 4: the genotype-unknown model runs instead (tests/api/test_warfarin_genotype_unknown.py)
    response = compare(client, af_patient)
    assert response.status_code == 200, response.text
    assert [m["covariate"] for m in response.json()["population_genotypes"]] == ["CYP2C9", "VKORC1"]


def test_individualise_vancomycin_from_levels(client: TestClient, af_patient: str) -> None:
    body: dict[str, Any] = {"drug": "vancomycin", "n_samples": 200,
            "history": [{"time_h": 12.0 * i, "amount": "1000 mg", "route": "iv_infusion", "infusion_duration_h": 1.0}
                        for i in range(4)],
            "levels": [{"time_h": 37.0, "value": 28.0, "unit": "mg/L"}, {"time_h": 47.5, "value": 15.0, "unit": "mg/L"}]}
    response = client.post(f"/api/v1/twins/{af_patient}/drugs/individualise", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["drug"] == "vancomycin" and result["regimen"]["route"] == "iv_infusion"
    assert {p["name"] for p in result["parameters"]} >= {"CL"}
    record = client.get(f"/api/v1/patients/{af_patient}").json()["summary"]
    assert result["basis"]["covariates"]["weight_kg"] == record["weight"]["value"]
    last = client.get(f"/api/v1/patients/{af_patient}/versions").json()[-1]
    assert (last["kind"], last["provenance"]["operation"]) == ("drug-simulation", "individualise")
    # the same levels in the wrong unit are refused, naming the level
    body["levels"][0]["unit"] = "ug/mL"
    assert_problem(client.post(f"/api/v1/twins/{af_patient}/drugs/individualise", json=body), 422, "levels[0].unit")


def test_grch37_vcf_is_refused_naming_the_header_field(client: TestClient, af_patient: str) -> None:
    body = assert_problem(upload_vcf(client, af_patient, build_vcf(WARFARIN_GENOTYPE, assembly="GRCh37")), 422)
    assert "GRCh37" in body["detail"] and "GRCh38 is required" in body["detail"]
    assert client.get(f"/api/v1/patients/{af_patient}").json()["pharmacogenomics"] is None  # nothing stored
    assert_problem(upload_vcf(client, af_patient, build_vcf(WARFARIN_GENOTYPE), media="application/json"), 415,
                   "content-type")
    assert_problem(upload_vcf(client, af_patient, build_vcf(WARFARIN_GENOTYPE), cyp2d6_copy_number=9), 422)


def test_unknown_drug_is_refused_naming_the_field(client: TestClient, af_patient: str) -> None:
    body = assert_problem(compare(client, af_patient, drug="aspirin"), 422, "drug")
    assert "aspirin" in body["detail"] and body["errors"][0]["loc"] == ["drug"]


def test_negative_interval_is_refused_naming_the_field(client: TestClient, af_patient: str) -> None:
    regimens = warfarin_regimens(5)
    regimens[0]["interval_h"] = -24
    body = assert_problem(compare(client, af_patient, regimens=regimens), 422)
    assert body["errors"][0]["loc"] == ["body", "regimens", "0", "interval_h"]


def test_infusion_longer_than_interval_is_refused_naming_the_field(client: TestClient, af_patient: str) -> None:
    regimens = [{"dose": "1 g", "route": "iv_infusion", "interval_h": 2, "infusion_duration_h": 3, "n_doses": 4}]
    body = assert_problem(compare(client, af_patient, drug="vancomycin", regimens=regimens), 422)
    (error,) = body["errors"]
    assert error["loc"][:3] == ["body", "regimens", "0"] and "infusion_duration_h" in error["msg"]


def test_unknown_patient_is_404(client: TestClient, af_patient: str) -> None:
    assert_problem(compare(client, "no-such-patient"), 404, "patient_id")
    assert_problem(client.get("/api/v1/twins/no-such-patient/drugs/pgx"), 404, "patient_id")
    assert_problem(upload_vcf(client, "no-such-patient", build_vcf(WARFARIN_GENOTYPE)), 404, "patient_id")


def test_patient_may_be_named_by_mrn(client: TestClient, af_patient: str) -> None:
    mrn = client.get(f"/api/v1/patients/{af_patient}/record").json()["entry"][0]["resource"]["identifier"][0]["value"]
    stored = upload_vcf(client, mrn, build_vcf(WARFARIN_GENOTYPE))
    assert stored.status_code == 201 and stored.json()["patient_id"] == af_patient


def test_oversized_or_invalid_simulation_requests_are_refused_before_running(client: TestClient,
                                                                          af_patient: str) -> None:
    body = assert_problem(compare(client, af_patient, n_samples=20_000, horizon_h=24 * 120), 422)
    assert body["errors"][0]["loc"] == ["body"] and "n_samples" in body["errors"][0]["msg"]
    body = assert_problem(compare(client, af_patient, seed=-1), 422)
    assert body["errors"][0]["loc"] == ["body", "seed"]
    assert len(client.get(f"/api/v1/patients/{af_patient}/versions").json()) == 1  # nothing stored


def test_tacrolimus_what_if_over_http_changes_with_the_stored_genotype_and_says_why(client: TestClient,
                                                                                    af_patient: str) -> None:
    body = {"drug": "tacrolimus", "horizon_h": 336, "n_samples": 200, "seed": 4,
            "regimens": [{"dose": "3.5 mg", "route": "oral", "interval_h": 12, "n_doses": 28}]}
    url = f"/api/v1/twins/{af_patient}/drugs/compare"
    before = client.post(url, json=body).json()
    assert before["genotype"][0]["applied"] is False and before["genotype"][0]["reason"].startswith("CYP3A5 unknown")
    version = upload_vcf(client, af_patient, build_vcf({"CYP3A5": "*1/*1"})).json()["version"]
    after = client.post(url, json=body).json()
    (effect,) = after["genotype"]
    assert effect["applied"] is True and effect["factor"] == 2.0
    assert effect["reason"].startswith(f"CYP3A5 Normal Metabolizer (pgx v{version}): tacrolimus CL x 2 -- Passey 2011")
    assert after["outcomes"][0]["metric_p50"] < before["outcomes"][0]["metric_p50"] / 1.5  # expresser: lower troughs
    assert after["basis"]["covariate_sources"]["pharmacogenes.CYP3A5"] == f"pgx v{version}: CYP3A5"


def test_dpyd_poor_metaboliser_fluorouracil_is_refused_naming_the_gene(client: TestClient, af_patient: str) -> None:
    body = {"drug": "fluorouracil", "horizon_h": 60, "n_samples": 50,
            "patient": {"pharmacogenes": {"DPYD": {"activity_score": 0}}},
            "regimens": [{"dose": "4320 mg", "route": "iv_infusion", "interval_h": 336, "n_doses": 1,
                          "infusion_duration_h": 46}]}
    problem = assert_problem(client.post(f"/api/v1/twins/{af_patient}/drugs/compare", json=body), 422,
                             "patient.pharmacogenes.DPYD")
    assert "CPIC recommends avoiding fluoropyrimidines" in problem["detail"]
