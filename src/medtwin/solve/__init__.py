"""Batched ODE solvers (lockstep over a population, exact stops at breakpoints).

Contract (see docs/architecture.md)::

    from medtwin.solve import Dopri5, RK4, integrate
    sol = integrate(f, y0, t_eval, solver=Dopri5(), breakpoints=(), on_breakpoint=None)
"""

from medtwin.solve._core import (
    RK4,
    Dopri5,
    Solution,
    Solver,
    SolverFailure,
    SolverInputError,
    integrate,
)

__all__ = ["RK4", "Dopri5", "Solution", "Solver", "SolverFailure", "SolverInputError", "integrate"]
