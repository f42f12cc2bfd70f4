"""Drive the UVA/Padova model over a minute grid of inputs with the batched solver.

Inputs are piecewise constant per minute (``carbohydrate_g_per_min`` and ``insulin_u_per_min``, arrays
``(n, T)`` over minutes ``[0, T)``), as a pump and a meal are delivered. Since issue #12 this is a thin
front of the generic simulator (:func:`medtwin.model.simulate.simulate`): the model declares the stops at
every minute of eating and the last-meal memory ``D`` jump (``on_input_step``), and a bolus is a dose on
the ``insulin_bolus`` route whose size may be decided from the glucose at that moment. Since issue #17 the
default solver runs on the compiled population engine (a step size per patient); :func:`simulate_glucose`
keeps the glucose alone at the requested times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medtwin.arrays import Array
from medtwin.model.simulate import integrate_compiled, simulate
from medtwin.model.timeline import Dose, Timeline
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.uva_padova import COMPILED, PatientParameters, UvaPadova2008
from medtwin.solve import Dopri5, Solver

#: Default solver for the glucose model: error well below 0.01 mg/dL against a 1e-10 reference.
DEFAULT_SOLVER = Dopri5(rtol=1e-6, atol=1e-6)
#: For populations (virtual trials, the benchmark): tolerances matched to the 1 mg/dL agreement with simglucose
#: instead of far below it: 0.06 mg/dL from simglucose at worst over its 30 patients (tested), ~195 instead of
#: ~400 steps per patient-day on the compiled engine (rtol 1e-4 with atol 1e-4: 210 steps, 0.056 mg/dL; atol 0.1:
#: 0.31 mg/dL). With the insulin chain in closed form the step is set by accuracy, not stability.
POPULATION_SOLVER = Dopri5(rtol=1e-4, atol=1e-2)


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
    announced_g = np.asarray(announced_g, dtype=float)
    if announced_g.shape[0] > 1 and np.array_equal(announced_g, np.broadcast_to(announced_g[:1], announced_g.shape)):
        # one scenario for a whole population: the same row for everyone, computed once (5 passes -> 1 copy)
        return np.repeat(eaten_per_minute(announced_g[:1], eating_rate_g_per_min), announced_g.shape[0], axis=0)
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
    engine: str = "auto",
) -> Trajectory:
    """Integrate all patients in one batched solve over per-minute inputs ``(n, T)``.

    With a Dopri5 solver (the default) the compiled population engine runs (a step size per patient, see
    :mod:`medtwin.solve.kernels`); ``engine="python"`` (or another solver) runs the lockstep solver, where with
    one patient and ``float_path`` the right-hand side runs on plain floats
    (:func:`~medtwin.physiology.uva_padova.rhs_scalar`) and ``float_path=False`` forces the array path."""
    timeline, y0 = _timeline(params, carbohydrate_g_per_min, insulin_u_per_min, t_eval_min, events, initial_state)
    solution = simulate(UvaPadova2008, params.values, timeline, solver, initial_state=y0,
                        float_path=float_path, method="ode", engine=engine)
    assert solution.states is not None
    return Trajectory(
        t_min=solution.t,
        states=solution.states,
        glucose_mg_dl=solution.states[:, :, 12] / params.get("Vg"),
        bolus_units=solution.delivered,
        n_steps=solution.n_steps,
    )


@dataclass(frozen=True)
class GlucoseRun:
    """Subcutaneous glucose only: ``glucose_mg_dl`` (m, n) at ``t_min`` (m,); ``bolus_units`` (n, n_events);
    ``steps`` (n,) accepted solver steps of each patient."""

    t_min: Array
    glucose_mg_dl: Array
    bolus_units: Array
    steps: NDArray[np.int64]


def simulate_glucose(
    params: PatientParameters,
    carbohydrate_g_per_min: Array,
    insulin_u_per_min: Array,
    t_eval_min: Array,
    events: Sequence[Event] = (),
    initial_state: Array | None = None,
    solver: Dopri5 = DEFAULT_SOLVER,
) -> GlucoseRun:
    """As :func:`simulate_inputs` on the compiled engine, keeping only the glucose at ``t_eval_min`` (e.g. the
    5-minute CGM times): (m, n) floats instead of every state, for populations."""
    if not isinstance(solver, Dopri5):
        raise PhysiologyInputError("solver", "the glucose-only engine needs a Dopri5 solver")
    timeline, y0 = _timeline(params, carbohydrate_g_per_min, insulin_u_per_min, t_eval_min, events, initial_state,
                             only_steps=True)
    run = integrate_compiled(UvaPadova2008, COMPILED, params.values, timeline, solver, initial_state=y0,
                             record=[12])
    return GlucoseRun(run.t, run.states[:, :, 0] / params.get("Vg"), run.delivered, run.steps_per_patient)


def _timeline(params: PatientParameters, carbohydrate_g_per_min: Array, insulin_u_per_min: Array,
              t_eval_min: Array, events: Sequence[Event], initial_state: Array | None,
              only_steps: bool = False) -> tuple[Timeline, Array]:
    """The checked inputs as a generic timeline (boluses as doses decided from the glucose), and y0.

    ``only_steps``: keep only the minutes where the compiled engine may stop (:func:`_input_steps`): the same
    answer bit for bit (the kernel's segments start nowhere else), without a (n, minutes, 2) copy of the
    inputs for a population."""
    n = params.n
    carbs = np.asarray(carbohydrate_g_per_min, dtype=float)
    insulin = np.asarray(insulin_u_per_min, dtype=float)
    for field, array in (("carbohydrate_g_per_min", carbs), ("insulin_u_per_min", insulin)):
        if array.ndim != 2 or array.shape[0] != n:
            raise PhysiologyInputError(field, f"expected shape (n_patients={n}, minutes), got {array.shape}")
        # min >= 0 fails for NaN and -inf, max < inf for +inf: two passes and no temporaries (populations)
        distinct = _distinct(array)
        if array.size and not (distinct.min() >= 0 and distinct.max() < np.inf):
            raise PhysiologyInputError(field, "must be finite and non-negative")
    if carbs.shape != insulin.shape:
        raise PhysiologyInputError("insulin_u_per_min", "must have the same shape as carbohydrate_g_per_min")
    t_eval = np.asarray(t_eval_min, dtype=float)
    horizon = carbs.shape[1]
    if t_eval.size == 0 or t_eval[0] < 0 or t_eval[-1] > horizon:
        raise PhysiologyInputError("t_eval_min", f"must lie within [0, {horizon}] minutes")
    y0 = params.initial_state.copy() if initial_state is None else np.array(initial_state, dtype=float)
    vg = params.get("Vg")
    doses = tuple(
        Dose("insulin_bolus", float(e.time_min), _bolus_amount(e.bolus_units, vg)) for e in events
    )
    rows = _input_steps(carbs, insulin) if only_steps else np.arange(horizon)
    values = np.empty((n, rows.size, 2))  # (n, K, 2), filled in place (np.stack builds it ~25 % slower)
    values[:, :, 0], values[:, :, 1] = carbs[:, rows], insulin[:, rows]
    timeline = Timeline(t_eval=t_eval, input_times=rows.astype(float), input_values=values, doses=doses)
    return timeline, y0


def _input_steps(carbs: Array, insulin: Array) -> NDArray[np.intp]:
    """Minute 0 and every minute where some patient's inputs change or the model asks for a stop (its
    ``input_stops``: the eating minutes). Every other minute equals the one before for every patient, so
    leaving it out changes no stop, no held input and no jump of the compiled engine."""
    keep = np.zeros(carbs.shape[1], dtype=bool)
    keep[0] = True
    for array in (_distinct(carbs), _distinct(insulin)):
        if array.shape[1] > 1:  # one column: constant in time, no change
            keep[1:] |= np.any(array[:, 1:] != array[:, :-1], axis=0)
    assert UvaPadova2008.input_stops is not None
    keep |= UvaPadova2008.input_stops(_distinct(carbs)[:, :, None])  # reads the carbohydrate column only
    return np.flatnonzero(keep)


def _distinct(array: Array) -> Array:
    """The block a broadcast (n, T) view repeats: one row when every patient shares it (stride 0 over
    patients), one column when constant in time (stride 0 over minutes); the array itself otherwise. Checks and
    change scans over it see every distinct value once (a shared meal row is scanned once, not n times)."""
    if array.ndim == 2 and array.shape[0] > 1 and array.strides[0] == 0:
        array = array[:1]
    if array.ndim == 2 and array.shape[1] > 1 and array.strides[1] == 0:
        array = array[:, :1]
    return array


def _bolus_amount(decide: Callable[[float, Array], Array], vg: Array) -> Callable[[float, Array, Array], Array]:
    """A dose amount decided at its time from the subcutaneous glucose (mg/dL), as a bolus calculator does."""

    def amount(t: float, y: Array, p: Array) -> Array:
        units = np.asarray(decide(t, y[:, 12] / vg), dtype=float)
        if np.any(units < 0) or not np.all(np.isfinite(units)):
            raise PhysiologyInputError("bolus_units", f"event at t={t} min gave a negative or non-finite bolus")
        return units

    return amount
