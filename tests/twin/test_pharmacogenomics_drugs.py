"""Genotype in the drug twin: the what-if answer changes with the genotype by the factor cited in the drug file
(checked against closed-form PK), says why (gene, phenotype, source), and falls back to the population -- saying
so -- when the gene is not callable. Through the domain functions and through the twin service on a real store."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

import numpy as np
import pytest

from medtwin.pharmaco.covariates import GeneStatus, PatientCovariates
from medtwin.pharmaco.dosing import DoseEvent, Regimen, Route
from medtwin.pharmaco.errors import CovariateError, PharmacoInputError
from medtwin.pharmaco.library import load_drug, parse_drug
from medtwin.pharmaco.pgx import build_vcf
from medtwin.pharmaco.pk import simulate, steady_state
from medtwin.pharmaco.twin import (
    CompareRequest,
    IndividualiseRequest,
    Level,
    compare_regimens,
    individualise,
    typical_with_genotype,
)
from medtwin.store.database import Store
from medtwin.twin.pharmacogenomics import (
    CovariateInput,
    GeneInput,
    TwinCompareRequest,
    run_comparison,
    store_pgx,
)

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
#: Passey 2011 CL/F of a 55-year-old CYP3A5 non-expresser, days 11-180: 38.4 x 0.71 x (55 / 50)^-0.4 [L/h]
TACROLIMUS_CL = 38.4 * 0.71 * (55 / 50) ** -0.4


def patient(**genes: GeneStatus) -> PatientCovariates:
    return PatientCovariates(age_years=55, weight_kg=70, sex="male", pharmacogenes=genes)  # type: ignore[arg-type]


def gene(name: str, phenotype: str | None = None, score: float | None = None, *, callable: bool = True,
         reason: str = "") -> GeneStatus:
    return GeneStatus(gene=name, phenotype=phenotype, activity_score=score, callable=callable, reason=reason,
                      source="test")


# ---- tacrolimus x CYP3A5 ----------------------------------------------------------------------------------


def test_tacrolimus_clearance_factor_for_cyp3a5_expressers_with_its_reason() -> None:
    drug = load_drug("tacrolimus")
    expresser, adjustments = typical_with_genotype(drug, patient(CYP3A5=gene("CYP3A5", "Normal Metabolizer")))
    non, _ = typical_with_genotype(drug, patient(CYP3A5=gene("CYP3A5", "Poor Metabolizer")))
    assert non["CL"][0] == pytest.approx(TACROLIMUS_CL)
    assert expresser["CL"][0] / non["CL"][0] == pytest.approx(2.00)  # Passey 2011 *1/*1; CPIC: 1.5-2x the dose
    (adjustment,) = adjustments
    assert adjustment.applied and adjustment.factor == 2.00
    assert "CYP3A5 Normal Metabolizer" in adjustment.reason and "Passey 2011" in adjustment.reason


def test_tacrolimus_steady_state_average_matches_closed_form_for_each_genotype() -> None:
    drug = load_drug("tacrolimus")
    dose, tau = 3.5, 12.0
    for phenotype, factor in (("Poor Metabolizer", 1.0), ("Intermediate Metabolizer", 1.69)):
        typical, _ = typical_with_genotype(drug, patient(CYP3A5=gene("CYP3A5", phenotype)))
        grid = np.linspace(0.0, tau, 2401)[:-1]
        profile = steady_state(drug.structure, drug.pk_parameters(typical), dose, tau, Route.ORAL, grid)
        average = float(profile.mean())  # rectangle rule on a fine grid of one interval
        assert average == pytest.approx(dose / tau / (TACROLIMUS_CL * factor), rel=2e-3)  # Css,avg = F D / (tau CL)


def test_tacrolimus_what_if_changes_with_genotype_and_says_why() -> None:
    regimen = Regimen(dose="3.5 mg", route="oral", interval_h=12, n_doses=28)  # type: ignore[arg-type]

    def run(genes: dict[str, GeneStatus]) -> tuple[float, list[str], list[bool]]:
        out = compare_regimens(CompareRequest(drug="tacrolimus", patient=patient(**genes), regimens=[regimen],
                                              horizon_h=336, n_samples=400, seed=7))
        return out.outcomes[0].metric_p50, [g.reason for g in out.genotype], [g.applied for g in out.genotype]

    non, _, applied_non = run({"CYP3A5": gene("CYP3A5", "Poor Metabolizer")})
    expresser, reasons, applied = run({"CYP3A5": gene("CYP3A5", "Normal Metabolizer")})
    assert applied == applied_non == [True]
    # steady state at 336 h (t1/2 ~ 22 h). Closed-form pre-dose trough of the typical patient, one compartment
    # with first-order absorption: C = F D ka / (V (ka - k)) (e^-k tau / (1 - e^-k tau) - e^-ka tau / (1 - e^-ka tau))
    def trough(cl: float, ka: float = 4.5, v: float = 716.0, tau: float = 12.0, dose: float = 3.5) -> float:
        k = cl / v
        return dose * ka / (v * (ka - k)) * (np.exp(-k * tau) / (1 - np.exp(-k * tau))
                                             - np.exp(-ka * tau) / (1 - np.exp(-ka * tau)))

    expected = trough(TACROLIMUS_CL) / trough(TACROLIMUS_CL * 2.0)  # ~2.4: faster elimination lowers it more than 1/2
    assert non / expresser == pytest.approx(expected, rel=0.05)  # same draws; median over 400 virtual patients
    assert "tacrolimus CL x 2 -- Passey 2011" in reasons[0]
    unknown, why, applied_unknown = run({"CYP3A5": gene("CYP3A5", callable=False,
                                                        reason="CYP3A5 not callable because defining positions missing")})
    assert unknown == pytest.approx(non) and applied_unknown == [False]  # population = the file's CL
    assert "CYP3A5 not callable because defining positions missing" in why[0]
    assert "population CL used (no genotype adjustment)" in why[0]
    _, absent, _ = run({})
    assert absent[0].startswith("CYP3A5 unknown") and "population CL used" in absent[0]
    _, no_factor, applied_none = run({"CYP3A5": gene("CYP3A5", "Possible Intermediate Metabolizer")})
    assert applied_none == [False] and "cites no CL factor" in no_factor[0]


# ---- fluorouracil x DPYD -----------------------------------------------------------------------------------


def fluorouracil(genes: dict[str, GeneStatus], sex: str = "male", n: int = 2000) -> tuple[float, list[str]]:
    covariates = PatientCovariates(age_years=60, weight_kg=75, sex=sex, pharmacogenes=genes)  # type: ignore[arg-type]
    regimen = Regimen(dose="4320 mg", route="iv_infusion", interval_h=336, n_doses=1,  # type: ignore[arg-type]
                      infusion_duration_h=46)
    out = compare_regimens(CompareRequest(drug="fluorouracil", patient=covariates, regimens=[regimen], horizon_h=60,
                                          n_samples=n, seed=3))
    return out.outcomes[0].metric_p50, [g.reason for g in out.genotype]


def test_fluorouracil_auc_doubles_for_dpyd_activity_score_1_as_cpic_halves_the_dose() -> None:
    normal, reasons_normal = fluorouracil({"DPYD": gene("DPYD", "Normal Metabolizer", 2.0)})
    reduced, reasons = fluorouracil({"DPYD": gene("DPYD", "Intermediate Metabolizer", 1.0)})
    # AUC of a complete infusion = dose / CL (closed form; elimination t1/2 ~ 4 min): 4320 / 322.2 = 13.4 mg*h/L
    assert normal == pytest.approx(4320 / 322.2, rel=0.06)  # sampled median of dose/CL_i, omega^2 = 0.20
    assert reduced / normal == pytest.approx(2.0, rel=0.01)
    assert "DPYD activity score 1 (Intermediate Metabolizer)" in reasons[0] and "CL x 0.5" in reasons[0]
    assert "Amstutz 2018" in reasons[0] and "CL x 1" in reasons_normal[0]
    female, _ = fluorouracil({"DPYD": gene("DPYD", "Normal Metabolizer", 2.0)}, sex="female")
    assert female / normal == pytest.approx(179 / 155, rel=0.01)  # Milano 1992 sex effect


def test_fluorouracil_closed_form_auc_of_the_typical_patient() -> None:
    drug = load_drug("fluorouracil")
    for score, factor in ((2.0, 1.0), (1.5, 0.5), (1.0, 0.5)):
        typical, _ = typical_with_genotype(drug, patient(DPYD=gene("DPYD", "x", score)))
        times = np.linspace(0.0, 60.0, 24001)
        schedule = Regimen(dose="4320 mg", route="iv_infusion", interval_h=336, n_doses=1,  # type: ignore[arg-type]
                           infusion_duration_h=46).schedule()
        conc = simulate(drug.structure, drug.pk_parameters(typical), schedule, times).concentration_mg_l[0]
        auc = float(np.trapezoid(conc, times))
        assert auc == pytest.approx(4320 / (322.2 * factor), rel=1e-3)


def test_dpyd_activity_score_0_is_not_simulated_cpic_says_avoid() -> None:
    for score in (0.0, 0.5):
        with pytest.raises(CovariateError) as info:
            fluorouracil({"DPYD": gene("DPYD", "Poor Metabolizer", score)}, n=50)
        assert info.value.field == "DPYD" and "CPIC recommends avoiding" in info.value.message


def test_dpyd_phenotype_without_activity_score_maps_to_the_same_cpic_rows() -> None:
    normal, _ = fluorouracil({"DPYD": gene("DPYD", "Normal Metabolizer")}, n=400)
    reduced, reasons = fluorouracil({"DPYD": gene("DPYD", "Intermediate Metabolizer")}, n=400)
    assert reduced / normal == pytest.approx(2.0, rel=0.01) and "DPYD Intermediate Metabolizer" in reasons[0]
    with pytest.raises(CovariateError, match="CPIC recommends avoiding"):  # never simulated as a normal clearance
        fluorouracil({"DPYD": gene("DPYD", "Poor Metabolizer")}, n=50)


def test_not_callable_dpyd_uses_the_population_and_says_so() -> None:
    population, _ = fluorouracil({}, n=400)
    not_callable, reasons = fluorouracil({"DPYD": gene(
        "DPYD", callable=False, reason="DPYD not callable because several diplotypes fit the data")}, n=400)
    assert not_callable == pytest.approx(population)
    assert reasons[0].startswith("DPYD not callable because several diplotypes fit the data")
    assert reasons[0].endswith("population CL used (no genotype adjustment)")


def test_genotype_entry_without_source_is_refused_naming_the_entry() -> None:
    text = resources.files("medtwin.pharmaco").joinpath("data/drugs/tacrolimus.toml").read_text(encoding="utf-8")
    broken = text.replace('source = "Passey 2011 (Br J', 'unsourced = "Passey 2011 (Br J')
    with pytest.raises(PharmacoInputError) as info:
        parse_drug(broken, "tacrolimus.toml")
    assert info.value.field == "tacrolimus.toml: genotype[CYP3A5].source"


# ---- through the twin service: genotype from the stored VCF ------------------------------------------------


def test_stored_vcf_drives_the_tacrolimus_what_if(sqlite_store: Store) -> None:
    request = TwinCompareRequest(
        drug="tacrolimus", patient=CovariateInput(age_years=50, weight_kg=70, sex="male"),  # type: ignore[arg-type]
        regimens=[{"dose": "3.5 mg", "route": "oral", "interval_h": 12, "n_doses": 28}],  # type: ignore[list-item]
        horizon_h=336, n_samples=200, seed=1)
    before = run_comparison(sqlite_store, "p1", request, actor="t", clock=lambda: NOW)
    assert before.genotype[0].reason.startswith("CYP3A5 unknown")
    stored = store_pgx(sqlite_store, "p1", build_vcf({"CYP3A5": "*1/*3"}), actor="t", now=NOW)
    after = run_comparison(sqlite_store, "p1", request, actor="t", clock=lambda: NOW)
    (adjustment,) = after.genotype
    assert adjustment.applied and f"CYP3A5 Intermediate Metabolizer (pgx v{stored.version})" in adjustment.reason
    assert after.outcomes[0].metric_p50 < before.outcomes[0].metric_p50 / 1.5
    assert after.basis.covariate_sources["pharmacogenes.CYP3A5"] == f"pgx v{stored.version}: CYP3A5"
    # a request value wins over the stored report
    told = request.model_copy(update={"patient": CovariateInput(
        age_years=50, weight_kg=70, sex="male",  # type: ignore[arg-type]
        pharmacogenes={"CYP3A5": GeneInput(phenotype="Poor Metabolizer")})})
    overridden = run_comparison(sqlite_store, "p1", told, actor="t", clock=lambda: NOW)
    assert overridden.outcomes[0].metric_p50 == pytest.approx(before.outcomes[0].metric_p50)
    assert "(request)" in overridden.genotype[0].reason


def test_stored_dpyd_avoid_is_a_request_error_naming_the_gene(sqlite_store: Store) -> None:
    store_pgx(sqlite_store, "p1", build_vcf({"DPYD": "c.1905+1G>A (*2A)/c.1905+1G>A (*2A)"}), actor="t", now=NOW)
    request = TwinCompareRequest(
        drug="fluorouracil", patient=CovariateInput(age_years=50, weight_kg=70, sex="male"),  # type: ignore[arg-type]
        regimens=[{"dose": "4320 mg", "route": "iv_infusion", "interval_h": 336, "n_doses": 1,  # type: ignore[list-item]
                   "infusion_duration_h": 46}], horizon_h=60, n_samples=50)
    with pytest.raises(CovariateError) as info:
        run_comparison(sqlite_store, "p1", request, actor="t", clock=lambda: NOW)
    assert info.value.field == "patient.pharmacogenes.DPYD" and "avoiding fluoropyrimidines" in info.value.message


def test_individualise_starts_from_the_genotype_adjusted_prior_and_says_why() -> None:
    history = [DoseEvent(time_h=12.0 * i, amount="3.5 mg", route="oral") for i in range(10)]  # type: ignore[arg-type]
    levels = [Level(time_h=119.5, value=0.008, unit="mg/L")]

    def run(phenotype: str) -> tuple[float, list[str]]:
        out = individualise(IndividualiseRequest(drug="tacrolimus", patient=patient(CYP3A5=gene("CYP3A5", phenotype)),
                                                 history=history, levels=levels, n_samples=200, seed=2))
        cl = next(p for p in out.parameters if p.name == "CL")
        assert out.regimen is not None and out.regimen.route == "oral"
        return cl.population, [g.reason for g in out.genotype]

    expresser, reasons = run("Normal Metabolizer")
    non, _ = run("Poor Metabolizer")
    assert expresser == pytest.approx(TACROLIMUS_CL * 2.0) and non == pytest.approx(TACROLIMUS_CL)
    assert "CYP3A5 Normal Metabolizer (test): tacrolimus CL x 2" in reasons[0]
