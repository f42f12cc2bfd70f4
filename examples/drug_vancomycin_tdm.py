"""Vancomycin on the twin: compare two regimens, then individualise the dose from two measured levels."""

from __future__ import annotations

from medtwin.pharmaco import twin
from medtwin.pharmaco.covariates import PatientCovariates
from medtwin.pharmaco.dosing import Regimen


def main() -> None:
    patient = PatientCovariates(age_years=68, weight_kg=82, sex="male", serum_creatinine_mg_dl=1.3)
    regimens = [Regimen(dose=d, route="iv_infusion", interval_h=12, n_doses=8, infusion_duration_h=1) for d in ("750 mg", "1 g")]
    comparison = twin.compare_regimens(twin.CompareRequest(drug="vancomycin", patient=patient, regimens=regimens,
                                                           horizon_h=96, n_samples=300, seed=1))
    for o in comparison.outcomes:
        print(f"{o.regimen.dose} q12h: AUC24 median {o.metric_p50:.0f} mg*h/L, "
              f"P(400-600) {o.probability_target:.0%}, P(>600) {o.probability_adverse:.0%}")
    history = Regimen(dose="1 g", route="iv_infusion", interval_h=12, n_doses=4, infusion_duration_h=1).events()
    levels = [twin.Level(time_h=38.0, value=31.0, unit="mg/L"), twin.Level(time_h=47.5, value=17.0, unit="mg/L")]
    suggestion = twin.individualise(twin.IndividualiseRequest(drug="vancomycin", patient=patient, history=history,
                                                              levels=levels, max_adverse_probability=0.15))
    cl = next(p for p in suggestion.parameters if p.name == "CL")
    print(f"MAP CL {cl.individual:.2f} L/h (population {cl.population:.2f}); suggested {suggestion.regimen.dose if suggestion.regimen else '-'}"
          f" q{suggestion.regimen.interval_h if suggestion.regimen else 0:g}h, P(target) {suggestion.probability_target:.0%}")


if __name__ == "__main__":
    main()
