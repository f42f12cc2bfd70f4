"""pharmaco.population.simulate_population: one batched call over a drawn population, closed form or the compiled
ODE engine, the same concentrations either way; draws reproducible from the generator."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.pharmaco.dosing import Regimen, Route
from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.pharmaco.pk import CompartmentModel
from medtwin.pharmaco.population import BetweenSubjectVariability, ResidualError, simulate_population

MODEL = CompartmentModel(1, absorption=True)
TYPICAL = {"CL": 5.0, "V1": 40.0, "ka": 1.2, "F": 0.9, "tlag": 0.25}
BSV = BetweenSubjectVariability.from_variances(["CL", "V1", "ka"], [0.09, 0.04, 0.25], {("CL", "V1"): 0.5})
SCHEDULE = Regimen(dose="100 mg", route=Route.ORAL, interval_h=12, n_doses=6).schedule()
T = np.arange(0.0, 84.0, 0.5)


def test_ode_engine_and_closed_form_agree_on_a_drawn_population() -> None:
    closed = simulate_population(MODEL, TYPICAL, BSV, SCHEDULE, T, 200, np.random.default_rng(3), method="closed_form")
    ode = simulate_population(MODEL, TYPICAL, BSV, SCHEDULE, T, 200, np.random.default_rng(3), method="ode")
    np.testing.assert_array_equal(closed.eta, ode.eta)
    exact, other = closed.result.concentration_mg_l, ode.result.concentration_mg_l
    above = exact > 1e-3
    assert np.max(np.abs(other - exact)[above] / exact[above]) < 1e-6
    # between-subject variability really varies the subjects: CL spread matches omega (SD 0.3 on the log scale)
    assert np.std(np.log(closed.parameters["CL"] / 5.0)) == pytest.approx(0.3, rel=0.15)
    assert closed.observed_mg_l is None


def test_residual_error_is_added_to_the_prediction() -> None:
    run = simulate_population(MODEL, TYPICAL, BSV, SCHEDULE, T, 50, np.random.default_rng(1),
                              residual=ResidualError(proportional=0.1))
    assert run.observed_mg_l is not None
    ratio = run.observed_mg_l[:, 20:] / run.result.concentration_mg_l[:, 20:]
    assert np.std(ratio) == pytest.approx(0.1, rel=0.1)


def test_no_subjects_is_refused_naming_n() -> None:
    with pytest.raises(PharmacoInputError, match="n"):
        simulate_population(MODEL, TYPICAL, BSV, SCHEDULE, T, 0, np.random.default_rng(0))
