"""Each growth law's closed form against a tight ODE solve of the same law; treatment arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from medtwin.model.parameters import load_parameters
from medtwin.model.simulate import simulate
from medtwin.model.timeline import Timeline
from medtwin.oncology import treatment as tx
from medtwin.oncology.growth import LAWS, from_theta, to_theta, volume
from medtwin.oncology.models import chemo_model, growth_model
from medtwin.solve import Dopri5

# growing and shrinking lesions for every law (mm3, 1/d ...)
CASES = {
    "exponential": [[1000.0, 0.01], [5000.0, -0.02]],
    "logistic": [[1000.0, 20000.0, 0.03], [9000.0, 2000.0, 0.02]],
    "gompertz": [[1000.0, 20000.0, 0.02], [9000.0, 2000.0, 0.01]],
    "bertalanffy": [[1000.0, 20000.0, 0.02], [9000.0, 2000.0, 0.01]],
    "gen_bertalanffy": [[1000.0, 20000.0, 0.02, 0.6], [9000.0, 2000.0, 0.02, -0.5], [500.0, 8000.0, 0.01, 0.0]],
    "exp_linear": [[1000.0, 0.03, 100.0], [1000.0, -0.01, 50.0], [4000.0, 0.05, 100.0]],
    "power_law": [[1000.0, 0.5, 0.6], [5000.0, -2.0, 0.5]],
}


@pytest.mark.parametrize("name", sorted(LAWS))
def test_closed_form_equals_tight_ode(name: str) -> None:
    model = growth_model(name)
    params = np.asarray(CASES[name])
    timeline = Timeline(np.linspace(0.0, 300.0, 31))
    closed = simulate(model, params, timeline)
    ode = simulate(model, params, timeline, Dopri5(rtol=1e-10, atol=1e-9), method="ode")
    assert closed.method == "analytic"
    np.testing.assert_allclose(closed.output("volume"), ode.output("volume"), rtol=1e-6, atol=1e-6)
    assert not np.allclose(closed.output("volume")[-1], params[:, 0])  # the volume moved


@pytest.mark.parametrize("name", sorted(LAWS))
def test_parameter_files_load_with_units_and_source(name: str) -> None:
    model = growth_model(name)
    loaded = load_parameters(model)
    assert "Laleh" in loaded.source
    assert loaded.values.shape == (1, LAWS[name].n_parameters)


def test_theta_round_trip() -> None:
    for name, rows in CASES.items():
        p = np.asarray(rows)
        np.testing.assert_allclose(from_theta(name, to_theta(name, p)), p, rtol=1e-12)


def test_bed_and_eqd2_published_values() -> None:
    assert tx.bed(tx.Fractionation(60.0, 30), 10.0) == pytest.approx(72.0, abs=1e-12)
    assert round(tx.eqd2(tx.Fractionation(55.0, 20), 10.0), 1) == 58.4
    assert tx.eqd2(tx.Fractionation(55.0, 20), 10.0) == pytest.approx(55 * (1 + 2.75 / 10) / 1.2, rel=1e-12)
    # 2 Gy fractions: EQD2 equals the physical dose at any alpha/beta
    assert tx.eqd2(tx.Fractionation(70.0, 35), 3.0) == pytest.approx(70.0)
    # repopulation lowers BED by ln2 (T - Tk) / (alpha Tp)
    long = tx.Fractionation(60.0, 30, overall_days=40.0)
    assert tx.bed(long, 10.0, alpha=0.3, t_pot_days=3.0, kickoff_days=21.0) == pytest.approx(
        72.0 - math.log(2) * 19.0 / 0.9)
    with pytest.raises(ValueError):
        tx.Fractionation(0.0, 30)


def test_norton_simon_closed_form_equals_ode() -> None:
    on, off = np.array([10.0, 60.0]), np.array([30.0, 80.0])
    t = np.linspace(0.0, 120.0, 25)
    closed = tx.norton_simon_gompertz(2000.0, 30000.0, 0.03, 1.8, t, on, off)

    def f(time: float, v: np.ndarray) -> list[float]:
        c = float(np.any((time >= on) & (time < off)))
        return [tx.norton_simon_rhs(0.03, 30000.0, 1.8, c, float(v[0]))]

    ode = solve_ivp(f, (0.0, 120.0), [2000.0], t_eval=t, rtol=1e-11, atol=1e-9, max_step=0.5)
    np.testing.assert_allclose(closed, ode.y[0], rtol=1e-5)
    assert closed[6] < closed[2]  # shrinks on therapy (effect > 1), days 10 to 30


def test_chemo_model_on_the_generic_simulator_matches_closed_form() -> None:
    model = chemo_model()
    timeline = Timeline.from_dict(model, {"t_eval": {"start": 0.0, "stop": 100.0, "step": 5.0},
                                          "inputs": {"chemotherapy": [[0.0, 0.0], [20.0, 1.0], [50.0, 0.0]]}})
    sim = simulate(model, [[2000.0, 30000.0, 0.03, 1.5]], timeline, Dopri5(rtol=1e-10, atol=1e-9))
    closed = tx.norton_simon_gompertz(2000.0, 30000.0, 0.03, 1.5, timeline.t_eval, np.array([20.0]),
                                      np.array([50.0]))
    np.testing.assert_allclose(sim.output("volume")[:, 0], closed, rtol=1e-6)


def test_log_kill_exponential() -> None:
    t = np.array([0.0, 10.0, 40.0])
    v = tx.log_kill_exponential(100.0, 0.01, 0.05, t, np.array([5.0]), np.array([25.0]))
    np.testing.assert_allclose(v, 100.0 * np.exp([0.0, 0.1 - 0.25, 0.4 - 1.0]))


def test_two_populations_total_is_logistic_without_therapy_and_resistance_emerges() -> None:
    r, k = 0.05, 10000.0
    t = np.linspace(0.0, 200.0, 11)
    sol = solve_ivp(lambda _t, y: tx.two_population_rhs(y, r, k, 0.0, 0.0), (0, 200), [900.0, 100.0],
                    t_eval=t, rtol=1e-10, atol=1e-8)
    total = sol.y.sum(axis=0)
    logistic = k / (1 + (k / 1000.0 - 1) * np.exp(-r * t))
    np.testing.assert_allclose(total, logistic, rtol=1e-6)
    treated = solve_ivp(lambda _t, y: tx.two_population_rhs(y, r, k, 0.3, 1.0), (0, 200), [900.0, 100.0],
                        rtol=1e-10, atol=1e-8)
    s_end, r_end = treated.y[:, -1]
    assert s_end < 1.0 < 5000.0 < r_end  # the sensitive clone is killed, the resistant one takes over


def test_radiotherapy_lq_with_repopulation() -> None:
    schedule = tx.Fractionation(60.0, 30, overall_days=39.0)
    alpha, beta = 0.3, 0.03
    end = tx.radiotherapy_volume(1e4, schedule, alpha, beta, 3.0, 21.0, np.array([39.0]))[0]
    expected = 1e4 * math.exp(-30 * (0.3 * 2 + 0.03 * 4) + math.log(2) / 3.0 * 18.0)
    assert end == pytest.approx(expected, rel=1e-12)
    # log cell kill equals alpha x BED (minus repopulation): one source of LQ arithmetic
    assert -math.log(end / 1e4) == pytest.approx(alpha * tx.bed(schedule, alpha / beta, alpha=alpha,
                                                                t_pot_days=3.0, kickoff_days=21.0))
    assert tx.lq_surviving_fraction(np.array([2.0]), alpha, beta)[0] == pytest.approx(math.exp(-0.72))


positive = st.floats(1e-2, 1e5)


@settings(max_examples=60, deadline=None)
@given(positive, positive, st.floats(1e-4, 0.2), st.floats(-2.0, 2.0), st.floats(0.0, 500.0))
def test_richards_family_invariants(v0: float, k: float, omega: float, lam: float, t: float) -> None:
    """v(0) = v0; finite and positive; between v0 and K (monotone approach); lam -> 0 is Gompertz, -1 logistic."""
    p = np.array([[v0, k, omega, lam]])
    times = np.array([[0.0, t]])
    v = volume("gen_bertalanffy", p, times)[0]
    assert v[0] == pytest.approx(v0, rel=1e-12)
    assert np.all(np.isfinite(v)) and np.all(v > 0)
    assert min(v0, k) * (1 - 1e-7) <= v[1] <= max(v0, k) * (1 + 1e-7)
    near_zero = volume("gen_bertalanffy", np.array([[v0, k, omega, 2e-6]]), times)[0]  # general branch
    np.testing.assert_allclose(near_zero, volume("gompertz", np.array([[v0, k, omega]]), times)[0], rtol=1e-3)
    minus_one = volume("gen_bertalanffy", np.array([[v0, k, omega, -1.0]]), times)[0]
    np.testing.assert_allclose(minus_one, volume("logistic", np.array([[v0, k, omega]]), times)[0], rtol=1e-9)
