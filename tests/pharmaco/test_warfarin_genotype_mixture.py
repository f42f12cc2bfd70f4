"""The genotype-unknown warfarin model: each virtual subject's CYP2C9 and VKORC1 drawn from the cited population
frequencies (Hardy-Weinberg), checked exactly with between-subject variability switched off, so the only spread
left is the genotype's; and the IWPC 2009 clinical (genotype-free) algorithm to its closed form."""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pytest

from medtwin.pharmaco.covariates import PatientCovariates
from medtwin.pharmaco.dosing import Regimen, Route
from medtwin.pharmaco.errors import CovariateError, PharmacoInputError
from medtwin.pharmaco.iwpc import IwpcClinicalInput, Race, clinical_coefficients, iwpc_clinical_weekly_dose
from medtwin.pharmaco.library import load_drug, parse_drug
from medtwin.pharmaco.twin import CompareRequest, Level, compare_regimens

TEXT = resources.files("medtwin.pharmaco").joinpath("data/drugs/warfarin.toml").read_text(encoding="utf-8")
NO_BSV = parse_drug(re.sub(r"variances = \[[^\]]*\]", "variances = [0, 0, 0, 0, 0, 0]", TEXT), "warfarin.toml")
REGIMEN = [Regimen(dose="5 mg", route=Route.ORAL, interval_h=24, n_doses=10)]


def patient(**genotype: str) -> PatientCovariates:
    return PatientCovariates(age_years=72, weight_kg=80, sex="male", **genotype)  # type: ignore[arg-type]


def final_inr(n: int = 2000, **genotype: str) -> tuple[float, float, float]:
    result = compare_regimens(CompareRequest(drug="warfarin", patient=patient(**genotype), regimens=REGIMEN,
                                             horizon_h=240, n_samples=n, seed=3), NO_BSV)
    o = result.outcomes[0]
    return o.metric_p05, o.metric_p50, o.metric_p95


def test_without_variability_a_known_genotype_has_no_band_and_the_mixture_spans_the_genotypes() -> None:
    table = {(c, v): final_inr(20, cyp2c9=c, vkorc1=v)[1]
             for c in ("*1/*1", "*1/*2", "*1/*3", "*2/*2", "*2/*3", "*3/*3") for v in ("G/G", "G/A", "A/A")}
    low, mid, high = final_inr(20, cyp2c9="*1/*3", vkorc1="G/A")
    assert low == pytest.approx(mid) == pytest.approx(high)  # one genotype, no variability: no band

    p05, p50, p95 = final_inr()
    assert p05 < p50 < p95
    values = np.array(list(table.values()))
    for q in (p05, p50, p95):  # every quantile of the mixture is one genotype's INR
        assert np.min(np.abs(values - q)) < 1e-6 * q  # (batched ODE solver tolerance)
    # the median is the genotype at the 50 % point of the Hardy-Weinberg frequencies ordered by INR
    drug = load_drug("warfarin")
    c_keys, c_freq = drug.population_genotypes["CYP2C9"].diplotypes()
    v_keys, v_freq = drug.population_genotypes["VKORC1"].diplotypes()
    weight = {(c, v): fc * fv for c, fc in zip(c_keys, c_freq, strict=True) for v, fv in zip(v_keys, v_freq, strict=True)}
    ordered = sorted(table, key=table.__getitem__)
    cumulative = np.cumsum([weight[g] for g in ordered])
    assert p50 == pytest.approx(table[ordered[int(np.searchsorted(cumulative, 0.5))]])
    assert min(values) < p50 < max(values)


def test_only_the_missing_gene_is_mixed() -> None:
    result = compare_regimens(CompareRequest(drug="warfarin", patient=patient(vkorc1="A/A"), regimens=REGIMEN,
                                             horizon_h=240, n_samples=500, seed=3), NO_BSV)
    assert [m.covariate for m in result.population_genotypes] == ["CYP2C9"]
    o = result.outcomes[0]
    slow = final_inr(20, cyp2c9="*3/*3", vkorc1="A/A")[1]
    fast = final_inr(20, cyp2c9="*1/*1", vkorc1="A/A")[1]
    assert fast == pytest.approx(o.metric_p05) and o.metric_p95 < slow  # *1/*1 A/A is 64 %; *3/*3 0.5 %


def test_levels_with_an_unknown_genotype_name_the_gene_instead_of_guessing() -> None:
    with pytest.raises(CovariateError) as caught:
        compare_regimens(CompareRequest(drug="warfarin", patient=patient(), regimens=REGIMEN,
                                        history=[{"time_h": 0, "amount": "5 mg", "route": "oral"}],  # type: ignore[list-item]
                                        levels=[Level(time_h=48, value=1.4, unit="1")]))
    assert caught.value.field == "CYP2C9" and "measured levels" in caught.value.message


@pytest.mark.parametrize(("alleles", "where"), [
    ('{ "*1" = 0.8, "*2" = 0.3 }', "alleles"),  # does not sum to 1
    ('{ "*1" = 0.9, "*9" = 0.1 }', "alleles"),  # *1/*9 is not a level of the model
])
def test_a_bad_frequency_table_names_the_file_and_entry(alleles: str, where: str) -> None:
    text = TEXT.replace('alleles = { "*1" = 0.803, "*2" = 0.124, "*3" = 0.073 }', f"alleles = {alleles}")
    with pytest.raises(PharmacoInputError) as caught:
        parse_drug(text, "warfarin.toml")
    assert caught.value.field == f"warfarin.toml: population_genotypes[CYP2C9].{where}"


def test_iwpc_clinical_algorithm_closed_form() -> None:
    c = clinical_coefficients()
    dose = iwpc_clinical_weekly_dose(IwpcClinicalInput(age_years=67, height_cm=175, weight_kg=82))
    root = 4.0376 - 0.2546 * 6 + 0.0118 * 175 + 0.0134 * 82  # IWPC 2009 clinical algorithm, white, 60-69 y
    assert dose.sqrt_weekly_dose == pytest.approx(root)
    assert dose.weekly_dose_mg == pytest.approx(root**2) and dose.daily_dose_mg == pytest.approx(root**2 / 7)
    black = iwpc_clinical_weekly_dose(IwpcClinicalInput(age_years=67, height_cm=175, weight_kg=82, race=Race.BLACK,
                                                        amiodarone=True))
    assert black.sqrt_weekly_dose == pytest.approx(root + c["race_black"] + c["amiodarone"])
    assert "clinical" in dose.source
