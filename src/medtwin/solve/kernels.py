"""Compiled population engine: Dormand-Prince 5(4) with a step size PER PATIENT (numba, no BLAS).

Each patient of a batch integrates on its own inside one compiled loop, so a batch never pays for its hardest
member (the lockstep solver of :mod:`medtwin.solve._core` steps every patient with the smallest step any of
them needs). The tableau, error norm, step-size control and dense output are those of
:class:`~medtwin.solve.Dopri5` (the same as scipy's RK45), applied per patient. Only the requested output
times and state columns are written (``record``): a population run keeps, say, 5-minute glucose, never every
state every minute.

A model plugs in three compiled functions (numba ``@cfunc`` of the signatures below), the per-patient form
of its declaration:

* ``rhs(t, y (k,), p (P,), u (I,), dy (k,))`` writes the derivatives;
* ``step_jump(y (k,), u_new (I,), u_old (I,))`` an instantaneous update at an input step (may do nothing);
* ``needs_stop(u (I,)) -> bool`` an input step the integrator must stop at even where the input is unchanged;
* optionally ``exact`` / ``exact_stages`` for ``exact_states``: a linear sub-block the model solves in closed
  form from each step's start under the step's constant inputs (UVA/Padova: its insulin chain). Its states at
  every stage and at the step's end are the closed form's, not the Runge-Kutta combination, and they are left
  out of the error norm (no truncation error): a stiff linear block then sets no stability limit on the step,
  while the other states keep Dormand-Prince's order, error control and dense output. ``prepare(p)`` may
  append per-patient constants to the parameter rows; the caller applies it once per run and passes
  :func:`advance` the prepared rows.

A patient's stops are its own: the input steps where ITS inputs change or ``needs_stop`` says so, and its
fixed doses (``dose_t (n, D)`` sorted per patient, ``dose_state``, ``dose_delta`` in state units). Jumps are
applied inside the open interval ``(t_a, t_b)``; the caller applies whatever happens exactly at ``t_a`` and
``t_b`` (so doses whose size depends on the state, e.g. a bolus calculator, are decided between two calls).

Patients are independent, so :func:`advance` hands blocks of them to a thread pool (the compiled loop runs
without the GIL; :func:`threads`, :func:`set_threads`, ``MEDTWIN_THREADS``): a split never changes an answer.

Why numba: the right-hand side of UVA/Padova is ~60 scalar operations per patient; numpy's per-call overhead
on (n, 14) arrays and BLAS stage products dominated the lockstep path. Compiled code is cached on disk
(``cache=True``), so only the first run on a machine pays the compile time (see docs/architecture.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import cfunc, njit, types
from numba.extending import intrinsic
from numpy.typing import NDArray

from medtwin.arrays import Array
from medtwin.solve._core import _DP_A, _DP_B, _DP_C, _DP_E, Dopri5, SolverFailure
from medtwin.solve._core import _DP_P as _P
from medtwin.solve.cache_key import install as _keyed_caches

_keyed_caches()  # before the first decorator: the caches below and the models' are keyed on all engine sources

# the Dormand-Prince tableau of medtwin.solve._core (scipy's RK45 values) as plain float constants, unrolled below
_C2, _C3, _C4, _C5 = (float(c) for c in _DP_C[1:5])
(_A21,), (_A31, _A32), (_A41, _A42, _A43), (_A51, _A52, _A53, _A54), (_A61, _A62, _A63, _A64, _A65) = _DP_A[1:6]
_B1, _B3, _B4, _B5, _B6 = (float(_DP_B[j]) for j in (0, 2, 3, 4, 5))
_E1, _E3, _E4, _E5, _E6, _E7 = (float(_DP_E[j]) for j in (0, 2, 3, 4, 5, 6))

_VECTOR = types.CPointer(types.float64)  # type: ignore[no-untyped-call]
#: ``rhs(t, y, p, u, dy)``, ``step_jump(y, u_new, u_old)`` and ``needs_stop(u)`` are numba ``@cfunc`` of these
#: signatures (vectors as raw ``double*``): the engine receives them as typed function pointers, so it is
#: compiled (and cached) once for every model (a jitted function passed as an argument would be a new type in
#: every process: no cache), and a call passes bare pointers (no reference counting per evaluation).
RHS_SIGNATURE = types.void(types.float64, _VECTOR, _VECTOR, _VECTOR, _VECTOR)
JUMP_SIGNATURE = types.void(_VECTOR, _VECTOR, _VECTOR)
STOP_SIGNATURE = types.boolean(_VECTOR)
#: ``exact(s, y0, p, u, out)`` writes the model's closed-form states (``CompiledModel.exact_states``) at ``s``
#: after a point where the state is ``y0``, under the constant inputs ``u``; every other entry of ``out`` is left.
#: ``exact_stages(h, y0, p, u, out)``: the same at the five Dormand-Prince stage offsets ``STAGE_OFFSETS * h``,
#: into the rows of ``out`` (5, k) (one call per step: a model may share its exponentials between them).
EXACT_SIGNATURE = types.void(types.float64, _VECTOR, _VECTOR, _VECTOR, _VECTOR)
STAGE_OFFSETS = (_C2, _C3, _C4, _C5, 1.0)


def _ptr_typing(typingctx: Any, array: Any) -> Any:  # pragma: no cover - compiled
    """The data pointer of a contiguous float64 array (what the model functions receive)."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return context.make_array(array)(context, builder, args[0]).data

    return _VECTOR(array), codegen


def _row_typing(typingctx: Any, matrix: Any, index: Any) -> Any:  # pragma: no cover - compiled
    """The data pointer of row ``index`` of a C-contiguous float64 matrix (no view, no reference counting)."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ncols = builder.extract_value(ary.shape, 1)
        return builder.gep(ary.data, [builder.mul(args[1], ncols)])

    return _VECTOR(matrix, types.intp), codegen


_ptr: Any = intrinsic(_ptr_typing)
_row: Any = intrinsic(_row_typing)
OK, UNDERFLOW, NOT_FINITE, TOO_MANY_STEPS = 0, 1, 2, 3
_MESSAGES = {UNDERFLOW: "step size underflow", NOT_FINITE: "non-finite state",
             TOO_MANY_STEPS: "more than max_steps steps"}


@cfunc(EXACT_SIGNATURE, cache=True)
def no_exact(s: float, y0: Array, p: Array, u: Array, out: Array) -> None:  # pragma: no cover - compiled
    """A model without closed-form states (``exact`` and ``exact_stages``)."""
    return None


@dataclass(frozen=True)
class CompiledModel:
    """The compiled per-patient functions of a model (see the module docstring); ``exact`` with
    ``exact_states``: a linear sub-block solved in closed form over each step (module docstring)."""

    rhs: Any
    step_jump: Any
    needs_stop: Any
    exact: Any = no_exact
    exact_stages: Any = no_exact
    exact_states: tuple[int, ...] = ()
    #: the kernel's parameter rows from the model's (n, P) (e.g. per-patient constants appended); applied once per
    #: run by the caller (``model.simulate``), not by :func:`advance`
    prepare: Callable[[Array], Array] | None = None


@cfunc(JUMP_SIGNATURE, cache=True)
def no_jump(y: Array, u_new: Array, u_old: Array) -> None:  # pragma: no cover - compiled
    """A model without input-step jumps."""
    return None


@cfunc(STOP_SIGNATURE, cache=True)
def no_stop(u: Array) -> bool:  # pragma: no cover - compiled
    """A model that needs stops only where its inputs change."""
    return False


@njit(cache=True)
def _stage_time(t: float, seg_end: float) -> float:  # pragma: no cover - compiled
    return t if t < seg_end else np.nextafter(seg_end, -np.inf)


@njit(cache=True)
def _rms(x: Array, scale: Array) -> float:  # pragma: no cover - compiled
    s = 0.0
    for j in range(x.size):
        v = x[j] / scale[j]
        s += v * v
    return math.sqrt(s / x.size)


@njit(cache=True)
def _initial_step(rhs: Any, t: float, y: Array, dy: Array, p: Array, u: Array, rtol: float, atol: float,
                  span: float, seg_end: float, max_step: float, work: Array) -> float:  # pragma: no cover
    """Hairer's starting step (as :func:`medtwin.solve._core._initial_step`), for one patient."""
    k = y.size
    scale = np.empty(k)
    for j in range(k):
        scale[j] = atol + rtol * abs(y[j])
    d0, d1 = _rms(y, scale), _rms(dy, scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, span)
    y1 = np.empty(k)
    for j in range(k):
        y1[j] = y[j] + h0 * dy[j]
    rhs(_stage_time(t + h0, seg_end), _ptr(y1), _ptr(p), u, _ptr(work))
    for j in range(k):
        y1[j] = work[j] - dy[j]
    d2 = _rms(y1, scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if d1 <= 1e-15 and d2 <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / 5)
    return min(100 * h0, h1, span, max_step)


@njit(cache=True)
def _stages(rhs: Any, exact_stages: Any, exact_idx: Any, t: float, step: float, last: bool, seg_end: float,
            y: Array, p: Array, u: Any, ks: Array, ys: Array, y_new: Array,
            z: Array) -> None:  # pragma: no cover - compiled
    """Stages 2..7 of one Dormand-Prince step into ``ks`` (stage 1 is ``ks[0]``) and the 5th-order ``y_new``;
    ``u`` is the pointer to the inputs. The closed-form states (``exact_idx``) of every stage and of ``y_new``
    are the model's ``exact`` values at the stage time, not the Runge-Kutta combination."""
    k = y.size
    py, pp, pu, p0 = _ptr(ys), _ptr(p), u, _ptr(y)
    if exact_idx.size > 0:
        exact_stages(step, p0, pp, pu, _ptr(z))
    for j in range(k):
        ys[j] = y[j] + step * _A21 * ks[0, j]
    for j in exact_idx:
        ys[j] = z[0, j]
    rhs(_stage_time(t + _C2 * step, seg_end), py, pp, pu, _row(ks, 1))
    for j in range(k):
        ys[j] = y[j] + step * (_A31 * ks[0, j] + _A32 * ks[1, j])
    for j in exact_idx:
        ys[j] = z[1, j]
    rhs(_stage_time(t + _C3 * step, seg_end), py, pp, pu, _row(ks, 2))
    for j in range(k):
        ys[j] = y[j] + step * (_A41 * ks[0, j] + _A42 * ks[1, j] + _A43 * ks[2, j])
    for j in exact_idx:
        ys[j] = z[2, j]
    rhs(_stage_time(t + _C4 * step, seg_end), py, pp, pu, _row(ks, 3))
    for j in range(k):
        ys[j] = y[j] + step * (_A51 * ks[0, j] + _A52 * ks[1, j] + _A53 * ks[2, j] + _A54 * ks[3, j])
    for j in exact_idx:
        ys[j] = z[3, j]
    rhs(_stage_time(t + _C5 * step, seg_end), py, pp, pu, _row(ks, 4))
    for j in range(k):
        ys[j] = y[j] + step * (_A61 * ks[0, j] + _A62 * ks[1, j] + _A63 * ks[2, j] + _A64 * ks[3, j]
                               + _A65 * ks[4, j])
    for j in exact_idx:
        ys[j] = z[4, j]
    t_end = seg_end if last else t + step
    rhs(_stage_time(t_end, seg_end), py, pp, pu, _row(ks, 5))
    for j in range(k):
        y_new[j] = y[j] + step * (_B1 * ks[0, j] + _B3 * ks[2, j] + _B4 * ks[3, j] + _B5 * ks[4, j]
                                  + _B6 * ks[5, j])
    for j in exact_idx:  # stage 6 is at the step's end too
        y_new[j] = ys[j]
    rhs(_stage_time(t_end, seg_end), _ptr(y_new), pp, pu, _row(ks, 6))


@njit(cache=True)
def _error_norm(step: float, y: Array, y_new: Array, ks: Array, rtol: float, atol: float,
                explicit: Array) -> float:
    """Per-patient RMS of the embedded error over ``atol + rtol * max(|y|, |y_new|)`` (inf if not finite), over
    the integrated states (``explicit`` 1; the closed-form ones, 0, make no truncation error)."""
    s = 0.0
    m = 0
    for j in range(y.size):
        if not math.isfinite(y_new[j]):
            return math.inf
        if explicit[j] == 0.0:
            continue
        m += 1
        err = step * (_E1 * ks[0, j] + _E3 * ks[2, j] + _E4 * ks[3, j] + _E5 * ks[4, j] + _E6 * ks[5, j]
                      + _E7 * ks[6, j])
        v = err / (atol + rtol * max(abs(y[j]), abs(y_new[j])))
        s += v * v
    return math.sqrt(s / m)


@njit(cache=True)
def _dense(t_out: Array, jo: int, t: float, t_new: float, step: float, y: Array, ks: Array, record: Any,
           out: Array, i: int, exact: Any, explicit: Array, pp: Any, pu: Any,
           scratch: Array) -> int:  # pragma: no cover - compiled
    """Write the recorded states at the requested times strictly inside ``(t, t_new)``; next output index.
    Closed-form states are the model's ``exact`` values there, the others Dormand-Prince's interpolant."""
    closed = False
    for c in range(record.size):
        closed = closed or explicit[record[c]] == 0.0
    while jo < t_out.size and t_out[jo] < t_new:
        x = (t_out[jo] - t) / step
        x2 = x * x
        if closed:
            exact(t_out[jo] - t, _ptr(y), pp, pu, _ptr(scratch))
        for c in range(record.size):
            j = record[c]
            if explicit[j] == 0.0:
                out[jo, i, c] = scratch[j]
                continue
            acc = 0.0
            for s in range(7):
                acc += ks[s, j] * (_P[s, 0] * x + _P[s, 1] * x2 + _P[s, 2] * x2 * x + _P[s, 3] * x2 * x2)
            out[jo, i, c] = y[j] + step * acc
        jo += 1
    return jo


@njit(cache=True)
def _segment(rhs: Any, exact: Any, exact_stages: Any, closed: tuple[Any, Array], z: Array, t: float,
             seg_end: float, y: Array, p: Array, u: Array, iu: int, h: float, settings: Array, t_out: Array, jo: int, record: Any, out: Array, i: int, ks: Array,
             ys: Array, y_new: Array, counts: Array) -> tuple[float, int, int]:  # pragma: no cover - compiled
    """Integrate one patient over ``[t, seg_end)`` with the constant inputs of row ``iu`` of ``u``; ``y`` ends at
    ``seg_end``.
    Returns ``(next proposed step, next output index, status)``; ``counts`` = [steps, rejected]; ``closed``:
    the indices of the model's closed-form states (``exact``, ``exact_stages``) and 1/0 per state (integrated
    or not); ``z`` room for the closed form's five stage rows."""
    exact_idx, explicit = closed
    rtol, atol, max_step, safety, max_steps = settings[0], settings[1], settings[2], settings[3], settings[4]
    pu = _row(u, iu)
    rhs(t, _ptr(y), _ptr(p), pu, _row(ks, 0))
    if h <= 0.0:
        h = _initial_step(rhs, t, y, ks[0], p, pu, rtol, atol, seg_end - t, seg_end, max_step, ks[1])
    while t < seg_end:
        h = min(h, max_step)
        last = t + h >= seg_end - 1e-12 * max(1.0, abs(seg_end))
        step = seg_end - t if last else h
        rejected = False
        while True:
            _stages(rhs, exact_stages, exact_idx, t, step, last, seg_end, y, p, pu, ks, ys, y_new, z)
            norm = _error_norm(step, y, y_new, ks, rtol, atol, explicit)
            if norm <= 1.0:
                break
            rejected = True
            counts[1] += 1
            factor = max(0.2, safety * norm ** (-0.2)) if math.isfinite(norm) else 0.25
            step *= factor
            last = False
            if step < 1e-12 * max(1.0, abs(t)):
                return h, jo, UNDERFLOW
        counts[0] += 1
        if counts[0] > max_steps:
            return h, jo, TOO_MANY_STEPS
        t_new = seg_end if last else t + step
        jo = _dense(t_out, jo, t, t_new, step, y, ks, record, out, i, exact, explicit, _ptr(p), pu, ys)
        if not last and jo < t_out.size and t_out[jo] == t_new:
            for c in range(record.size):
                out[jo, i, c] = y_new[record[c]]
            jo += 1
        factor = 10.0 if norm == 0.0 else min(10.0, max(0.2, safety * norm ** (-0.2)))
        if rejected:
            factor = min(factor, 1.0)
        new_h = step * factor
        h = max(h, new_h) if last else new_h  # a step shortened to land on a stop keeps the proposal
        t = t_new
        for j in range(y.size):
            y[j] = y_new[j]
            ks[0, j] = ks[6, j]
    return h, jo, OK


@njit(cache=True)
def _next_stop(needs_stop: Any, u: Array, input_times: Array, kk: int, t_b: float) -> int:  # pragma: no cover
    """The first input step from ``kk`` on (before ``t_b``) where the inputs change or ``needs_stop`` says so
    (``input_times.size`` if none). ``needs_stop`` is a function of the row, so it is asked once: a row equal
    to the one before gives the same answer (a call per row cost ~10 ns, ~15 us per patient-day on a
    minute grid)."""
    n_in, n_cols = input_times.size, u.shape[1]
    if kk >= n_in or input_times[kk] >= t_b:
        return kk
    if needs_stop(_row(u, kk)):
        return kk
    end = kk  # the rows before t_b, then the first entry that differs from the one a row above
    while end < n_in and input_times[end] < t_b:
        end += 1
    flat = u.reshape(-1)  # C-contiguous: a view
    for m in range(max(kk, 1) * n_cols, end * n_cols):
        if flat[m] != flat[m - n_cols]:
            return int(m // n_cols)
    return end


@njit(cache=True)
def _patient(rhs: Any, step_jump: Any, needs_stop: Any, exact: Any, exact_stages: Any, closed: tuple[Any, Array],
             y: Array, p: Array, input_times: Array, u: Array,
             t_a: float, t_b: float, dose_t: Array, dose_state: Any, dose_delta: Array, settings: Array,
             t_out: Array, record: Any, out: Array, i: int, h: float, counts: Any) -> tuple[float, int]:
    """One patient from ``t_a`` to ``t_b`` (module docstring); returns ``(proposed step, status)``."""
    k, n_in = y.size, input_times.size
    ks, ys, y_new = np.empty((7, k)), np.empty(k), np.empty(k)
    z = np.empty((5, k)) if closed[0].size > 0 else np.empty((0, 0))  # per patient, not per segment (~50 a day)
    zeros = np.zeros(u.shape[1])
    jo: Any = np.searchsorted(t_out, t_a, side="right")
    kk: Any = np.searchsorted(input_times, t_a, side="right")  # next input step after t_a
    iu: Any = max(kk - 1, 0)  # the step holding at t_a
    dd: Any = np.searchsorted(dose_t, t_a, side="right")
    t = t_a
    while t < t_b:
        kk = _next_stop(needs_stop, u, input_times, kk, t_b)
        seg_end = t_b
        if kk < n_in and input_times[kk] < seg_end:
            seg_end = input_times[kk]
        if dd < dose_t.size and dose_t[dd] < seg_end:
            seg_end = dose_t[dd]
        h, jo, status = _segment(rhs, exact, exact_stages, closed, z, t, seg_end, y, p, u, iu, h, settings, t_out,
                                 jo, record, out, i, ks, ys, y_new, counts)
        if status != OK:
            return h, status
        t = seg_end
        if t >= t_b:
            break
        if kk < n_in and input_times[kk] == t:
            step_jump(_ptr(y), _row(u, kk), _row(u, kk - 1) if kk > 0 else _ptr(zeros))
            iu = kk
            kk += 1
        while dd < dose_t.size and dose_t[dd] == t:
            y[dose_state[dd]] += dose_delta[dd]
            dd += 1
        for j in range(k):
            if not math.isfinite(y[j]):
                return h, NOT_FINITE
        while jo < t_out.size and t_out[jo] == t:
            for c in range(record.size):
                out[jo, i, c] = y[record[c]]
            jo += 1
    return h, OK


@njit(cache=True, nogil=True)
def _batch(rhs: Any, step_jump: Any, needs_stop: Any, exact: Any, exact_stages: Any, closed: tuple[Any, Array],
           y: Array, p: Array, input_times: Array, u: Array,
           t_a: float, t_b: float, dose_t: Array, dose_state: Any, dose_delta: Array, settings: Array,
           t_out: Array, record: Any, out: Array, h: Array, steps: Any, status: Any, lo: int, hi: int) -> None:
    """Patients ``lo .. hi-1`` in turn (a compiled loop, without the GIL: :func:`advance` runs blocks of patients
    on several threads at once); their rows of ``y`` (n, k) are advanced to ``t_b`` in place."""
    counts = np.zeros(2, dtype=np.int64)
    for i in range(lo, hi):
        counts[0] = 0
        counts[1] = 0
        h[i], status[i] = _patient(rhs, step_jump, needs_stop, exact, exact_stages, closed, y[i], p[i],
                                   input_times, u[i], t_a, t_b,
                                   dose_t[i], dose_state[i], dose_delta[i], settings, t_out, record, out, i,
                                   h[i], counts)
        steps[i] += counts[0]
        if status[i] != OK:
            return


def _default_threads() -> int:
    """``MEDTWIN_THREADS`` if set, else the cores this process may run on."""
    if os.environ.get("MEDTWIN_THREADS"):
        return max(1, int(os.environ["MEDTWIN_THREADS"]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_THREADS = [_default_threads()]
_POOL: list[ThreadPoolExecutor] = []
#: blocks handed out as threads free up (patients differ 2-3x in cost); each costs one call into compiled code
#: (~30 us of argument unboxing, :func:`_compiled_batch`): 128 patients are ~4 ms of work per quarter day
PATIENTS_PER_TASK = 128


def threads() -> int:
    """How many threads :func:`advance` spreads a batch over (default: the usable cores; ``MEDTWIN_THREADS``)."""
    return _THREADS[0]


def set_threads(n: int) -> None:
    """Spread batches over ``n`` threads from now on (1: the calling thread only)."""
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    _THREADS[0] = n
    _reset_pool()


def _reset_pool() -> None:
    while _POOL:
        _POOL.pop().shutdown(wait=False)


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=_THREADS[0], thread_name_prefix="medtwin-engine"))
    return _POOL[0]


if hasattr(os, "register_at_fork"):  # a forked child has the pool object but not its threads
    os.register_at_fork(after_in_child=_POOL.clear)


def _run_blocks(run: Callable[[int, int], None], n: int) -> None:
    """``run(lo, hi)`` over blocks of patients: on the calling thread when one thread (or block) is enough,
    else on the pool (the compiled loop releases the GIL). Patients are independent: a split never changes an
    answer."""
    block = max(1, min(PATIENTS_PER_TASK, -(-n // (4 * _THREADS[0]))))
    if _THREADS[0] == 1 or n <= block:
        run(0, n)
        return
    for future in [_pool().submit(run, lo, min(lo + block, n)) for lo in range(0, n, block)]:
        future.result()


@dataclass
class BatchState:
    """What carries over between two calls of :func:`advance` over consecutive intervals: the states (n, k),
    each patient's proposed step (0: choose one) and its accepted step count."""

    y: Array
    h: Array
    steps: NDArray[np.int64]

    @classmethod
    def start(cls, y0: Array, solver: Dopri5) -> BatchState:
        n = y0.shape[0]
        first = 0.0 if solver.first_step is None else float(solver.first_step)
        return cls(np.array(y0, dtype=float, order="C"), np.full(n, first), np.zeros(n, dtype=np.int64))


@dataclass(frozen=True)
class Doses:
    """Fixed doses per patient: times (n, D) sorted along each row, state index (n, D), delta (n, D)."""

    t: Array
    state: NDArray[np.int64]
    delta: Array

    @classmethod
    def none(cls, n: int) -> Doses:
        return cls(np.zeros((n, 0)), np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0)))

    @classmethod
    def from_columns(cls, times: Array, state: NDArray[np.int64], delta: Array) -> Doses:
        """Doses given as columns (any order): sorted per patient (stable: same-time doses keep their order)."""
        order = np.argsort(times, axis=1, kind="stable")
        pick = np.take_along_axis
        return cls(np.ascontiguousarray(pick(times, order, axis=1)),
                   np.ascontiguousarray(pick(np.asarray(state, dtype=np.int64), order, axis=1)),
                   np.ascontiguousarray(pick(delta, order, axis=1)))


def advance(model: CompiledModel, state: BatchState, p: Array, input_times: Array, u: Array, t_a: float,
            t_b: float, solver: Dopri5, t_out: Array, record: NDArray[np.int64], out: Array,
            doses: Doses | None = None) -> None:
    """Advance every patient from ``t_a`` to ``t_b`` (state before any jump at ``t_b``), writing the recorded
    columns at the requested times strictly inside ``(t_a, t_b)`` into ``out`` (len(t_out), n, len(record)).

    ``u`` is (n, K, I) over ``input_times`` (K,) (made contiguous: pass blocks of patients to bound memory). Raises
    :class:`~medtwin.solve.SolverFailure` naming the first patient that failed."""
    n = state.y.shape[0]
    doses = doses or Doses.none(n)
    settings = np.array([solver.rtol, solver.atol, solver.max_step, solver.safety, float(solver.max_steps)])
    status = np.zeros(n, dtype=np.int64)
    explicit = np.ones(state.y.shape[1])
    explicit[list(model.exact_states)] = 0.0
    closed = (np.array(model.exact_states, dtype=np.int64), explicit)
    args = (model.rhs, model.step_jump, model.needs_stop, model.exact, model.exact_stages, closed, state.y,
            _writeable(p),
            np.asarray(input_times, dtype=float), _writeable(u), float(t_a), float(t_b), doses.t, doses.state,
            doses.delta, settings, np.asarray(t_out, dtype=float), record, out, state.h, state.steps, status)
    batch = _compiled_batch(args)
    _run_blocks(lambda lo, hi: batch(*args, lo, hi), n)
    failed = np.flatnonzero(status != OK)
    if failed.size:
        i = int(failed[0])
        raise SolverFailure(f"patient {i}: {_MESSAGES[int(status[i])]} between t={t_a} and t={t_b}")


def _compiled_batch(args: tuple[Any, ...]) -> Callable[..., None]:
    """The compiled :func:`_batch` for these argument types, called directly: the dispatcher types all ~24
    arguments on every call (~130 us, under the GIL: with blocks of patients on a thread pool that was ~8 % of a
    10,000-patient run on two threads, serialised); typed once here per call of :func:`advance`."""
    signature = tuple(_batch.typeof_pyval(a) for a in (*args, 0, 0))
    compiled: Any = _batch.overloads.get(signature)
    if compiled is None:
        _batch.compile(signature)
        compiled = _batch.overloads[signature]
    entry: Callable[..., None] = compiled.entry_point
    return entry


def _writeable(a: Array) -> Array:
    """C-contiguous, writeable float64 (the compiled functions' argument type); no copy when it already is."""
    return np.require(a, dtype=np.float64, requirements=["C", "W"])


def kernel_for(rhs: Callable[..., Any]) -> CompiledModel | None:
    """The compiled model registered for a model's vectorised right-hand side, if any."""
    return _REGISTRY.get(rhs)


def register(rhs: Callable[..., Any], compiled: CompiledModel) -> None:
    """Declare that ``compiled`` integrates the model whose vectorised right-hand side is ``rhs`` (the same
    equations, per patient): :func:`medtwin.model.simulate.simulate` then uses the compiled engine for it."""
    _REGISTRY[rhs] = compiled


_REGISTRY: dict[Callable[..., Any], CompiledModel] = {}
