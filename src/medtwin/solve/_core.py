"""Batched explicit Runge-Kutta solvers that integrate many patients in lockstep.

A solver is a small immutable object; :func:`integrate` drives it. The whole batch shares one step
size (lockstep), so a population of ``n`` patients costs one vectorised right-hand-side call per stage.
Integration stops exactly at every breakpoint (an input discontinuity such as a meal start or a
bolus) and may apply an instantaneous jump there. Results are deterministic: no randomness, no
dependence on wall-clock time.

Right-continuity convention: a breakpoint ``tb`` splits the time line into segments ``[a, tb)`` and
``[tb, b)``. Inside a segment every stage is evaluated at a time strictly inside or at the start of
that segment (a stage that would fall exactly on the segment end is evaluated one floating-point
ulp before it), so a right-hand side with right-continuous piecewise inputs always sees the input
of the segment being integrated. Outputs requested exactly at a breakpoint are taken after the jump.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from medtwin.arrays import Array
from medtwin.errors import InputError

RightHandSide = Callable[[float, Array], Array]
JumpFunction = Callable[[float, Array], Array]


class SolverInputError(InputError):
    """Invalid argument given to a solver; ``field`` names the offending argument."""


class SolverFailure(RuntimeError):
    """The integration could not proceed (step size underflow, non-finite values, step budget)."""


@dataclass(frozen=True)
class Solution:
    """Result of :func:`integrate`.

    ``t`` has shape ``(m,)`` (the requested ``t_eval``), ``y`` has shape ``(m, n, k)``.
    """

    t: Array
    y: Array
    n_steps: int
    n_rejected: int
    n_evaluations: int


# --- Dormand-Prince 5(4) tableau (Dormand & Prince 1980; dense output after Hairer, Norsett & Wanner,
# Solving ODEs I, 2nd ed., section II.6, the same coefficients scipy.integrate.RK45 uses).
_DP_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
_DP_A: tuple[tuple[float, ...], ...] = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_A_ROWS = [np.array(row, dtype=float) for row in _DP_A]
_DP_B = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0])
_DP_E = np.array([-71 / 57600, 0.0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40])
_POWERS = np.arange(1.0, 5.0)
_DP_P = np.array(
    [
        [1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
        [0, 0, 0, 0],
        [0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799],
        [0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
        [0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632],
        [0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
        [0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423],
    ]
)


@dataclass(frozen=True)
class Dopri5:
    """Adaptive Dormand-Prince 5(4) with error control over the whole batch.

    The error of a step is the largest, over patients, of the per-patient RMS of
    ``err / (atol + rtol * max(|y_old|, |y_new|))`` over states, so every patient is held to the
    tolerance it would get if solved alone. Order 5 (local extrapolation), dense output of order 4.

    Parameters: ``rtol`` (relative tolerance, 1), ``atol`` (absolute tolerance, in state units),
    ``max_step`` (largest step, in time units), ``first_step`` (initial step; chosen automatically
    if ``None``), ``max_steps`` (step budget before :class:`SolverFailure`).
    """

    rtol: float = 1e-6
    atol: float = 1e-8
    max_step: float = math.inf
    first_step: float | None = None
    max_steps: int = 1_000_000
    safety: float = 0.9
    order: int = 5

    def __post_init__(self) -> None:
        if not (self.rtol > 0 and math.isfinite(self.rtol)):
            raise SolverInputError("rtol", f"must be a positive finite number, got {self.rtol!r}")
        if not (self.atol > 0 and math.isfinite(self.atol)):
            raise SolverInputError("atol", f"must be a positive finite number, got {self.atol!r}")
        if not self.max_step > 0:
            raise SolverInputError("max_step", f"must be positive, got {self.max_step!r}")
        if self.first_step is not None and not (self.first_step > 0 and math.isfinite(self.first_step)):
            raise SolverInputError("first_step", f"must be positive and finite, got {self.first_step!r}")

    def run(self, f: RightHandSide, y: Array, t_out: Array, stops: Array,
            on_breakpoint: JumpFunction | None, out: Array) -> tuple[int, int, int]:
        """Fill ``out`` (len(t_out), n, k); returns (steps, rejected steps, right-hand-side evaluations)."""
        bounds = _segments(t_out, stops)
        n_steps = n_rej = n_eval = 0
        t = bounds[0]
        y, i_out = _jump_and_write(on_breakpoint, stops, t, y, t_out, out, 0)
        h: float | None = self.first_step
        k = np.empty((7, *y.shape))
        flat = k.reshape(7, -1)  # a view: stage combinations become one matrix product
        for seg_end in bounds[1:]:
            k[0] = _evaluate(f, t, y)
            n_eval += 1
            if h is None:
                h, extra = _initial_step(f, t, y, k[0], self, seg_end - t, seg_end)
                n_eval += extra
            while t < seg_end:
                h = min(h, self.max_step)
                last = t + h >= seg_end - 1e-12 * max(1.0, abs(seg_end))
                step = seg_end - t if last else h
                rejected = False
                while True:
                    for s in range(1, 7):
                        acc = (_DP_A_ROWS[s] @ flat[:s]).reshape(y.shape)
                        ts = seg_end if (last and _DP_C[s] == 1.0) else t + _DP_C[s] * step
                        k[s] = _evaluate(f, _stage_time(ts, seg_end), y + step * acc)
                    n_eval += 6
                    y_new = y + step * (_DP_B[:6] @ flat[:6]).reshape(y.shape)
                    err = step * (_DP_E @ flat).reshape(y.shape)
                    scale = self.atol + self.rtol * np.maximum(np.abs(y), np.abs(y_new))
                    finite = bool(np.isfinite(y_new).all())
                    norm = _rms_norm(err / scale) if finite else math.inf
                    if norm <= 1.0:
                        break
                    rejected = True
                    n_rej += 1
                    factor = max(0.2, self.safety * norm ** (-1 / 5)) if finite else 0.25
                    step *= factor
                    last = False
                    if step < 1e-12 * max(1.0, abs(t)):
                        raise SolverFailure(f"step size underflow at t={t}")
                n_steps += 1
                if n_steps > self.max_steps:
                    raise SolverFailure(f"more than max_steps={self.max_steps} steps")
                t_new = seg_end if last else t + step
                # dense output for requested times strictly inside (t, t_new)
                j = _first_after(t_out, i_out, t_new)
                if j > i_out:
                    x = (t_out[i_out:j] - t) / step
                    powers = x[:, None] ** _POWERS  # (m, 4)
                    q = _DP_P.T @ flat  # (4, n*k)
                    out[i_out:j] = y[None] + step * (powers @ q).reshape(j - i_out, *y.shape)
                    i_out = j
                if not last and i_out < t_out.size and t_out[i_out] == t_new:
                    out[i_out] = y_new
                    i_out += 1
                factor = 10.0 if norm == 0.0 else min(10.0, max(0.2, self.safety * norm ** (-1 / 5)))
                if rejected:
                    factor = min(factor, 1.0)
                new_h = step * factor
                # a step shortened to land on a segment end does not shrink the next proposal
                h = max(h, new_h) if last else new_h
                t, y = t_new, y_new
                k[0] = k[6]
            y, i_out = _jump_and_write(on_breakpoint, stops, t, y, t_out, out, i_out)
        return n_steps, n_rej, n_eval


@dataclass(frozen=True)
class RK4:
    """Classical fixed-step fourth-order Runge-Kutta.

    ``step`` is the nominal step (time units); a step is shortened only to land exactly on a
    breakpoint or the end. Outputs between steps use cubic Hermite interpolation (order 4 local).
    """

    step: float = 1.0
    order: int = 4

    def __post_init__(self) -> None:
        if not (self.step > 0 and math.isfinite(self.step)):
            raise SolverInputError("step", f"must be a positive finite number, got {self.step!r}")

    def run(self, f: RightHandSide, y: Array, t_out: Array, stops: Array,
            on_breakpoint: JumpFunction | None, out: Array) -> tuple[int, int, int]:
        """Fill ``out`` (len(t_out), n, k); returns (steps, rejected steps, right-hand-side evaluations)."""
        bounds = _segments(t_out, stops)
        n_steps = n_eval = 0
        t = bounds[0]
        y, i_out = _jump_and_write(on_breakpoint, stops, t, y, t_out, out, 0)
        for seg_end in bounds[1:]:
            n_sub = max(1, math.ceil((seg_end - t) / self.step - 1e-9))
            grid = t + (seg_end - t) * np.arange(n_sub + 1) / n_sub
            grid[-1] = seg_end
            k1 = _evaluate(f, t, y)
            n_eval += 1
            for i in range(n_sub):
                t_a, t_b = float(grid[i]), float(grid[i + 1])
                h = t_b - t_a
                k2 = _evaluate(f, t_a + h / 2, y + h / 2 * k1)
                k3 = _evaluate(f, t_a + h / 2, y + h / 2 * k2)
                k4 = _evaluate(f, _stage_time(t_b, seg_end), y + h * k3)
                y_new = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
                k_end = _evaluate(f, _stage_time(t_b, seg_end), y_new)
                n_eval += 4
                n_steps += 1
                if not np.all(np.isfinite(y_new)):
                    raise SolverFailure(f"non-finite state at t={t_b}")
                j = _first_after(t_out, i_out, t_b)
                if j > i_out:  # cubic Hermite between (t_a, y, k1) and (t_b, y_new, k_end)
                    s = ((t_out[i_out:j] - t_a) / h)[:, None, None]
                    h00 = 2 * s**3 - 3 * s**2 + 1
                    h10 = s**3 - 2 * s**2 + s
                    h01 = -2 * s**3 + 3 * s**2
                    h11 = s**3 - s**2
                    out[i_out:j] = h00 * y + h10 * h * k1 + h01 * y_new + h11 * h * k_end
                    i_out = j
                y, t, k1 = y_new, t_b, k_end
                if i_out < t_out.size and t_out[i_out] == t and i < n_sub - 1:
                    out[i_out] = y
                    i_out += 1
            y, i_out = _jump_and_write(on_breakpoint, stops, t, y, t_out, out, i_out)
        return n_steps, 0, n_eval


@runtime_checkable
class Solver(Protocol):
    """What :func:`integrate` needs of a solver: one method that marches a batch over ``t_out``.

    ``run(f, y0 (n, k), t_out (m,), stops (breakpoints inside the range, sorted), on_breakpoint, out)``
    fills ``out`` (m, n, k) with the states at ``t_out`` (right-continuous at breakpoints, jumps applied)
    and returns ``(n_steps, n_rejected, n_evaluations)``. A new solver is a class with this method; the
    integrator dispatches to it without knowing its type (why: adding a solver must not edit this file).
    """

    def run(self, f: RightHandSide, y: Array, t_out: Array, stops: Array,
            on_breakpoint: JumpFunction | None, out: Array) -> tuple[int, int, int]: ...


def _check_inputs(
    y0: ArrayLike, t_eval: ArrayLike, breakpoints: Sequence[float] | ArrayLike
) -> tuple[Array, Array, Array, bool]:
    y = np.asarray(y0, dtype=float)
    squeeze = False
    if y.ndim == 1:
        y = y[None, :]
        squeeze = True
    if y.ndim != 2:
        raise SolverInputError("y0", f"must have shape (n, k) or (k,), got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise SolverInputError("y0", "contains non-finite values")
    t = np.asarray(t_eval, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise SolverInputError("t_eval", "must be a non-empty 1-D array of times")
    if not np.all(np.isfinite(t)):
        raise SolverInputError("t_eval", "contains non-finite times")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise SolverInputError("t_eval", "times must be strictly increasing")
    b = np.asarray(breakpoints, dtype=float).ravel()
    if not np.all(np.isfinite(b)):
        raise SolverInputError("breakpoints", "contains non-finite times")
    b = np.unique(b[(b >= t[0]) & (b <= t[-1])])
    return y, t, b, squeeze


def integrate(
    f: RightHandSide,
    y0: ArrayLike,
    t_eval: ArrayLike,
    solver: Solver | None = None,
    breakpoints: Sequence[float] | ArrayLike = (),
    on_breakpoint: JumpFunction | None = None,
) -> Solution:
    """Integrate ``dy/dt = f(t, y)`` for a batch of ``n`` systems of ``k`` states in lockstep.

    ``y0`` is ``(n, k)`` (a ``(k,)`` vector is treated as ``n = 1``), ``t_eval`` strictly increasing;
    integration starts at ``t_eval[0]``. Every breakpoint inside ``[t_eval[0], t_eval[-1]]`` is hit
    exactly and, if ``on_breakpoint`` is given, ``y <- on_breakpoint(tb, y)`` is applied there
    (breakpoints outside the range are ignored). Returns :class:`Solution` with ``y`` of shape
    ``(len(t_eval), n, k)``.
    """
    solver = Dopri5() if solver is None else solver
    y, t_out, stops, squeeze = _check_inputs(y0, t_eval, breakpoints)
    out = np.empty((t_out.size, *y.shape))
    run = getattr(solver, "run", None)
    if not callable(run):
        raise SolverInputError("solver", f"{type(solver).__name__} has no run(...) method (see solve.Solver)")
    n_steps, n_rej, n_eval = run(f, y, t_out, stops, on_breakpoint, out)
    return Solution(t=t_out, y=out, n_steps=n_steps, n_rejected=n_rej, n_evaluations=n_eval)


def _segments(t_out: Array, stops: Array) -> list[float]:
    """Segment boundaries: start, breakpoints strictly inside, end."""
    t0, t1 = float(t_out[0]), float(t_out[-1])
    inner = [float(s) for s in stops if t0 < s < t1]
    return [t0, *inner, t1] if t1 > t0 else [t0]


def _evaluate(f: RightHandSide, t: float, y: Array) -> Array:
    dy = np.asarray(f(t, y), dtype=float)
    if dy.shape != y.shape:
        raise SolverInputError("f", f"returned shape {dy.shape}, expected {y.shape}")
    return dy


def _stage_time(t: float, seg_end: float) -> float:
    return t if t < seg_end else math.nextafter(seg_end, -math.inf)


def _apply_jump(on_breakpoint: JumpFunction | None, stops: Array, t: float, y: Array) -> Array:
    if on_breakpoint is not None and stops.size and np.any(stops == t):
        y = np.array(on_breakpoint(t, y.copy()), dtype=float)
        if not np.all(np.isfinite(y)):
            raise SolverFailure(f"on_breakpoint returned non-finite state at t={t}")
    return y


def _jump_and_write(on_breakpoint: JumpFunction | None, stops: Array, t: float, y: Array, t_out: Array,
                    out: Array, i_out: int) -> tuple[Array, int]:
    """At a segment boundary ``t``: apply the jump, then write the state for every requested time up to ``t``
    (outputs requested exactly at a breakpoint are taken after the jump). Returns the state and next output."""
    y = _apply_jump(on_breakpoint, stops, t, y)
    while i_out < t_out.size and t_out[i_out] <= t:
        out[i_out] = y
        i_out += 1
    return y, i_out


def _first_after(t_out: Array, i_out: int, t: float) -> int:
    """Index of the first requested time at or after ``t``, searching from ``i_out``."""
    while i_out < t_out.size and t_out[i_out] < t:
        i_out += 1
    return i_out


def _rms_norm(x: Array) -> float:
    # sum / k rather than np.mean: same value, a fraction of the per-call overhead (it runs every step)
    return math.sqrt(float((x * x).sum(axis=1).max()) / x.shape[1]) if x.size else 0.0


def _initial_step(
    f: RightHandSide, t: float, y: Array, dy: Array, solver: Dopri5, span: float, seg_end: float
) -> tuple[float, int]:
    scale = solver.atol + solver.rtol * np.abs(y)
    d0 = _rms_norm(y / scale)
    d1 = _rms_norm(dy / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, span)
    y1 = y + h0 * dy
    dy1 = _evaluate(f, _stage_time(t + h0, seg_end), y1)
    d2 = _rms_norm((dy1 - dy) / scale) / h0
    h1 = max(1e-06, h0 * 0.001) if d1 <= 1e-15 and d2 <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / 5)
    return min(100 * h0, h1, span, solver.max_step), 1
