"""Convergence order, breakpoints, batching and bad input for medtwin.solve."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from medtwin.solve import RK4, Dopri5, SolverInputError, integrate


def _oscillator(t: float, y: np.ndarray) -> np.ndarray:
    """y'' = -w^2 y plus forced decay; exact solution known."""
    w = np.array([1.0, 2.0, 0.5])[:, None]
    return np.concatenate([y[:, 1:2], -(w[:, 0:1] ** 2) * y[:, 0:1]], axis=1)


def _exact(t: np.ndarray) -> np.ndarray:
    w = np.array([1.0, 2.0, 0.5])
    tt = t[:, None]
    return np.stack([np.cos(w * tt), -w * np.sin(w * tt)], axis=2)  # (m, n, 2)


def _observed_order(errors: list[float], steps: list[float]) -> float:
    slope, _ = np.polyfit(np.log(steps), np.log(errors), 1)
    return float(slope)


def test_rk4_converges_with_order_four() -> None:
    t_eval = np.linspace(0.0, 5.0, 11)
    y0 = _exact(np.array([0.0]))[0]
    steps = [0.2, 0.1, 0.05, 0.025]
    errors = []
    for h in steps:
        sol = integrate(_oscillator, y0, t_eval, solver=RK4(step=h))
        errors.append(float(np.max(np.abs(sol.y[-1] - _exact(t_eval)[-1]))))
    order = _observed_order(errors, steps)
    assert 3.8 < order < 4.3, (order, errors)


def test_rk4_interpolated_outputs_are_accurate() -> None:
    t_eval = np.linspace(0.0, 5.0, 37)  # not aligned with the step grid
    y0 = _exact(np.array([0.0]))[0]
    sol = integrate(_oscillator, y0, t_eval, solver=RK4(step=0.01))
    assert np.max(np.abs(sol.y - _exact(t_eval))) < 1e-7


def test_dopri5_fixed_step_convergence_order_five() -> None:
    # disable adaptivity with a huge tolerance and a fixed max_step = first_step
    t_eval = np.array([0.0, 4.0])
    y0 = _exact(np.array([0.0]))[0]
    steps = [0.4, 0.2, 0.1, 0.05]
    errors = []
    for h in steps:
        solver = Dopri5(rtol=1e3, atol=1e3, first_step=h, max_step=h)
        sol = integrate(_oscillator, y0, t_eval, solver=solver)
        assert sol.n_steps == round(4.0 / h)
        errors.append(float(np.max(np.abs(sol.y[-1] - _exact(t_eval)[-1]))))
    order = _observed_order(errors, steps)
    assert 4.7 < order < 5.4, (order, errors)


def test_dopri5_tolerance_controls_error_and_dense_output() -> None:
    t_eval = np.linspace(0.0, 10.0, 201)
    y0 = _exact(np.array([0.0]))[0]
    loose = integrate(_oscillator, y0, t_eval, solver=Dopri5(rtol=1e-4, atol=1e-7))
    tight = integrate(_oscillator, y0, t_eval, solver=Dopri5(rtol=1e-9, atol=1e-12))
    err_loose = np.max(np.abs(loose.y - _exact(t_eval)))
    err_tight = np.max(np.abs(tight.y - _exact(t_eval)))
    assert err_tight < 1e-7
    assert err_tight < err_loose / 100
    assert tight.n_steps > loose.n_steps
    assert tight.y.shape == (201, 3, 2)


def test_breakpoints_are_hit_exactly_and_jumps_applied() -> None:
    # dy/dt = -k y with a unit dose added at t = 1.3 and t = 2.7 (one-compartment bolus)
    k = np.array([[0.5], [1.0]])

    def decay(t: float, y: np.ndarray) -> np.ndarray:
        return -k * y

    hits: list[float] = []

    def dose(t: float, y: np.ndarray) -> np.ndarray:
        hits.append(t)
        return y + 1.0

    t_eval = np.array([0.0, 1.3, 2.0, 2.7, 4.0])
    y0 = np.ones((2, 1))
    sol = integrate(decay, y0, t_eval, solver=Dopri5(rtol=1e-10, atol=1e-12), breakpoints=(1.3, 2.7, 9.0),
                    on_breakpoint=dose)
    assert hits == [1.3, 2.7]

    def exact(t: float) -> np.ndarray:
        kk = k[:, 0]
        value = np.exp(-kk * t)
        for tb in (1.3, 2.7):
            if t >= tb:
                value = value + np.exp(-kk * (t - tb))
        return value

    for i, t in enumerate(t_eval):
        np.testing.assert_allclose(sol.y[i, :, 0], exact(t), rtol=1e-8)
    rk = integrate(decay, y0, t_eval, solver=RK4(step=0.01), breakpoints=(1.3, 2.7), on_breakpoint=dose)
    for i, t in enumerate(t_eval):
        np.testing.assert_allclose(rk.y[i, :, 0], exact(t), rtol=1e-8)


def test_piecewise_input_is_sampled_from_its_own_segment() -> None:
    # y' = u(t) with u = 1 on [0, 1), 0 after: exact y(2) = 1 even with a step landing on t = 1
    def f(t: float, y: np.ndarray) -> np.ndarray:
        return np.full_like(y, 1.0 if t < 1.0 else 0.0)

    for solver in (Dopri5(), RK4(step=0.5)):
        sol = integrate(f, np.zeros((1, 1)), np.array([0.0, 1.0, 2.0]), solver=solver, breakpoints=[1.0])
        np.testing.assert_allclose(sol.y[:, 0, 0], [0.0, 1.0, 1.0], atol=1e-12)


def test_matches_scipy_on_nonlinear_batch() -> None:
    def vdp(t: float, y: np.ndarray) -> np.ndarray:
        mu = np.array([0.5, 1.0, 2.0])[:, None]
        return np.concatenate([y[:, 1:2], mu * (1 - y[:, 0:1] ** 2) * y[:, 1:2] - y[:, 0:1]], axis=1)

    y0 = np.array([[2.0, 0.0], [1.0, 1.0], [0.5, -0.5]])
    t_eval = np.linspace(0, 8, 50)
    sol = integrate(vdp, y0, t_eval, solver=Dopri5(rtol=1e-9, atol=1e-11))
    for i in range(3):
        ref = solve_ivp(lambda t, y, i=i: vdp(t, y[None] * np.ones((3, 1)))[i], (0, 8), y0[i], method="DOP853",
                        t_eval=t_eval, rtol=1e-12, atol=1e-12)
        assert np.max(np.abs(sol.y[:, i, :] - ref.y.T)) < 1e-6


def test_deterministic_and_batch_equals_single() -> None:
    def f(t: float, y: np.ndarray) -> np.ndarray:
        return -y * (1 + np.sin(t))

    y0 = np.array([[1.0], [2.0]])
    t_eval = np.linspace(0, 3, 7)
    a = integrate(f, y0, t_eval)
    b = integrate(f, y0, t_eval)
    assert np.array_equal(a.y, b.y) and a.n_steps == b.n_steps
    single = integrate(f, y0[1], t_eval, solver=Dopri5(rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(a.y[:, 1, 0], single.y[:, 0, 0], rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"t_eval": [0.0, 2.0, 1.0]}, "t_eval"),
        ({"t_eval": [0.0, 0.0]}, "t_eval"),
        ({"t_eval": []}, "t_eval"),
        ({"y0": np.ones((2, 2, 2))}, "y0"),
        ({"y0": [np.nan, 1.0]}, "y0"),
        ({"breakpoints": [np.inf]}, "breakpoints"),
    ],
)
def test_bad_input_names_field(kwargs: dict, field: str) -> None:
    args = {"y0": np.ones((1, 2)), "t_eval": [0.0, 1.0], **kwargs}
    with pytest.raises(SolverInputError) as info:
        integrate(lambda t, y: -y, args["y0"], args["t_eval"], breakpoints=args.get("breakpoints", ()))
    assert info.value.field == field


@pytest.mark.parametrize(("make", "field"), [(lambda: Dopri5(rtol=-1), "rtol"), (lambda: Dopri5(atol=0), "atol"),
                                             (lambda: RK4(step=0), "step"), (lambda: Dopri5(max_step=-1), "max_step")])
def test_bad_solver_options(make, field: str) -> None:
    with pytest.raises(SolverInputError) as info:
        make()
    assert info.value.field == field
