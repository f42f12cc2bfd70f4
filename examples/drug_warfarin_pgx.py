"""Warfarin on the twin: genotype from a VCF, IWPC dose, and the Hamberg INR model for that dose."""

from __future__ import annotations

from medtwin.pharmaco import twin
from medtwin.pharmaco.covariates import PatientCovariates
from medtwin.pharmaco.dosing import Regimen
from medtwin.pharmaco.iwpc import IwpcInput, iwpc_weekly_dose
from medtwin.pharmaco.pgx import build_vcf, call_pgx, vkorc1_genotype


def main() -> None:
    vcf = build_vcf({"CYP2C9": "*1/*3", "VKORC1": "G/A", "CYP2C19": "*1/*2", "CYP2D6": "*1/*4", "SLCO1B1": "*1/*1"})
    report = call_pgx(vcf)
    for gene, result in report.genes.items():
        print(f"{gene}: {result.diplotype} -> {result.phenotype}")
    cyp2c9 = report.genes["CYP2C9"].diplotype
    vkorc1 = vkorc1_genotype(report.genes["VKORC1"]) or "unknown"
    dose = iwpc_weekly_dose(IwpcInput(age_years=70, height_cm=172, weight_kg=78, vkorc1=vkorc1, cyp2c9=cyp2c9))
    daily = round(dose.daily_dose_mg * 2) / 2
    print(f"IWPC: {dose.weekly_dose_mg:.1f} mg/week -> {daily:g} mg/day")
    patient = PatientCovariates(age_years=70, weight_kg=78, sex="female", cyp2c9=cyp2c9, vkorc1=vkorc1)
    result = twin.compare_regimens(twin.CompareRequest(
        drug="warfarin", patient=patient, horizon_h=14 * 24, n_samples=100, seed=3,
        regimens=[Regimen(dose=f"{daily:g} mg", interval_h=24, n_doses=14), Regimen(dose="5 mg", interval_h=24, n_doses=14)]))
    for o in result.outcomes:
        print(f"{o.regimen.dose}/day: INR day 14 median {o.metric_p50:.2f}, P(INR 2-3) {o.probability_target:.0%}, "
              f"P(INR > 4) {o.probability_adverse:.0%}")


if __name__ == "__main__":
    main()
