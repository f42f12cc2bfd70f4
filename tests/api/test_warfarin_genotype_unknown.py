"""Warfarin what-if for the demo's AF-on-warfarin patient (issue #15 item 4), over HTTP on a real app and store:
the stored genotype is used when callable (and says which pgx version); with no genotype stored, or one that is
not callable, the answer is the genotype-unknown model (each virtual subject's CYP2C9/VKORC1 drawn from cited
population frequencies), said in one sentence, with the IWPC clinical dose beside it -- never an error."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.api import test_drugs_api

from medtwin.pharmaco.iwpc import IwpcClinicalInput, Race, iwpc_clinical_weekly_dose
from medtwin.pharmaco.library import load_drug
from medtwin.pharmaco.pgx import build_vcf
from medtwin.pharmaco.pgx.testdata import gene_definitions

N = 600
af_patient = test_drugs_api.af_patient  # the fixture: the demo's AF-on-warfarin patient, record only


def upload(client: TestClient, patient: str, vcf: str) -> int:
    response = client.post(f"/api/v1/twins/{patient}/drugs/pgx", content=vcf.encode(),
                           headers={"content-type": "text/x-vcf"})
    assert response.status_code == 201, response.text
    return int(response.json()["version"])


def compare(client: TestClient, patient: str, **patient_fields: str) -> dict[str, Any]:
    body = {"drug": "warfarin", "regimens": [{"dose": "5 mg", "route": "oral", "interval_h": 24, "n_doses": 10}],
            "horizon_h": 240, "n_samples": N, "seed": 7, "patient": patient_fields}
    response = client.post(f"/api/v1/twins/{patient}/drugs/compare", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def inr(result: dict[str, Any]) -> tuple[float, float, float]:
    outcome = result["outcomes"][0]
    return outcome["metric_p05"], outcome["metric_p50"], outcome["metric_p95"]


def test_no_genotype_stored_runs_the_genotype_unknown_model_and_says_so(client: TestClient, af_patient: str) -> None:
    result = compare(client, af_patient)

    note = result["genotype_note"]
    assert note == ("No CYP2C9 or VKORC1 genotype stored: simulated over population genotype frequencies (European "
                    "ancestry; 1000 Genomes European MAFs in Shendre 2018, Table 1), so the bands include the genotype "
                    "uncertainty."), note
    assert note.count(".") == 1 and "required by" not in note  # one sentence, no error text
    mixture = {m["covariate"]: m for m in result["population_genotypes"]}
    assert set(mixture) == {"CYP2C9", "VKORC1"}
    # Hardy-Weinberg proportions of the cited allele frequencies (*2 0.124, *3 0.073; -1639A 0.388)
    assert mixture["CYP2C9"]["frequencies"]["*1/*3"] == pytest.approx(2 * 0.803 * 0.073)
    assert mixture["VKORC1"]["frequencies"]["A/A"] == pytest.approx(0.388**2)
    assert "Shendre" in mixture["CYP2C9"]["source"] and "2018" in mixture["CYP2C9"]["source"]
    basis = result["basis"]
    assert basis["pgx_version"] is None and basis["covariates"]["cyp2c9"] is None
    assert basis["covariate_sources"]["cyp2c9"] == "No CYP2C9 genotype stored"

    # the IWPC clinical algorithm's dose, from the record's age, height and weight (race not recorded)
    covariates = basis["covariates"]
    expected = iwpc_clinical_weekly_dose(IwpcClinicalInput(
        age_years=covariates["age_years"], height_cm=covariates["height_cm"], weight_kg=covariates["weight_kg"],
        race=Race.MIXED_OR_MISSING))
    dose = result["clinical_dose"]
    assert dose["weekly_dose_mg"] == pytest.approx(expected.weekly_dose_mg, abs=0.01)
    assert dose["daily_dose_mg"] == pytest.approx(expected.weekly_dose_mg / 7, abs=0.01)
    assert "clinical algorithm" in dose["algorithm"] and "race not recorded" in dose["basis"]

    stored = client.get(f"/api/v1/patients/{af_patient}/versions").json()
    assert any(v["kind"] == "drug-simulation" for v in stored)


def test_mixture_band_is_wider_than_a_known_genotype_and_its_median_between_the_extremes(
        client: TestClient, af_patient: str) -> None:
    unknown = inr(compare(client, af_patient))
    fast = inr(compare(client, af_patient, cyp2c9="*1/*1", vkorc1="G/G"))  # the model's reference genotype
    slow = inr(compare(client, af_patient, cyp2c9="*3/*3", vkorc1="A/A"))

    # INR is skewed, so band widths are compared on the log scale (p95 / p05); between-subject variability
    # dominates, the genotype mixture adds to it (measured: 1.40 vs 1.18 at n = 600, 10 days of 5 mg)
    width = lambda q: np.log(q[2] / q[0])  # noqa: E731
    assert width(unknown) > width(fast) + 0.1, (unknown, fast)
    assert fast[1] < unknown[1] < slow[1], (fast, unknown, slow)
    # the population is mostly *1/*1 and G/A: its median INR is nearer the fast extreme's than the slow one's
    assert unknown[1] - fast[1] < slow[1] - unknown[1]


def test_the_mixture_draws_genotypes_at_the_cited_frequencies() -> None:
    table = load_drug("warfarin").population_genotypes["CYP2C9"]
    draws = table.sample(200_000, np.random.default_rng(1))
    keys, freqs = table.diplotypes()
    observed = np.array([np.mean(draws == k) for k in keys])
    np.testing.assert_allclose(observed, freqs, atol=0.004)
    assert freqs.sum() == pytest.approx(1.0)


def test_a_stored_callable_genotype_is_used_and_named_with_its_pgx_version(client: TestClient,
                                                                             af_patient: str) -> None:
    version = upload(client, af_patient, build_vcf({"CYP2C9": "*1/*3", "VKORC1": "G/A"}, sample="S1"))
    result = compare(client, af_patient)

    assert result["population_genotypes"] == [] and result["clinical_dose"] is None
    assert result["genotype_note"] == (f"Genotype used: CYP2C9 *1/*3 (pgx v{version}: CYP2C9) and VKORC1 G/A "
                                       f"(pgx v{version}: VKORC1).")
    # the same numbers as giving that genotype in the request (same seed, same model)
    assert inr(result) == pytest.approx(inr(compare(client, af_patient, cyp2c9="*1/*3", vkorc1="G/A")))


def test_a_stored_genotype_that_is_not_callable_is_not_used(client: TestClient, af_patient: str) -> None:
    positions = {p.rsid: p.position for p in gene_definitions()["CYP2C9"].positions}
    vcf = build_vcf({"CYP2C9": "*1/*3", "VKORC1": "G/A"}, sample="S1", omit={positions["rs1057910"]})  # *3 site
    version = upload(client, af_patient, vcf)
    result = compare(client, af_patient)

    mixture = [m["covariate"] for m in result["population_genotypes"]]
    assert mixture == ["CYP2C9"]  # VKORC1 was callable and is used
    assert result["basis"]["covariates"]["cyp2c9"] is None and result["basis"]["covariates"]["vkorc1"] == "G/A"
    note = result["genotype_note"]
    assert note.startswith(f"CYP2C9 in pgx v{version} is not used: CYP2C9 not callable because several diplotypes "
                           "fit the data"), note
    assert "simulated over population genotype frequencies" in note
    # between the CYP2C9 extremes at the stored VKORC1
    fast = inr(compare(client, af_patient, cyp2c9="*1/*1"))
    slow = inr(compare(client, af_patient, cyp2c9="*3/*3"))
    assert fast[1] < inr(result)[1] < slow[1]


def test_individualising_without_a_genotype_names_the_field_once(client: TestClient, af_patient: str) -> None:
    body = {"drug": "warfarin", "history": [{"time_h": 0, "amount": "5 mg", "route": "oral"}],
            "levels": [{"time_h": 72, "value": 1.6, "unit": "1"}], "n_samples": 200}
    response = client.post(f"/api/v1/twins/{af_patient}/drugs/individualise", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == "patient.cyp2c9"
    assert problem["detail"] == ("patient.cyp2c9: No CYP2C9 genotype stored; a dose from measured levels is fitted "
                                 "for one genotype: give it in the request or upload a PGx report")
    assert problem["detail"].count("patient.cyp2c9") == 1


def test_a_vkorc1_position_missing_from_the_vcf_is_not_read_as_reference(client: TestClient, af_patient: str) -> None:
    (position,) = [p.position for p in gene_definitions()["VKORC1"].positions]
    version = upload(client, af_patient, build_vcf({"CYP2C9": "*1/*3", "VKORC1": "A/A"}, sample="S1", omit={position}))
    result = compare(client, af_patient)

    assert [m["covariate"] for m in result["population_genotypes"]] == ["VKORC1"]
    covariates = result["basis"]["covariates"]
    assert covariates["vkorc1"] is None and covariates["cyp2c9"] == "*1/*3"  # not G/G: a missing site is not reference
    assert result["genotype_note"].startswith(f"VKORC1 in pgx v{version} is not used: VKORC1 not callable because "
                                              "defining positions missing or no-call (rs9923231")
    # the stored CYP2C9 is used: the same numbers as giving it in the request with VKORC1 unknown
    assert inr(result) == pytest.approx(inr(compare(client, af_patient, cyp2c9="*1/*3")))
