"""Clopidogrel's active metabolite (H4) in the drug twin (#14 item 4): every number of clopidogrel.toml is recomputed
from the published profiles shipped beside it; a CYP2C19 poor metaboliser's active-metabolite AUC is the cited
fraction of a normal metaboliser's, so the what-if answer changes with the genotype and says why (gene, phenotype,
source); a not-callable CYP2C19 gets no adjustment and says so."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from importlib import resources

import numpy as np
import pytest
from scipy.optimize import least_squares
from scipy.stats import norm

from medtwin.pharmaco.covariates import GeneStatus, PatientCovariates
from medtwin.pharmaco.dosing import DoseEvent, Regimen, Route
from medtwin.pharmaco.library import load_drug
from medtwin.pharmaco.pgx import build_vcf
from medtwin.pharmaco.pk import simulate
from medtwin.pharmaco.twin import (
    CompareRequest,
    DrugComparison,
    IndividualiseRequest,
    Level,
    compare_regimens,
    individualise,
    typical_with_genotype,
)
from medtwin.store.database import Store
from medtwin.twin.pharmacogenomics import CovariateInput, TwinCompareRequest, run_comparison, store_pgx

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
PROFILES = "data/drugs/clopidogrel_active_metabolite_profiles.csv"
MAINTENANCE = Regimen(dose="75 mg", route=Route.ORAL, interval_h=24, n_doses=7)


def profile(study: str, phenotype: str) -> tuple[np.ndarray, np.ndarray]:
    text = resources.files("medtwin.pharmaco").joinpath(PROFILES).read_text(encoding="utf-8")
    rows = [r for r in csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
            if r["study"] == study and r["phenotype"] == phenotype]
    assert rows, (study, phenotype)
    return (np.array([float(r["time_h"]) for r in rows]), np.array([float(r["concentration_ng_ml"]) for r in rows]))


def auc_from_dose(study: str, phenotype: str, until_h: float = np.inf) -> float:
    """AUC from the dose (0 ng/mL) to the last sample (at most ``until_h``), trapezoidal rule [ng*h/mL]."""
    t, c = profile(study, phenotype)
    kept = t <= until_h + 0.01
    return float(np.trapezoid(np.r_[0.0, c[kept]], np.r_[0.0, t[kept]]))


def patient(**genes: GeneStatus) -> PatientCovariates:
    return PatientCovariates(age_years=60, weight_kg=80, sex="male", pharmacogenes=genes)  # type: ignore[arg-type]


def cyp2c19(phenotype: str | None = None, *, callable: bool = True, reason: str = "") -> GeneStatus:
    return GeneStatus(gene="CYP2C19", phenotype=phenotype, callable=callable, reason=reason, source="test")


def what_if(genes: dict[str, GeneStatus], n: int = 3000) -> DrugComparison:
    return compare_regimens(CompareRequest(drug="clopidogrel", patient=patient(**genes), regimens=[MAINTENANCE],
                                           horizon_h=168, n_samples=n, seed=5))


# ---- the numbers of the drug file, from the published profiles -------------------------------------------


def test_cyp2c19_factors_are_the_published_auc_ratios() -> None:
    levels = load_drug("clopidogrel").genotype_effects[0].levels
    nm, im, pm = (auc_from_dose("Song2018", p) for p in ("NM", "IM", "PM"))
    assert (nm, im, pm) == pytest.approx((59.508, 36.293, 25.474), abs=1e-3)  # ng*h/mL, 300 mg single dose
    assert levels["Poor Metabolizer"] == pytest.approx(pm / nm, abs=5e-4)  # 0.428, to the file's rounding
    assert levels["Intermediate Metabolizer"] == pytest.approx(im / nm, abs=5e-4)  # 0.610
    assert levels["Normal Metabolizer"] == 1.0
    # independent studies at the maintenance dose agree: intermediate (Li 2018, 0.599) and poor (Zhang 2020, 0-3 h, 0.433)
    assert auc_from_dose("Li2018", "IM") / auc_from_dose("Li2018", "NM") == pytest.approx(levels["Intermediate Metabolizer"],
                                                                                          abs=0.02)
    zhang = [auc_from_dose("Zhang2020", p, until_h=3.0) for p in ("NM", "PM")]
    assert zhang[1] / zhang[0] == pytest.approx(levels["Poor Metabolizer"], abs=0.01)
    assert not {"Rapid Metabolizer", "Ultrarapid Metabolizer"} & set(levels)  # no figure found: not invented


def test_pk_parameters_are_the_fit_to_the_normal_metaboliser_profile() -> None:
    drug = load_drug("clopidogrel")
    t, c = profile("Li2018", "NM")  # 75 mg, day 10 (the metabolite's t1/2 < 1 h: no accumulation)

    def model(p: np.ndarray) -> np.ndarray:
        ka, cl, v = np.exp(p[:3])
        k, tt = cl / v, np.maximum(t - p[3], 0.0)
        return 75.0 * ka / (v * (ka - k)) * (np.exp(-k * tt) - np.exp(-ka * tt)) * 1000.0  # ng/mL

    fit = least_squares(lambda p: np.log(np.maximum(model(p), 1e-12)) - np.log(c), x0=[np.log(3.0), np.log(5000.0), np.log(5000.0), 0.1],
                        bounds=([-5.0, 0.0, 0.0, 0.0], [5.0, 15.0, 15.0, 0.3]))
    ka, cl, v = np.exp(fit.x[:3])
    p = drug.parameters
    assert (p["ka"].value, p["CL"].value, p["V1"].value, p["tlag"].value) == pytest.approx(
        (ka, cl, v, fit.x[3]), rel=5e-3)
    # the shipped model (pk.simulate, typical NM) through the published points, and its time course: Tmax where the
    # data peak (0.50 h) and, per the label, "approximately 30 to 60 minutes after dosing"; t1/2 about half an hour
    typical, _ = typical_with_genotype(drug, patient(CYP2C19=cyp2c19("Normal Metabolizer")))
    grid = np.linspace(0.0, 6.0, 6001)
    conc = simulate(drug.structure, drug.pk_parameters(typical), Regimen(
        dose="75 mg", route=Route.ORAL, interval_h=24, n_doses=1).schedule(), grid).concentration_mg_l[0] * 1000.0
    log_error = np.log(np.interp(t, grid, conc) / c)
    assert np.sqrt(np.mean(log_error**2)) < 0.25 and np.max(np.abs(log_error)) < 0.45
    tmax = grid[np.argmax(conc)]
    assert abs(tmax - t[np.argmax(c)]) < 0.05 and 0.45 <= tmax <= 1.0
    assert np.log(2) * p["V1"].value / p["CL"].value == pytest.approx(0.57, abs=0.01)


def test_targets_are_the_normal_metaboliser_exposure_band_and_low_is_adverse() -> None:
    drug = load_drug("clopidogrel")
    nm_auc24 = 75.0 / drug.parameters["CL"].value  # steady state, mg*h/L
    omega = np.sqrt(drug.bsv.omega[drug.bsv.names.index("CL"), drug.bsv.names.index("CL")])  # AUC24 = 75 / CL_i
    t = drug.targets
    assert t["target_low"] == pytest.approx(nm_auc24 * np.exp(norm.ppf(0.05) * omega), abs=1e-6)
    assert t["target_high"] == pytest.approx(nm_auc24 * np.exp(norm.ppf(0.95) * omega), abs=1e-6)
    assert t["adverse_threshold"] == t["target_low"] and t["adverse_below"] is True


# ---- genotype in the model and the what-if ------------------------------------------------------------------


def test_poor_metaboliser_active_metabolite_auc_is_the_cited_fraction() -> None:
    drug = load_drug("clopidogrel")
    grid = np.linspace(0.0, 24.0, 24001)
    dose = Regimen(dose="75 mg", route=Route.ORAL, interval_h=24, n_doses=1).schedule()
    auc = {}
    for phenotype in ("Normal Metabolizer", "Poor Metabolizer"):
        typical, _ = typical_with_genotype(drug, patient(CYP2C19=cyp2c19(phenotype)))
        conc = simulate(drug.structure, drug.pk_parameters(typical), dose, grid).concentration_mg_l[0]
        auc[phenotype] = float(np.trapezoid(conc, grid))
    assert auc["Normal Metabolizer"] == pytest.approx(75.0 / 9760.0, rel=1e-4)  # closed form: F D / CL
    assert auc["Poor Metabolizer"] / auc["Normal Metabolizer"] == pytest.approx(0.428, rel=1e-4)  # Song 2018


def test_what_if_changes_with_cyp2c19_and_says_why() -> None:
    normal = what_if({"CYP2C19": cyp2c19("Normal Metabolizer")})
    poor = what_if({"CYP2C19": cyp2c19("Poor Metabolizer")})
    nm, pm = normal.outcomes[0], poor.outcomes[0]
    # same virtual patients (seed), formation scaled: every AUC, hence the median, is 0.428 x the normal one
    assert pm.metric_p50 / nm.metric_p50 == pytest.approx(0.428, rel=1e-9)
    assert nm.metric_p50 == pytest.approx(75.0 / 9760.0, rel=0.02)  # AUC24 of the typical NM (grid of 0.25 h)
    # below the NMs' 5th percentile, under log-normal CL (omega^2 0.170): NM 0.05 by construction, PM 0.66 (analytic)
    sd, low = np.sqrt(0.170), np.exp(norm.ppf(0.05) * np.sqrt(0.170))
    assert nm.probability_adverse == pytest.approx(0.05, abs=0.02)
    assert pm.probability_adverse == pytest.approx(norm.sf(np.log(0.428 / low) / sd), abs=0.03)
    assert nm.probability_target == pytest.approx(0.90, abs=0.02) and pm.probability_target < 0.4
    (adjustment,) = poor.genotype
    assert adjustment.gene == "CYP2C19" and adjustment.parameter == "F" and adjustment.applied
    assert adjustment.factor == 0.428
    assert "CYP2C19 Poor Metabolizer (test): clopidogrel F x 0.428" in adjustment.reason
    assert "Song 2018" in adjustment.reason and "0.428" in adjustment.reason
    assert "below what 95 % of normal metabolisers reach" in poor.adverse and "AUC24" in poor.target


def test_not_callable_or_unmodelled_cyp2c19_gives_no_adjustment_and_says_so() -> None:
    normal = what_if({"CYP2C19": cyp2c19("Normal Metabolizer")}, n=500)
    unknown = what_if({"CYP2C19": cyp2c19(callable=False, reason="CYP2C19 not callable: rs4244285 missing")}, n=500)
    (adjustment,) = unknown.genotype
    assert not adjustment.applied and adjustment.factor == 1.0
    assert adjustment.reason.startswith("CYP2C19 not callable: rs4244285 missing")
    assert adjustment.reason.endswith("population F used (no genotype adjustment)")
    assert unknown.outcomes[0].metric_p50 == pytest.approx(normal.outcomes[0].metric_p50)  # the population value
    absent = what_if({}, n=500)
    assert absent.genotype[0].reason.startswith("CYP2C19 unknown") and not absent.genotype[0].applied
    rapid = what_if({"CYP2C19": cyp2c19("Ultrarapid Metabolizer")}, n=500)
    assert not rapid.genotype[0].applied and "cites no F factor" in rapid.genotype[0].reason


def test_individualise_keeps_the_labelled_dose_and_reports_the_poor_metaboliser_shortfall() -> None:
    history = [DoseEvent(time_h=24.0 * i, amount="75 mg", route=Route.ORAL) for i in range(7)]
    # a level at 30 min after the 7th dose, at the poor metaboliser's typical concentration
    drug = load_drug("clopidogrel")
    typical, _ = typical_with_genotype(drug, patient(CYP2C19=cyp2c19("Poor Metabolizer")))
    level = float(simulate(drug.structure, drug.pk_parameters(typical), Regimen(
        dose="75 mg", route=Route.ORAL, interval_h=24, n_doses=7).schedule(), np.array([144.5])).concentration_mg_l[0, 0])
    out = individualise(IndividualiseRequest(drug="clopidogrel", patient=patient(CYP2C19=cyp2c19("Poor Metabolizer")),
                                             history=history, levels=[Level(time_h=144.5, value=level, unit="mg/L")],
                                             n_samples=500, seed=1))
    assert out.regimen is not None and out.regimen.dose == "75 mg"  # no dose escalation offered
    assert out.probability_adverse > 0.5 and not out.feasible
    assert "CYP2C19 Poor Metabolizer" in out.genotype[0].reason


def test_stored_cyp2c19_poor_metaboliser_drives_the_clopidogrel_what_if(sqlite_store: Store) -> None:
    request = TwinCompareRequest(
        drug="clopidogrel", patient=CovariateInput(age_years=60, weight_kg=80, sex="male"),  # type: ignore[arg-type]
        regimens=[{"dose": "75 mg", "route": "oral", "interval_h": 24, "n_doses": 7}],  # type: ignore[list-item]
        horizon_h=168, n_samples=300, seed=1)
    before = run_comparison(sqlite_store, "p1", request, actor="t", clock=lambda: NOW)
    assert before.genotype[0].reason.startswith("CYP2C19 unknown") and not before.genotype[0].applied
    stored = store_pgx(sqlite_store, "p1", build_vcf({"CYP2C19": "*2/*2"}), actor="t", now=NOW)
    after = run_comparison(sqlite_store, "p1", request, actor="t", clock=lambda: NOW)
    (adjustment,) = after.genotype
    assert adjustment.applied and f"CYP2C19 Poor Metabolizer (pgx v{stored.version})" in adjustment.reason
    assert after.outcomes[0].metric_p50 / before.outcomes[0].metric_p50 == pytest.approx(0.428, rel=1e-9)
    assert after.basis.covariate_sources["pharmacogenes.CYP2C19"] == f"pgx v{stored.version}: CYP2C19"
