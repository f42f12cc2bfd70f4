"""The one simulator: ``simulate(model, params[N], timeline, solver)`` for every declared model.

It builds the solver's right-hand side from the model's pure ``rhs`` and the timeline's piecewise-constant
inputs, the stops (input steps that change or that the model asks for, dose times) and one jump function
(the model's ``on_input_step`` then the doses in timeline order). A model that declares an ``analytic``
solution is dispatched to it when no solver is asked for (the PK closed form is the same model's fast path).

Engines: a model with a compiled kernel registered in :mod:`medtwin.solve.kernels` (UVA/Padova) and a
:class:`~medtwin.solve.Dopri5` solver runs on the compiled population engine, a step size per patient
(``engine="auto"``, the default); ``engine="python"`` keeps the lockstep solver of :mod:`medtwin.solve`
(any solver, any model). Doses whose amount depends on the state are decided between two compiled calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medtwin.arrays import Array
from medtwin.model.errors import ModelInputError
from medtwin.model.spec import Model, ScalarRightHandSide
from medtwin.model.timeline import Timeline
from medtwin.solve import Dopri5, Solver, integrate
from medtwin.solve.kernels import BatchState, CompiledModel, Doses, advance, kernel_for

DEFAULT_SOLVER = Dopri5(rtol=1e-6, atol=1e-8)


@dataclass(frozen=True)
class Simulation:
    """``t`` (m,), ``outputs`` (m, n, n_outputs), ``states`` (m, n, k) or None (analytic outputs only),
    ``delivered`` (n, n_doses) the dose amounts given (in the route's unit), ``method``."""

    model: str
    t: Array
    outputs: Array
    output_names: tuple[str, ...]
    states: Array | None
    delivered: Array
    n_steps: int
    method: str

    def output(self, name: str) -> Array:
        """(m, n) one output."""
        if name not in self.output_names:
            raise ModelInputError(name, f"unknown output; known: {', '.join(self.output_names)}")
        return self.outputs[:, :, self.output_names.index(name)]


def simulate(model: Model, params: Any, timeline: Timeline, solver: Solver | None = None, *,
             initial_state: Array | None = None, float_path: bool = True, method: str = "auto",
             resume: bool = False, engine: str = "auto") -> Simulation:
    """Simulate every parameter row of ``params`` (n, P) over ``timeline`` in one batched run.

    ``method``: ``"auto"`` (the model's analytic solution when it has one, no initial state is given and no
    dose amount depends on the state; else ``solver``), ``"analytic"`` or ``"ode"``. With one patient,
    ``float_path`` and a declared ``rhs_scalar`` the right-hand side runs on plain floats. ``resume``: the
    ``initial_state`` is already past every jump at ``t_eval[0]`` (a filter continuing from its last time).
    ``engine``: ``"auto"`` (compiled per-patient engine when the model has one and the solver is Dopri5) or
    ``"python"`` (the lockstep solver)."""
    p = model.check_parameters(params)
    if method not in ("auto", "analytic", "ode"):
        raise ModelInputError("method", f"unknown method {method!r}; use auto, analytic or ode")
    if engine not in ("auto", "python"):
        raise ModelInputError("engine", f"unknown engine {engine!r}; use auto or python")
    analytic_ok = (model.analytic is not None and initial_state is None
                   and not any(callable(d.amount) for d in timeline.doses))
    if method == "analytic" and not analytic_ok:
        raise ModelInputError("method", f"{model.name} has no analytic solution for this timeline")
    if analytic_ok and method in ("analytic", "auto"):
        assert model.analytic is not None
        outputs = np.asarray(model.analytic(model, p, timeline), dtype=float)
        return Simulation(model.name, np.asarray(timeline.t_eval, dtype=float), outputs, model.output_names,
                          None, _given(model, p, timeline), 0, "analytic")
    solver = solver or DEFAULT_SOLVER
    compiled = kernel_for(model.rhs) if engine == "auto" and isinstance(solver, Dopri5) else None
    if compiled is not None:
        assert isinstance(solver, Dopri5)
        run = integrate_compiled(model, compiled, p, timeline, solver, initial_state=initial_state, resume=resume)
        outputs = model.outputs_of(run.states, p)
        return Simulation(model.name, run.t, outputs, model.output_names, run.states, run.delivered,
                          run.n_steps, "ode")
    return _integrate(model, p, timeline, solver, initial_state, float_path, resume)


def _given(model: Model, p: Array, timeline: Timeline) -> Array:
    n = p.shape[0]
    out = np.zeros((n, len(timeline.doses)))
    for i, dose in enumerate(timeline.doses):
        out[:, i] = np.broadcast_to(np.asarray(dose.amount, dtype=float), (n,))
    return out


def _input_index(times: Array) -> Callable[[float], int]:
    """Step index holding at time t (right-continuous); a uniform grid avoids a search per call."""
    last = times.shape[0] - 1
    if last == 0:
        return lambda t: 0
    t0, dt = float(times[0]), float(times[1] - times[0])
    if t0 == 0.0 and dt == 1.0 and np.array_equal(times, np.arange(times.shape[0], dtype=float)):
        return lambda t: min(int(t), last)
    if np.allclose(np.diff(times), dt, rtol=0.0, atol=1e-12 * max(1.0, abs(dt))):
        return lambda t: min(max(int((t - t0) / dt), 0), last)
    return lambda t: min(max(int(np.searchsorted(times, t, side="right")) - 1, 0), last)


def _float_rhs(scalar: ScalarRightHandSide, parameters: list[float], step_inputs: list[list[float]],
               times: Array, index: Callable[[float], int]) -> Callable[[float, Array], Array]:
    """One patient on plain floats; on a per-minute grid from 0 the step index is inlined (this runs a few
    thousand times per simulated day, and a call more per evaluation measured 5 % of a single-patient day)."""
    last = len(step_inputs) - 1
    if last > 0 and np.array_equal(times, np.arange(times.shape[0], dtype=float)):

        def per_minute(t: float, y: Array) -> Array:
            return np.array([scalar(t, y[0].tolist(), parameters, step_inputs[min(int(t), last)])])

        return per_minute

    def general(t: float, y: Array) -> Array:
        return np.array([scalar(t, y[0].tolist(), parameters, step_inputs[index(t)])])

    return general


def _dose_times(model: Model, p: Array, timeline: Timeline) -> list[Array]:
    n = p.shape[0]
    times = []
    for dose in timeline.doses:
        route = model.dose_route(dose.route)
        t = np.full(n, float(dose.time))
        if route.lag is not None:
            t = t + p[:, model.parameter_index(route.lag)]
        times.append(t)
    return times


def _make_jump(model: Model, p: Array, u: Array, timeline: Timeline, dose_times: list[Array],
               delivered: Array) -> Callable[[float, Array], Array]:
    """The jump at a stop ``t``: the model's ``on_input_step`` (if ``t`` is an input step), then every dose at
    ``t`` in timeline order (amounts decided now if they depend on the state); records ``delivered``."""
    n = p.shape[0]
    times = np.asarray(timeline.input_times, dtype=float)
    step_set = {float(t): k for k, t in enumerate(times)}
    routes = [model.dose_route(d.route) for d in timeline.doses]
    targets = [model.state_index(r.state) for r in routes]
    step_jump = model.on_input_step
    zeros = np.zeros_like(u[:, 0, :])

    def jump(t: float, y: Array) -> Array:
        k = step_set.get(t)
        if step_jump is not None and k is not None:
            y = step_jump(t, y, p, u[:, k, :], u[:, k - 1, :] if k > 0 else zeros)
        tol = 1e-12 * max(1.0, abs(t))
        for i, dose in enumerate(timeline.doses):
            hit = np.abs(dose_times[i] - t) <= tol
            if not hit.any():
                continue
            amount = _dose_amount(i, dose.amount, t, y, p, n)
            delivered[hit, i] = amount[hit]
            convert = routes[i].scale
            delta = amount if convert is None else convert(amount, p)
            if hit.all():
                y[:, targets[i]] += delta
            else:
                y[hit, targets[i]] += delta[hit]
        return y

    return jump


def _dose_amount(i: int, raw_amount: Any, t: float, y: Array, p: Array, n: int) -> Array:
    raw = raw_amount(t, y, p) if callable(raw_amount) else raw_amount
    amount = np.broadcast_to(np.asarray(raw, dtype=float), (n,))
    if np.any(amount < 0) or not np.all(np.isfinite(amount)):
        raise ModelInputError(f"doses[{i}].amount", f"at t={t} a negative or non-finite amount")
    return amount


def _integrate(model: Model, p: Array, timeline: Timeline, solver: Solver, initial_state: Array | None,
               float_path: bool, resume: bool) -> Simulation:
    n = p.shape[0]
    u = timeline.values_for(model, n)
    times = np.asarray(timeline.input_times, dtype=float)
    index = _input_index(times)
    if n == 1 and float_path and model.rhs_scalar is not None:
        f = _float_rhs(model.rhs_scalar, p[0].tolist(), u[0].tolist(), times, index)
    else:
        rhs = model.rhs

        def f(t: float, y: Array) -> Array:
            return rhs(t, y, p, u[:, index(t), :])

    changes = np.flatnonzero(np.any(np.diff(u, axis=1) != 0, axis=(0, 2))) + 1
    asked = np.flatnonzero(model.input_stops(u)) if model.input_stops is not None else np.zeros(0, dtype=int)
    dose_times = _dose_times(model, p, timeline)
    stops = np.unique(np.concatenate([times[changes], times[asked], *dose_times]).astype(float))
    if resume:
        stops = stops[stops > timeline.t_eval[0]]
    delivered = np.zeros((n, len(timeline.doses)))
    jump = _make_jump(model, p, u, timeline, dose_times, delivered)
    y0 = _initial(model, p, initial_state)
    t_eval = np.asarray(timeline.t_eval, dtype=float)
    solution = integrate(f, y0, t_eval, solver=solver, breakpoints=stops, on_breakpoint=jump)
    outputs = model.outputs_of(solution.y, p)
    return Simulation(model.name, solution.t, outputs, model.output_names, solution.y, delivered,
                      solution.n_steps, "ode")


def _initial(model: Model, p: Array, initial_state: Array | None) -> Array:
    n = p.shape[0]
    y0 = model.start(p) if initial_state is None else np.array(initial_state, dtype=float)
    if y0.shape != (n, len(model.states)):
        raise ModelInputError("initial_state", f"expected shape {(n, len(model.states))}, got {y0.shape}")
    return y0


@dataclass(frozen=True)
class CompiledRun:
    """A compiled-engine run: ``states`` (m, n, len(record)) at ``t`` (m,), only the recorded columns;
    ``delivered`` (n, n_doses); ``n_steps`` the most accepted steps any one patient took."""

    t: Array
    states: Array
    delivered: Array
    n_steps: int
    steps_per_patient: NDArray[np.int64]


def _is_stop(model: Model, u: Array, times: Array, t: float, dose_times: list[Array]) -> bool:
    """Whether ``t`` is a stop of the batch (an input step that changes or that the model asks for, a dose)."""
    if any(np.any(np.abs(d - t) <= 1e-12 * max(1.0, abs(t))) for d in dose_times):
        return True
    k = int(np.searchsorted(times, t))
    if k >= times.size or times[k] != t:
        return False
    if k > 0 and np.any(u[:, k, :] != u[:, k - 1, :]):
        return True
    return model.input_stops is not None and bool(model.input_stops(u[:, k : k + 1, :])[0])


def _fixed_doses(model: Model, p: Array, timeline: Timeline, dose_times: list[Array]) -> Doses:
    """The doses of fixed amount in the kernel's form (state units, sorted per patient)."""
    n = p.shape[0]
    columns = [i for i, d in enumerate(timeline.doses) if not callable(d.amount)]
    if not columns:
        return Doses.none(n)
    times = np.stack([dose_times[i] for i in columns], axis=1)
    state = np.empty((n, len(columns)), dtype=np.int64)
    delta = np.empty((n, len(columns)))
    for c, i in enumerate(columns):
        route = model.dose_route(timeline.doses[i].route)
        amount = _dose_amount(i, timeline.doses[i].amount, 0.0, np.zeros(0), p, n)
        state[:, c] = model.state_index(route.state)
        delta[:, c] = amount if route.scale is None else route.scale(amount, p)
    return Doses.from_columns(times, state, delta)


def integrate_compiled(model: Model, compiled: CompiledModel, p: Array, timeline: Timeline, solver: Dopri5, *,
                       initial_state: Array | None = None, resume: bool = False,
                       record: Sequence[int] | None = None) -> CompiledRun:
    """Run ``model`` on the compiled engine (a step size per patient), keeping only the ``record`` state columns
    (default all) at ``timeline.t_eval``. Jumps at the first and last output time and at the times of doses
    whose amount depends on the state are applied here, vectorised; everything else inside the kernel."""
    n = p.shape[0]
    u = timeline.values_for(model, n)  # checked; a broadcast view even when the timeline has a row per patient
    if timeline.input_values is not None and np.shape(timeline.input_values)[0] == n:
        u = np.asarray(timeline.input_values, dtype=float)  # the caller's own array (the kernel only reads it)
    # contiguous and writeable once here (the kernel's argument type), not once per call of advance
    u = np.require(u, dtype=np.float64, requirements=["C", "W"])
    times = np.asarray(timeline.input_times, dtype=float)
    t_out = np.asarray(timeline.t_eval, dtype=float)
    columns = np.arange(len(model.states)) if record is None else np.asarray(record, dtype=np.int64)
    dose_times = _dose_times(model, p, timeline)
    delivered = np.zeros((n, len(timeline.doses)))
    jump = _make_jump(model, p, u, timeline, dose_times, delivered)
    t0, t_end = float(t_out[0]), float(t_out[-1])
    decided = [dose_times[i] for i, d in enumerate(timeline.doses) if callable(d.amount)]
    inner = np.unique(np.concatenate([np.zeros(0), *decided]))
    bounds = [t0, *inner[(inner > t0) & (inner < t_end)].tolist(), t_end]
    out = np.empty((t_out.size, n, columns.size))
    state = BatchState.start(_initial(model, p, initial_state), solver)
    fixed = _fixed_doses(model, p, timeline, dose_times)
    # the kernel's parameter rows, once for the run (advance takes them prepared)
    kernel_p = compiled.prepare(p) if compiled.prepare is not None else p
    for b, t_b in enumerate(bounds[: 1 if t_end == t0 else None]):
        if b > 0:
            advance(compiled, state, kernel_p, times, u, bounds[b - 1], t_b, solver, t_out, columns, out, fixed)
        # a state-dependent dose time is always a stop; the ends only if something happens there
        inner_bound = 0 < b < len(bounds) - 1
        if inner_bound or (not (b == 0 and resume) and _is_stop(model, u, times, t_b, dose_times)):
            state.y = np.ascontiguousarray(jump(t_b, state.y), dtype=float)
        lo, hi = np.searchsorted(t_out, t_b, side="left"), np.searchsorted(t_out, t_b, side="right")
        out[lo:hi] = state.y[None, :, columns]
    _fixed_delivered(timeline, dose_times, delivered, t0, t_end)
    return CompiledRun(t_out, out, delivered, int(state.steps.max(initial=0)), state.steps)


def _fixed_delivered(timeline: Timeline, dose_times: list[Array], delivered: Array, t0: float,
                     t_end: float) -> None:
    """Fixed doses the kernel gave inside the run (those at the ends were recorded by the jump)."""
    for i, dose in enumerate(timeline.doses):
        if callable(dose.amount):
            continue
        inside = (dose_times[i] > t0) & (dose_times[i] < t_end)
        amount = np.broadcast_to(np.asarray(dose.amount, dtype=float), inside.shape)
        delivered[inside, i] = amount[inside]
