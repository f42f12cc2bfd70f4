"""Drive the UVA/Padova model over a minute grid of inputs with the batched solver.

Inputs are piecewise constant per minute (``carbohydrate_g_per_min`` and ``insulin_u_per_min``, arrays
``(n, T)`` over minutes ``[0, T)``), as a pump and a meal are delivered. Breakpoints are placed where an
input changes and at every minute of eating (the last-meal memory ``D`` is updated there, as the
simulator does). Instantaneous events (a bolus whose size is decided from the glucose at that moment)
are jumps applied by the solver exactly at their time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.uva_padova import PMOL_PER_UNIT, PatientParameters, rhs, rhs_scalar
from medtwin.solve import Dopri5, Solver, integrate

Array = NDArray[np.float64]
#: Default solver for the glucose model: error well below 0.01 mg/dL against a 1e-10 reference.
DEFAULT_SOLVER = Dopri5(rtol=1e-6, atol=1e-6)


@dataclass(frozen=True)
class Event:
    """An instantaneous event at ``time_min``: ``apply(t, glucose_mg_dl (n,), params) -> insulin U (n,)``.

    The returned insulin is added as a subcutaneous bolus (Isc1 += U * 6000 / BW).
    """

    time_min: float
    bolus_units: Callable[[float, Array], Array]


def fixed_bolus(units: float) -> Callable[[float, Array], Array]:
    """An event action that gives the same bolus to every patient."""

    def action(t: float, glucose: Array) -> Array:
        return np.full(glucose.shape, units)

    return action


@dataclass(frozen=True)
class Trajectory:
    t_min: Array  # (m,)
    states: Array  # (m, n, 14)
    glucose_mg_dl: Array  # (m, n) subcutaneous glucose
    bolus_units: Array  # (n, n_events) delivered by events
    n_steps: int


def eaten_per_minute(announced_g: Array, eating_rate_g_per_min: float = 5.0) -> Array:
    """Carbohydrate eaten each minute when meals (``announced_g`` (n, T), grams announced at a minute) are
    eaten at a fixed rate, queued like the simulator does: ``E(m) = min(A(m), E(m-1) + r)`` for the
    cumulative eaten ``E`` and announced ``A``; closed form ``E(m) = min_j<=m (A(j) + r (m - j))``.
    """
    rate = eating_rate_g_per_min
    cumulative = np.cumsum(announced_g, axis=1)
    minutes = np.arange(announced_g.shape[1], dtype=float)
    best_start = np.minimum.accumulate(cumulative - rate * minutes, axis=1)
    eaten_cumulative = np.minimum(best_start + rate * minutes, rate * (minutes + 1))
    return np.diff(eaten_cumulative, axis=1, prepend=0.0)


def simulate_inputs(
    params: PatientParameters,
    carbohydrate_g_per_min: Array,
    insulin_u_per_min: Array,
    t_eval_min: Array,
    events: Sequence[Event] = (),
    initial_state: Array | None = None,
    solver: Solver = DEFAULT_SOLVER,
    float_path: bool = True,
) -> Trajectory:
    """Integrate all patients in one batched solve over per-minute inputs ``(n, T)``.

    With one patient and ``float_path`` (the default) the right-hand side runs the same model equations
    on plain floats (:func:`~medtwin.physiology.uva_padova.rhs_scalar`): at n=1 numpy's per-call overhead
    would dominate. ``float_path=False`` forces the array path (used to check and benchmark the two)."""
    n = params.n
    carbs = np.asarray(carbohydrate_g_per_min, dtype=float)
    insulin = np.asarray(insulin_u_per_min, dtype=float)
    for field, array in (("carbohydrate_g_per_min", carbs), ("insulin_u_per_min", insulin)):
        if array.ndim != 2 or array.shape[0] != n:
            raise PhysiologyInputError(field, f"expected shape (n_patients={n}, minutes), got {array.shape}")
        if not np.all(np.isfinite(array)) or np.any(array < 0):
            raise PhysiologyInputError(field, "must be finite and non-negative")
    if carbs.shape != insulin.shape:
        raise PhysiologyInputError("insulin_u_per_min", "must have the same shape as carbohydrate_g_per_min")
    t_eval = np.asarray(t_eval_min, dtype=float)
    horizon = carbs.shape[1]
    if t_eval.size == 0 or t_eval[0] < 0 or t_eval[-1] > horizon:
        raise PhysiologyInputError("t_eval_min", f"must lie within [0, {horizon}] minutes")
    y0 = params.initial_state.copy() if initial_state is None else np.array(initial_state, dtype=float)
    values = params.values
    body_weight = params.get("BW")
    vg = params.get("Vg")
    inputs = np.stack([carbs, insulin], axis=2)  # (n, T, 2)
    last = horizon - 1

    if n == 1 and float_path:  # the same equations on plain floats
        parameters = values[0].tolist()
        minute_inputs = inputs[0].tolist()

        def f(t: float, y: Array) -> Array:
            return np.array([rhs_scalar(t, y[0].tolist(), parameters, minute_inputs[min(int(t), last)])])

    else:

        def f(t: float, y: Array) -> Array:
            return rhs(t, y, values, inputs[:, min(int(t), last), :])

    # breakpoints: input changes, eating minutes, events
    changes = np.flatnonzero(np.any(np.diff(inputs, axis=1) != 0, axis=(0, 2))) + 1
    eating = np.any(carbs > 0, axis=0)
    eating_minutes = np.flatnonzero(eating)
    previous_eating = np.concatenate([np.zeros((n, 1), dtype=bool), carbs[:, :-1] > 0], axis=1)
    event_times = sorted({float(e.time_min) for e in events})
    stops = np.unique(
        np.concatenate([changes, eating_minutes, np.asarray(event_times, dtype=float)]).astype(float)
    )
    by_time: dict[float, list[int]] = {}
    for i, event in enumerate(events):
        by_time.setdefault(float(event.time_min), []).append(i)
    delivered = np.zeros((n, len(events)))

    def jump(t: float, y: Array) -> Array:
        minute = int(round(t))
        if float(minute) == t and minute < horizon and eating[minute]:
            now = carbs[:, minute] * 1000.0
            starting = (now > 0) & ~previous_eating[:, minute]
            continuing = (now > 0) & previous_eating[:, minute]
            y[:, 13] = np.where(
                starting, y[:, 0] + y[:, 1] + now, np.where(continuing, y[:, 13] + now, y[:, 13])
            )
        for i in by_time.get(t, []):
            units = np.broadcast_to(np.asarray(events[i].bolus_units(t, y[:, 12] / vg), dtype=float), (n,))
            if np.any(units < 0) or not np.all(np.isfinite(units)):
                raise PhysiologyInputError(
                    "bolus_units", f"event at t={t} min gave a negative or non-finite bolus"
                )
            delivered[:, i] = units
            y[:, 10] += units * PMOL_PER_UNIT / body_weight
        return y

    solution = integrate(f, y0, t_eval, solver=solver, breakpoints=stops, on_breakpoint=jump)
    return Trajectory(
        t_min=solution.t,
        states=solution.y,
        glucose_mg_dl=solution.y[:, :, 12] / vg,
        bolus_units=delivered,
        n_steps=solution.n_steps,
    )
