"""The compiled population engine (medtwin.solve.kernels): analytic solutions, a step size per patient (a batch
never changes any member's answer), per-patient dose times, failures naming the patient."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import cfunc

from medtwin.pharmaco.dosing import DoseSchedule, Route
from medtwin.pharmaco.pk import _LINEAR, CompartmentModel, _augmented, simulate
from medtwin.solve import Dopri5, SolverFailure
from medtwin.solve.kernels import (
    EXACT_SIGNATURE,
    RHS_SIGNATURE,
    STAGE_OFFSETS,
    BatchState,
    CompiledModel,
    Doses,
    advance,
    no_jump,
    no_stop,
)

TIGHT = Dopri5(rtol=1e-10, atol=1e-12)


def _decay(rates: np.ndarray, t_out: np.ndarray, solver: Dopri5 = TIGHT,
           doses: Doses | None = None) -> tuple[np.ndarray, BatchState]:
    """``y' = -k y`` per patient (1 state), y(0) = 1, on the engine; returns (len(t_out), n) and the state."""
    n = rates.size
    a = -rates.reshape(n, 1, 1)
    state = BatchState.start(np.column_stack([np.ones(n), np.zeros(n)]), solver)
    out = np.empty((t_out.size, n, 1))
    out[0] = 1.0
    advance(_LINEAR, state, _augmented(a, 0), np.array([t_out[0]]), np.zeros((n, 1, 1)), t_out[0], t_out[-1],
            solver, t_out, np.array([0]), out, doses)
    out[-1, :, 0] = state.y[:, 0]
    return out[:, :, 0], state


def test_exponential_decay_matches_the_analytic_solution() -> None:
    rates = np.array([0.1, 1.0, 3.0])
    t_out = np.linspace(0.0, 5.0, 41)
    y, state = _decay(rates, t_out)
    exact = np.exp(-np.outer(t_out, rates))
    np.testing.assert_allclose(y, exact, rtol=1e-8, atol=1e-11)  # solver atol 1e-12 where y ~ 0
    # the stiffer patient needed more steps than the slow one: each has its own step size
    assert state.steps[2] > state.steps[0]


def test_a_batch_never_changes_a_members_answer_or_its_step_count() -> None:
    """1 hard + 9 easy patients: each gets exactly what it gets alone (a step size per patient)."""
    rates = np.array([40.0, *np.linspace(0.05, 0.5, 9)])
    t_out = np.linspace(0.0, 10.0, 21)
    together, state = _decay(rates, t_out)
    for i, rate in enumerate(rates):
        alone, single = _decay(np.array([rate]), t_out)
        np.testing.assert_array_equal(together[:, i], alone[:, 0])
        assert state.steps[i] == single.steps[0]
    assert state.steps[0] > 2 * state.steps[1:].max()  # the hard one did not slow the others
    assert state.steps[1] < state.steps[0] / 10


def test_per_patient_doses_are_exact_jumps() -> None:
    """A bolus of 1 at a different time per patient: y = e^{-kt} + e^{-k(t - td)} after it."""
    rates = np.array([0.5, 0.2])
    td = np.array([[1.25], [3.5]])
    doses = Doses.from_columns(td, np.zeros((2, 1), dtype=np.int64), np.ones((2, 1)))
    t_out = np.linspace(0.0, 6.0, 25)
    y, _ = _decay(rates, t_out, doses=doses)
    after = t_out[:, None] >= td.T
    exact = np.exp(-np.outer(t_out, rates)) + np.where(after, np.exp(-(t_out[:, None] - td.T) * rates), 0.0)
    np.testing.assert_allclose(y, exact, rtol=1e-8)


def test_pk_ode_on_the_engine_matches_the_closed_form_to_1e6() -> None:
    """Two-compartment oral dosing with a lag different per subject (per-subject dose times)."""
    model = CompartmentModel(2, absorption=True)
    params = {"CL": np.array([4.0, 6.0, 5.0]), "V1": 40.0, "Q2": 8.0, "V2": 60.0, "ka": np.array([0.8, 1.5, 3.0]),
              "F": 0.8, "tlag": np.array([0.0, 0.5, 1.25])}
    schedule = DoseSchedule(time_h=np.arange(0.0, 72.0, 12.0), amount_mg=np.full(6, 200.0),
                            route=(Route.ORAL,) * 6, duration_h=np.zeros(6))
    t = np.linspace(0.0, 96.0, 193)
    exact = simulate(model, params, schedule, t, method="closed_form").concentration_mg_l
    ode = simulate(model, params, schedule, t, method="ode").concentration_mg_l
    above = exact > 1e-3
    assert np.max(np.abs(ode - exact)[above] / exact[above]) < 1e-6


def test_a_failing_patient_is_named() -> None:
    with pytest.raises(SolverFailure, match="patient 1: more than max_steps"):
        _decay(np.array([0.1, 1e4, 0.1]), np.array([0.0, 10.0]), Dopri5(rtol=1e-8, atol=1e-10, max_steps=200))


def test_non_finite_growth_fails_instead_of_returning_inf() -> None:
    with pytest.raises(SolverFailure, match="patient 0"):
        _decay(np.array([-800.0]), np.array([0.0, 10.0]), Dopri5(rtol=1e-6, atol=1e-8))


def test_max_step_is_respected() -> None:
    _, state = _decay(np.array([1e-6]), np.array([0.0, 100.0]), Dopri5(max_step=2.5))
    assert state.steps[0] >= math.ceil(100.0 / 2.5)


@cfunc(RHS_SIGNATURE, cache=False)
def _fast_decay_rhs(t, y, p, u, dy):  # type: ignore[no-untyped-def]  # y0' = -k y0 (stiff), y1' = y0
    dy[0] = -p[0] * y[0]
    dy[1] = y[0]


@cfunc(EXACT_SIGNATURE, cache=False)
def _fast_decay_exact(s, y0, p, u, out):  # type: ignore[no-untyped-def]  # y0 in closed form
    out[0] = y0[0] * math.exp(-p[0] * s)


@cfunc(EXACT_SIGNATURE, cache=False)
def _fast_decay_stages(h, y0, p, u, out):  # type: ignore[no-untyped-def]  # ... at the five stage offsets
    for row in range(5):
        out[2 * row] = y0[0] * math.exp(-p[0] * STAGE_OFFSETS[row] * h)


def test_closed_form_states_remove_the_stability_limit_and_keep_the_answer() -> None:
    """y0' = -k y0 (k = 400: an explicit step must stay below ~3.3 / k), y1' = y0: with y0 declared a closed-form
    state the engine no longer steps at the stability limit, and both columns match the analytic solution,
    at the requested times (y0 from the closed form, y1 from the interpolant)."""
    k, t_out = 400.0, np.linspace(0.0, 10.0, 41)
    exact = np.column_stack([np.exp(-k * t_out), (1.0 - np.exp(-k * t_out)) / k])
    runs = {}
    for name, model in (("integrated", CompiledModel(_fast_decay_rhs, no_jump, no_stop)),
                        ("closed", CompiledModel(_fast_decay_rhs, no_jump, no_stop, exact=_fast_decay_exact,
                                                 exact_stages=_fast_decay_stages, exact_states=(0,)))):
        solver = Dopri5(rtol=1e-8, atol=1e-12)
        state = BatchState.start(np.array([[1.0, 0.0]]), solver)
        out = np.empty((t_out.size, 1, 2))
        out[0, 0] = state.y[0]
        advance(model, state, np.array([[k]]), np.array([0.0]), np.zeros((1, 1, 1)), 0.0, 10.0, solver, t_out,
                np.array([0, 1]), out)
        out[-1, 0] = state.y[0]
        np.testing.assert_allclose(out[:, 0, :], exact, rtol=1e-6, atol=1e-10)  # y1 ~ 1 / k = 2.5e-3
        runs[name] = int(state.steps[0])
    assert runs["integrated"] > 1000  # 10 / (3.3 / 400) ~ 1200 steps at the stability limit
    assert runs["closed"] < runs["integrated"] / 10
