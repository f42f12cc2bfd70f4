"""A solver is any object with ``run(...)``: a new one plugs into ``integrate`` without editing solve/."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from medtwin.solve import Dopri5, Solver, SolverInputError, integrate
from medtwin.solve._core import JumpFunction, RightHandSide

Array = np.ndarray


@dataclass(frozen=True)
class ExplicitEuler:
    """A first-order solver defined only here: steps of ``h`` between stops, linear interpolation."""

    h: float

    def run(self, f: RightHandSide, y: Array, t_out: Array, stops: Array, on_breakpoint: JumpFunction | None,
            out: Array) -> tuple[int, int, int]:
        grid = np.unique(np.concatenate([np.arange(t_out[0], t_out[-1], self.h), t_out, stops]))
        steps = 0
        values = [y.copy()]
        for a, b in zip(grid[:-1], grid[1:], strict=True):
            if on_breakpoint is not None and np.any(stops == a):
                y = on_breakpoint(float(a), y.copy())
            y = y + (b - a) * f(float(a), y)
            values.append(y.copy())
            steps += 1
        stacked = np.stack(values)
        for i, t in enumerate(t_out):
            out[i] = stacked[int(np.searchsorted(grid, t))]
        return steps, 0, steps


def test_a_solver_defined_outside_solve_is_used_and_converges_at_order_one() -> None:
    assert isinstance(ExplicitEuler(0.1), Solver)
    t = np.linspace(0.0, 2.0, 5)
    errors = []
    for h in (0.01, 0.005):
        sol = integrate(lambda _t, y: -y, [[1.0]], t, solver=ExplicitEuler(h))
        errors.append(abs(sol.y[-1, 0, 0] - math.exp(-2.0)))
    assert errors[1] < errors[0] and errors[0] / errors[1] == pytest.approx(2.0, rel=0.05)  # first order
    reference = integrate(lambda _t, y: -y, [[1.0]], t, solver=Dopri5(rtol=1e-10, atol=1e-12))
    assert reference.y[-1, 0, 0] == pytest.approx(math.exp(-2.0), rel=1e-8)


def test_an_object_without_run_is_refused_naming_the_solver() -> None:
    with pytest.raises(SolverInputError) as info:
        integrate(lambda _t, y: -y, [[1.0]], [0.0, 1.0], solver=object())  # type: ignore[arg-type]
    assert info.value.field == "solver"
