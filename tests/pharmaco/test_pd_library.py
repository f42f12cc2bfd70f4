"""PD models against analytic solutions, covariate equations, drug library data files, twin services."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from medtwin.cli.drug import app
from medtwin.pharmaco import twin
from medtwin.pharmaco.covariates import PatientCovariates, ckd_epi_2021_ml_min_173m2, cockcroft_gault_ml_min
from medtwin.pharmaco.dosing import Regimen
from medtwin.pharmaco.errors import CovariateError, PharmacoInputError, UnknownDrugError
from medtwin.pharmaco.library import available_drugs, load_drug
from medtwin.pharmaco.pd import (
    emax_effect,
    indirect_response_rate,
    indirect_response_steady_state,
    simulate_pkpd,
    warfarin_inr,
    warfarin_inr_rate,
    warfarin_inr_steady_state,
)
from medtwin.pharmaco.pgx import build_vcf
from medtwin.pharmaco.pk import CompartmentModel
from medtwin.solve import Dopri5, integrate

ROOT = Path(__file__).resolve().parents[2]
IDR = {"kin": 10.0, "kout": 0.5, "maximum": 0.8, "c50": 2.0, "hill": 1.0}


def test_emax_half_maximal_at_ec50_and_hill() -> None:
    assert emax_effect(2.0, 1.0, 10.0, 2.0) == pytest.approx(6.0)
    assert emax_effect(4.0, 0.0, 1.0, 2.0, hill=3.0) == pytest.approx(64 / (8 + 64))


@pytest.mark.parametrize("kind", [1, 2, 3, 4])
def test_indirect_response_at_constant_concentration_is_exponential(kind: int) -> None:
    c = 3.0
    r0 = IDR["kin"] / IDR["kout"]
    rss = float(indirect_response_steady_state(kind, c, IDR))
    drug = IDR["maximum"] * c / (IDR["c50"] + c)
    rate = {1: IDR["kout"], 2: IDR["kout"] * (1 - drug), 3: IDR["kout"], 4: IDR["kout"] * (1 + drug)}[kind]
    t = np.linspace(0, 20, 41)
    sol = integrate(lambda _t, y: indirect_response_rate(kind, y, np.full((1, 1), c), IDR), np.array([[r0]]), t,
                    solver=Dopri5(rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(sol.y[:, 0, 0], rss + (r0 - rss) * np.exp(-rate * t), rtol=1e-8)


def test_warfarin_inr_reaches_analytic_steady_state_under_constant_infusion() -> None:
    p = {k: np.array([v]) for k, v in {"EC50": 3.0, "gamma": 0.424, "MTT1": 11.6, "MTT2": 120.0, "lambda": 3.61,
                                       "INRmax": 20.0, "INRbase": 1.0}.items()}
    model = CompartmentModel(1)
    cl, rate = 0.3, 0.06  # mg/h, C_ss = 0.2 mg/L
    sched = Regimen(dose=f"{rate * 5000} mg", route="iv_infusion", interval_h=5000, infusion_duration_h=5000).schedule()
    res = simulate_pkpd(model, {"CL": cl, "V1": 3.0}, sched, [0.0, 3000.0], warfarin_inr_rate(p), np.ones((1, 7)),
                        warfarin_inr(p))
    assert res.response[0, 0] == pytest.approx(1.0)
    assert res.response[0, -1] == pytest.approx(float(warfarin_inr_steady_state(rate / cl, p)[0]), rel=1e-4)


def test_cockcroft_gault_and_ckd_epi_reference_values() -> None:
    # hand-checked: (140-60)*70/(72*1.0) = 77.8 mL/min; female x 0.85
    assert cockcroft_gault_ml_min(60, 70, 1.0, False) == pytest.approx(77.78, abs=0.01)
    assert cockcroft_gault_ml_min(60, 70, 1.0, True) == pytest.approx(66.11, abs=0.01)
    # CKD-EPI 2021: male 50 y Scr 1.0 -> 142 (1/0.9)^-1.2 0.9938^50 = 91.7; female 50 y Scr 0.7 -> 142*0.9938^50*1.012
    assert ckd_epi_2021_ml_min_173m2(1.0, 50, False) == pytest.approx(91.7, abs=0.1)
    assert ckd_epi_2021_ml_min_173m2(0.7, 50, True) == pytest.approx(142 * 0.9938**50 * 1.012, rel=1e-12)
    with pytest.raises(CovariateError, match="serum_creatinine_mg_dl"):
        cockcroft_gault_ml_min(60, 70, 45.0, False)


def test_every_drug_file_loads_with_sources() -> None:
    assert {"warfarin", "vancomycin", "theophylline"} <= set(available_drugs())
    for name in available_drugs():
        drug = load_drug(name)
        assert drug.source and all(p.source and p.unit for p in drug.parameters.values())
        assert all(e.source for e in drug.covariate_effects)
        assert set(drug.structure.parameter_names) - {"F", "tlag"} <= set(drug.parameters)


def test_warfarin_genotype_effects() -> None:
    drug = load_drug("warfarin")
    p = drug.typical_parameters({"CYP2C9": ["*1/*1", "*3/*3", "*1/*1"], "VKORC1": ["G/G", "G/G", "A/A"],
                                 "age_years": [50, 50, 81]})
    np.testing.assert_allclose(p["CL"], [0.314, 0.314 * 0.148, 0.314 * (1 - 0.091)])
    np.testing.assert_allclose(p["EC50"], [4.61, 4.61, 2.20])
    with pytest.raises(CovariateError, match="CYP2C9"):
        drug.typical_parameters({"CYP2C9": ["*1/*9"], "VKORC1": ["G/G"], "age_years": [50]})


def test_bad_requests_name_the_item() -> None:
    with pytest.raises(UnknownDrugError, match="aspirin"):
        load_drug("aspirin")
    with pytest.raises(ValidationError, match="weight_kg"):
        PatientCovariates(age_years=50, weight_kg=0.1, sex="male")
    patient = PatientCovariates(age_years=50, weight_kg=70, sex="male")
    with pytest.raises(CovariateError, match="crcl_ml_min"):
        twin.compare_regimens(twin.CompareRequest(drug="vancomycin", patient=patient,
                                                  regimens=[Regimen(dose="1 g", route="iv_infusion", interval_h=12, infusion_duration_h=1)]))
    patient = PatientCovariates(age_years=50, weight_kg=70, sex="male", serum_creatinine_mg_dl=1.0)
    hist = Regimen(dose="1 g", route="iv_infusion", interval_h=12, infusion_duration_h=1).events()
    with pytest.raises(PharmacoInputError, match=r"levels\[0\].unit"):
        twin.individualise(twin.IndividualiseRequest(drug="vancomycin", patient=patient, history=hist,
                                                     levels=[twin.Level(time_h=5, value=10, unit="ug/mL/h")]))


def test_compare_regimens_orders_exposure_and_risk() -> None:
    patient = PatientCovariates(age_years=60, weight_kg=75, sex="female", serum_creatinine_mg_dl=0.9)
    regs = [Regimen(dose=d, route="iv_infusion", interval_h=12, n_doses=6, infusion_duration_h=1) for d in ("500 mg", "2 g")]
    out = twin.compare_regimens(twin.CompareRequest(drug="vancomycin", patient=patient, regimens=regs, horizon_h=72,
                                                    n_samples=400, seed=2)).outcomes
    assert out[1].metric_p50 == pytest.approx(4 * out[0].metric_p50, rel=0.1)  # linear PK, same virtual patients
    assert out[1].probability_adverse > out[0].probability_adverse
    assert all(a <= b <= c for a, b, c in zip(out[0].concentration_p05, out[0].concentration_p50, out[0].concentration_p95, strict=True))


def test_individualise_suggests_higher_dose_for_fast_clearance() -> None:
    patient = PatientCovariates(age_years=40, weight_kg=80, sex="male", serum_creatinine_mg_dl=1.0)
    hist = Regimen(dose="1 g", route="iv_infusion", interval_h=12, n_doses=4, infusion_duration_h=1).events()
    low = [twin.Level(time_h=38, value=18, unit="mg/L"), twin.Level(time_h=47.5, value=4, unit="mg/L")]
    high = [twin.Level(time_h=38, value=40, unit="mg/L"), twin.Level(time_h=47.5, value=25, unit="mg/L")]
    fast = twin.individualise(twin.IndividualiseRequest(drug="vancomycin", patient=patient, history=hist, levels=low))
    slow = twin.individualise(twin.IndividualiseRequest(drug="vancomycin", patient=patient, history=hist, levels=high))
    daily = [s.regimen.dose_mg * 24 / s.regimen.interval_h for s in (fast, slow) if s.regimen]
    assert daily[0] > daily[1]
    assert fast.probability_adverse <= 0.1 and slow.probability_adverse <= 0.1


def test_cli_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["list"]).exit_code == 0
    vcf = tmp_path / "s.vcf"
    vcf.write_text(build_vcf({"CYP2C19": "*2/*2"}))
    result = runner.invoke(app, ["pgx", str(vcf), "--json"])
    assert result.exit_code == 0 and "Poor Metabolizer" in result.output
    vcf.write_text(build_vcf({}, assembly="hg19"))
    bad = runner.invoke(app, ["pgx", str(vcf)])
    assert bad.exit_code != 0 and "reference" in bad.output
    unknown = runner.invoke(app, ["simulate", "aspirin", "--dose", "1 g", "--interval", "12"])
    assert unknown.exit_code != 0 and "aspirin" in unknown.output
    no_unit = runner.invoke(app, ["simulate", "theophylline", "--dose", "300", "--interval", "12", "--n-doses", "2"])
    assert no_unit.exit_code != 0 and "dose" in no_unit.output
    png = tmp_path / "t.png"
    ok = runner.invoke(app, ["compare", "theophylline", "--regimen", "300 mg,12,4", "--regimen", "600 mg,12,4",
                             "--horizon", "48", "--samples", "50", "--plot", str(png)])
    assert ok.exit_code == 0, ok.output
    assert png.stat().st_size > 1000
    dose = runner.invoke(app, ["warfarin-dose", "--age", "60", "--height", "170", "--weight", "70", "--vkorc1", "G/A",
                               "--cyp2c9", "*1/*1"])
    assert "30.7 mg/week" in dose.output


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("drug_*.py")), ids=lambda p: p.name)
def test_examples_run(script: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(script), run_name="__main__")
    assert "P(" in capsys.readouterr().out
