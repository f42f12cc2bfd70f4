"""The genotype sentence and the IWPC clinical dose offered beside a genotype-unknown warfarin what-if."""

from __future__ import annotations

import pytest

from medtwin.pharmaco.covariates import PatientCovariates
from medtwin.pharmaco.iwpc import clinical_coefficients
from medtwin.pharmaco.library import load_drug
from medtwin.pharmaco.twin import PopulationGenotypeUse
from medtwin.twin.drug_genotype import clinical_dose, genotype_note
from medtwin.twin.summary import MedicationItem, PatientSummary

WARFARIN = load_drug("warfarin")
PATIENT = PatientCovariates(age_years=72, weight_kg=84, height_cm=175, sex="male")  # type: ignore[arg-type]
MIXTURE = [PopulationGenotypeUse(covariate=c, population="European ancestry", frequencies={}, source="s",
                                 citation="CPIC") for c in ("CYP2C9", "VKORC1")]


def summary(*medications: tuple[str, str]) -> PatientSummary:
    return PatientSummary(patient_id="p", name=None, gender="male", birth_date=None, age_years=72,
                          medications=[MedicationItem(code=None, display=d, status=s) for d, s in medications])


def test_active_amiodarone_lowers_the_clinical_dose_by_its_coefficient() -> None:
    plain = clinical_dose(WARFARIN, PATIENT, summary(("Warfarin 5 mg tablet", "active")), MIXTURE)
    stopped = clinical_dose(WARFARIN, PATIENT, summary(("Amiodarone 200 mg", "stopped")), MIXTURE)
    taking = clinical_dose(WARFARIN, PATIENT, summary(("Amiodarone 200 mg", "active")), MIXTURE)
    assert plain is not None and stopped is not None and taking is not None
    assert stopped.weekly_dose_mg == plain.weekly_dose_mg
    root = plain.weekly_dose_mg**0.5 + clinical_coefficients()["amiodarone"]
    assert taking.weekly_dose_mg == pytest.approx(root**2, abs=0.01)
    assert "no amiodarone or enzyme inducer" in plain.basis and taking.basis.endswith(
        "amiodarone in the active medication list")


def test_no_clinical_dose_with_a_genotype_without_height_or_for_another_drug() -> None:
    assert clinical_dose(WARFARIN, PATIENT, None, []) is None
    assert clinical_dose(WARFARIN, PATIENT.model_copy(update={"height_cm": None}), None, MIXTURE) is None
    assert clinical_dose(load_drug("vancomycin"), PATIENT, None, MIXTURE) is None


def test_the_sentence_names_each_reason_when_they_differ() -> None:
    sources = {"cyp2c9": "No CYP2C9 genotype stored", "vkorc1": "VKORC1 in pgx v2 is not used: VKORC1 not callable"}
    note = genotype_note(WARFARIN, PATIENT, sources, MIXTURE)
    assert note == ("No CYP2C9 genotype stored; VKORC1 in pgx v2 is not used: VKORC1 not callable: simulated over "
                    "population genotype frequencies (European ancestry; CPIC), so the bands include the genotype "
                    "uncertainty.")
    assert genotype_note(load_drug("vancomycin"), PATIENT, sources, []) is None
