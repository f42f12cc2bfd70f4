"""Linear compartmental pharmacokinetics: 1-, 2-, 3-compartment, IV bolus, zero-order infusion,
first-order oral absorption with lag time and transit compartments, optional effect compartment.

One interface, two methods:

* ``method="closed_form"``: the exact solution of the linear system by superposition of
  exponentials (eigen-decomposition of the rate matrix, batched over patients), marched from dose to
  dose. Exact for every model without transit compartments (whose rate matrix is defective).
* ``method="ode"``: the same model integrated by the compiled population engine
  (:mod:`medtwin.solve.kernels`, a step size per subject; any other solver than Dopri5 runs on the
  lockstep :func:`medtwin.solve.integrate`), boluses as jumps at breakpoints, infusions as a jump in an
  input-rate state.

Symbols follow the published convention (``CL``, ``V1``, ``ka``...); :data:`PARAMETER_INFO` gives
unit and meaning. Amounts are mg, volumes L, clearances L/h, rates 1/h, times h, concentrations mg/L.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import cfunc
from numpy.typing import ArrayLike, NDArray

from medtwin.arrays import Array
from medtwin.pharmaco.dosing import DoseSchedule, Route
from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.solve import Dopri5, Solver, integrate
from medtwin.solve.kernels import RHS_SIGNATURE, BatchState, CompiledModel, Doses, advance, no_jump, no_stop

#: unit and meaning of every PK symbol
PARAMETER_INFO: dict[str, tuple[str, str]] = {
    "CL": ("L/h", "clearance from the central compartment (apparent CL/F for oral-only fits)"),
    "V1": ("L", "central volume of distribution"),
    "Q2": ("L/h", "inter-compartmental clearance central <-> peripheral 1"),
    "V2": ("L", "volume of peripheral compartment 1"),
    "Q3": ("L/h", "inter-compartmental clearance central <-> peripheral 2"),
    "V3": ("L", "volume of peripheral compartment 2"),
    "ka": ("1/h", "first-order absorption rate constant"),
    "F": ("1", "bioavailability of oral doses"),
    "tlag": ("h", "absorption lag time of oral doses"),
    "ktr": ("1/h", "transit rate constant between transit compartments"),
    "ke0": ("1/h", "effect-compartment equilibration rate constant"),
}


@dataclass(frozen=True)
class CompartmentModel:
    """Structure of a linear PK model.

    ``compartments``: 1, 2 or 3 (central + peripherals); ``absorption``: first-order oral depot;
    ``transit``: number of transit compartments ahead of the depot (Savic 2007), 0 for none;
    ``effect_compartment``: add a hypothetical effect site ``Ce`` (dCe/dt = ke0 (C - Ce)).
    """

    compartments: int = 1
    absorption: bool = False
    transit: int = 0
    effect_compartment: bool = False

    def __post_init__(self) -> None:
        if self.compartments not in (1, 2, 3):
            raise PharmacoInputError("compartments", f"must be 1, 2 or 3, got {self.compartments}")
        if self.transit < 0 or (self.transit and not self.absorption):
            raise PharmacoInputError("transit", "transit compartments need absorption=True and transit >= 0")

    @property
    def parameter_names(self) -> tuple[str, ...]:
        names = ["CL", "V1"]
        if self.compartments >= 2:
            names += ["Q2", "V2"]
        if self.compartments == 3:
            names += ["Q3", "V3"]
        if self.absorption:
            names += ["ka", "F", "tlag"]
        if self.transit:
            names.append("ktr")
        if self.effect_compartment:
            names.append("ke0")
        return tuple(names)

    @property
    def state_names(self) -> tuple[str, ...]:
        names = [f"transit_{i + 1}" for i in range(self.transit)]
        if self.absorption:
            names.append("depot")
        names.append("central")
        names += [f"peripheral_{i + 1}" for i in range(self.compartments - 1)]
        if self.effect_compartment:
            names.append("effect_site")
        return tuple(names)

    @property
    def state_units(self) -> tuple[str, ...]:
        return tuple("mg/L" if s == "effect_site" else "mg" for s in self.state_names)

    @property
    def central_index(self) -> int:
        return self.state_names.index("central")

    @property
    def absorption_index(self) -> int:
        """Compartment receiving oral doses (first transit compartment, else the depot)."""
        if not self.absorption:
            raise PharmacoInputError("route", "this model has no absorption compartment for oral doses")
        return 0

    @property
    def has_closed_form(self) -> bool:
        return self.transit == 0

    def parameters(self, values: Mapping[str, ArrayLike], n: int | None = None) -> dict[str, Array]:
        """Validate and broadcast parameter values to arrays of shape ``(n,)``."""
        defaults = {"F": 1.0, "tlag": 0.0}
        arrays: dict[str, Array] = {}
        for name in self.parameter_names:
            if name in values:
                raw = values[name]
            elif name in defaults:
                raw = defaults[name]
            else:
                raise PharmacoInputError(name, f"missing PK parameter ({PARAMETER_INFO[name][1]})")
            arrays[name] = np.atleast_1d(np.asarray(raw, dtype=float))
        size = n if n is not None else max(a.shape[0] for a in arrays.values())
        out: dict[str, Array] = {}
        for name, a in arrays.items():
            if a.ndim != 1 or a.shape[0] not in (1, size):
                raise PharmacoInputError(name, f"expected a scalar or an array of {size} values")
            b = np.broadcast_to(a, (size,)).astype(float)
            if not np.all(np.isfinite(b)):
                raise PharmacoInputError(name, "must be finite")
            if name == "tlag":
                if np.any(b < 0):
                    raise PharmacoInputError(name, "lag time must be >= 0 h")
            elif name == "F":
                if np.any((b < 0) | (b > 1.0 + 1e-12)):
                    raise PharmacoInputError(name, "bioavailability must be within [0, 1]")
            elif np.any(b <= 0):
                raise PharmacoInputError(name, f"must be > 0 {PARAMETER_INFO[name][0]}")
            out[name] = b
        return out

    def rate_matrix(self, p: Mapping[str, Array]) -> Array:
        """``A`` with ``dx/dt = A x`` (no inputs), shape ``(n, k, k)``."""
        n = p["CL"].shape[0]
        k = len(self.state_names)
        a = np.zeros((n, k, k))
        c = self.central_index
        for i in range(self.transit):
            a[:, i, i] -= p["ktr"]
            a[:, i + 1, i] += p["ktr"]
        if self.absorption:
            d = c - 1
            a[:, d, d] -= p["ka"]
            a[:, c, d] += p["ka"]
        a[:, c, c] -= p["CL"] / p["V1"]
        for j in range(1, self.compartments):
            q, v = p[f"Q{j + 1}"], p[f"V{j + 1}"]
            a[:, c, c] -= q / p["V1"]
            a[:, c, c + j] += q / v
            a[:, c + j, c] += q / p["V1"]
            a[:, c + j, c + j] -= q / v
        if self.effect_compartment:
            e = k - 1
            a[:, e, c] += p["ke0"] / p["V1"]
            a[:, e, e] -= p["ke0"]
        return a


@dataclass(frozen=True)
class PkResult:
    """Simulated trajectories: ``t_h`` (T,) or (n, T); ``concentration_mg_l`` (n, T) central;
    ``effect_site_mg_l`` (n, T) or None."""

    t_h: Array
    concentration_mg_l: Array
    effect_site_mg_l: Array | None


def _dose_inputs(
    model: CompartmentModel, p: Mapping[str, Array], schedule: DoseSchedule, n: int
) -> tuple[list[tuple[float, int, Array]], list[tuple[float, float, int, Array]], list[tuple[float, int, Array]]]:
    """Split a schedule into IV boluses, infusions (start, end, compartment, rate) and oral doses."""
    amounts = np.broadcast_to(schedule.amount_mg, (n, schedule.n_events)) if schedule.amount_mg.ndim == 2 else None
    boluses: list[tuple[float, int, Array]] = []
    infusions: list[tuple[float, float, int, Array]] = []
    orals: list[tuple[float, int, Array]] = []
    c = model.central_index
    for j in range(schedule.n_events):
        t = float(schedule.time_h[j])
        amount = amounts[:, j] if amounts is not None else np.full(n, float(schedule.amount_mg[j]))
        route = schedule.route[j]
        if route is Route.IV_BOLUS:
            boluses.append((t, c, amount))
        elif route is Route.IV_INFUSION:
            duration = float(schedule.duration_h[j])
            if not duration > 0:
                raise PharmacoInputError(f"dose[{j}].infusion_duration_h", "an infusion needs a duration > 0 h")
            infusions.append((t, t + duration, c, amount / duration))
        else:
            orals.append((t, model.absorption_index, amount * p["F"]))
    return boluses, infusions, orals


def _eigen(a: Array) -> tuple[Array, Array, Array]:
    w, vec = np.linalg.eig(a)
    if np.iscomplexobj(w):
        if np.max(np.abs(w.imag)) > 1e-9 * max(1.0, float(np.max(np.abs(w.real)))):
            raise PharmacoInputError("parameters", "rate matrix has complex eigenvalues")
        w, vec = w.real, vec.real
    cond = np.linalg.cond(vec)
    if np.any(cond > 1e10):
        raise PharmacoInputError(
            "parameters", "rate constants coincide (e.g. ka equals an elimination rate); use method='ode'"
        )
    return w, vec, np.linalg.inv(vec)


def _phi(w: Array, dt: Array) -> Array:
    """(exp(w dt) - 1) / w, the response of a mode to a unit constant input over dt."""
    return np.expm1(w * dt) / w


def _event_states(
    w: Array,
    vinv: Array,
    boluses: list[tuple[float, int, Array]],
    infusions: list[tuple[float, float, int, Array]],
) -> tuple[Array, Array, Array | None]:
    """Modal state just after each event time: ``(times (m,), z_plus (m, n, k), input rate (m, n, k) or None)``
    for eigenvalues ``w`` (n, k) and inverse eigenvectors ``vinv`` (n, k, k).

    The rate term exists only when there are infusions: bolus- or oral-only dosing never pays for it.
    """
    n, k = w.shape
    times = sorted(
        {t for t, _, _ in boluses} | {t for t, _, _, _ in infusions} | {e for _, e, _, _ in infusions}
    )
    b = np.array(times)
    nb = b.size
    index = {t: i for i, t in enumerate(times)}
    jump = np.zeros((nb, n, k))
    for t, comp, amount in boluses:
        jump[index[t], :, comp] += amount
    jz = np.einsum("nij,mnj->mni", vinv, jump)
    rz: Array | None = None
    if infusions:
        rate = np.zeros((nb, n, k))
        for start, end, comp, r in infusions:
            rate[index[start] : index[end], :, comp] += r
        rz = np.einsum("nij,mnj->mni", vinv, rate)
    z_plus = np.empty((nb, n, k))
    z = np.zeros((n, k))
    for m in range(nb):
        z = z + jz[m]
        z_plus[m] = z
        if m + 1 < nb:
            decay = np.exp(w * (b[m + 1] - b[m]))
            z = z * decay if rz is None else z * decay + rz[m] * _phi(w, np.full_like(w, b[m + 1] - b[m]))
    return b, z_plus, rz


def _march(
    w: Array,
    vinv: Array,
    obs: Array,
    boluses: list[tuple[float, int, Array]],
    infusions: list[tuple[float, float, int, Array]],
    t_query: Array,
) -> Array:
    """Exact linear response at times ``t_query`` ((T,) shared or (n, T)); observed rows ``obs`` (n, o, k) -> (n, T, o).

    Before the first event the response is zero: a zero state is prepended to the event states, so no
    validity mask is needed, and the input-rate term is evaluated only when there are infusions.
    """
    n, k = w.shape
    T = t_query.shape[-1]
    n_obs = obs.shape[1]
    if not boluses and not infusions:
        return np.zeros((n, T, n_obs))
    b, z_plus, rz = _event_states(w, vinv, boluses, infusions)
    # observed modal amplitudes per mode, one zero row for "before the first event": (k, m + 1, n, o)
    amp = np.zeros((k, b.size + 1, n, n_obs))
    amp[:, 1:] = np.einsum("mni,noi->imno", z_plus, obs)
    ramp = None
    if rz is not None:
        ramp = np.zeros((k, b.size + 1, n, n_obs))
        ramp[:, 1:] = np.einsum("mni,noi->imno", rz, obs)
    starts = np.concatenate([b[:1], b])
    out = np.empty((n, T, n_obs))
    chunk = max(1, int(4_000_000 // max(1, n * n_obs)))
    for s in range(0, T, chunk):
        tq = t_query[..., s : s + chunk]
        idx = np.searchsorted(b, tq, side="right")  # 0 = before the first event
        dt = np.maximum(tq - starts[idx], 0.0)
        out[:, s : s + chunk, :] = _superpose(w, amp, ramp, idx, dt, n)
    return out


def _superpose(w: Array, amp: Array, ramp: Array | None, idx: NDArray[np.intp], dt: Array, n: int) -> Array:
    """Sum over modes of amplitude x decay (+ input-rate response) at the query times: (n, Tc, o).

    Shared times (1-D ``idx``) gather whole event rows and compute time-major; per-patient times gather
    per (patient, time). One mode at a time keeps the intermediates at (n, Tc, o).
    """
    shared = idx.ndim == 1
    rows = np.arange(n)[:, None]
    acc: Array | None = None
    for i in range(w.shape[1]):
        wi = w[:, i]
        wdt = wi[None, :, None] * dt[:, None, None] if shared else wi[:, None, None] * dt[:, :, None]
        term = (amp[i][idx] if shared else amp[i][idx, rows]) * np.exp(wdt)
        if ramp is not None:
            wb = wi[None, :, None] if shared else wi[:, None, None]
            term += (ramp[i][idx] if shared else ramp[i][idx, rows]) * _phi_or_zero(wb, wdt)
        acc = term if acc is None else acc + term
    assert acc is not None
    return np.asarray(acc.transpose(1, 0, 2) if shared else acc, dtype=float)


def _phi_or_zero(w: Array, wdt: Array) -> Array:
    """``expm1(w dt) / w`` with 0 where dt = 0 (also at an event time, where the state is taken just after it)."""
    return np.where(wdt != 0.0, np.expm1(wdt) / w, 0.0)


def _observation_rows(model: CompartmentModel, vec: Array) -> Array:
    rows = [model.central_index]
    if model.effect_compartment:
        rows.append(len(model.state_names) - 1)
    return vec[:, rows, :]


def _lagged(t: Array, lag: Array) -> Array:
    """Times since the oral doses' lag: shared (T,) when every patient has the same lag, else (n, T)."""
    if t.ndim == 1 and np.all(lag == lag[0]):
        return np.asarray(t - lag[0], dtype=float)
    return np.asarray(t - lag[:, None], dtype=float)


def simulate(
    model: CompartmentModel,
    parameters: Mapping[str, ArrayLike],
    schedule: DoseSchedule,
    t_h: ArrayLike,
    method: str = "auto",
    solver: Solver | None = None,
) -> PkResult:
    """Concentrations for a batch of patients.

    ``parameters``: scalars or arrays (n,) per symbol of ``model.parameter_names``; ``t_h``: output
    times (T,) shared or (n, T) per patient (closed form only). ``method``: ``"closed_form"``,
    ``"ode"`` or ``"auto"`` (closed form when it exists). Outputs at a dose time are taken just after
    the dose (right-continuous).
    """
    t = np.asarray(t_h, dtype=float)
    if t.ndim not in (1, 2) or t.size == 0 or not np.all(np.isfinite(t)):
        raise PharmacoInputError("t_h", "output times must be a non-empty finite 1-D or 2-D array")
    n_hint = t.shape[0] if t.ndim == 2 else None
    if schedule.amount_mg.ndim == 2:
        n_hint = schedule.amount_mg.shape[0]
    sizes = [np.atleast_1d(np.asarray(v)).shape[0] for v in parameters.values()]
    n = max([*sizes, n_hint or 1])
    p = model.parameters(parameters, n)
    if method == "auto":
        method = "closed_form" if model.has_closed_form else "ode"
    if method == "closed_form":
        return simulate_closed_form(model, p, schedule, t, n)
    if method == "ode":
        if t.ndim != 1:
            raise PharmacoInputError("t_h", "the ODE method needs output times shared by all patients (1-D)")
        return _simulate_ode(model, p, schedule, t, n, solver)
    raise PharmacoInputError("method", f"unknown method {method!r}; use 'closed_form', 'ode' or 'auto'")


def simulate_closed_form(
    model: CompartmentModel, p: Mapping[str, Array], schedule: DoseSchedule, t: Array, n: int
) -> PkResult:
    """The closed form on validated parameters (n,) each: the analytic fast path of the generic PK model."""
    if not model.has_closed_form:
        raise PharmacoInputError("method", "no closed form with transit compartments; use method='ode'")
    w, vec, vinv = _eigen(model.rate_matrix(p))
    obs = _observation_rows(model, vec)
    boluses, infusions, orals = _dose_inputs(model, p, schedule, n)
    out = _march(w, vinv, obs, boluses, infusions, t)
    if orals:
        out += _march(w, vinv, obs, orals, [], _lagged(t, p["tlag"]))
    conc = out[..., 0] / p["V1"][:, None]
    effect = out[..., 1] if model.effect_compartment else None
    return PkResult(t_h=t, concentration_mg_l=conc, effect_site_mg_l=effect)


def ode_system(
    model: CompartmentModel, p: Mapping[str, Array], schedule: DoseSchedule, n: int
) -> tuple[Array, list[float], Callable[[float, Array], Array]]:
    """Rate matrix, breakpoints and jump function of the PK part, for models that extend it.

    The state is the PK states followed by one input-rate state (mg/h into the central compartment).
    Returns ``(A, breakpoints, on_breakpoint)``.
    """
    a = model.rate_matrix(p)
    k = a.shape[1]
    boluses, infusions, orals = _dose_inputs(model, p, schedule, n)
    events: list[tuple[Array, int, Array]] = []  # (time per patient, compartment (k = rate), delta)
    for t, comp, amount in boluses:
        events.append((np.full(n, t), comp, amount))
    for start, end, comp, r in infusions:
        events.append((np.full(n, start), k, r))
        events.append((np.full(n, end), k, -r))
        del comp
    lag = p["tlag"] if model.absorption else np.zeros(n)
    for t, comp, amount in orals:
        events.append((t + lag, comp, amount))
    breakpoints = sorted({float(x) for times, _, _ in events for x in times})

    def on_breakpoint(tb: float, y: Array) -> Array:
        tol = 1e-12 * max(1.0, abs(tb))
        for times, comp, delta in events:
            hit = np.abs(times - tb) <= tol
            if np.any(hit):
                y[hit, comp] += delta[hit]
        return y

    return a, breakpoints, on_breakpoint


@cfunc(RHS_SIGNATURE, cache=True)
def _linear_rhs(t: float, y: Any, p: Any, u: Any, dy: Any) -> None:  # pragma: no cover - compiled
    """``dy = A y`` for one subject; ``p = [m, A (m x m) row-major]`` (the augmented rate matrix)."""
    m = int(p[0])
    for r in range(m):
        acc = 0.0
        for c in range(m):
            acc += p[1 + r * m + c] * y[c]
        dy[r] = acc


_LINEAR = CompiledModel(rhs=_linear_rhs, step_jump=no_jump, needs_stop=no_stop)


def _augmented(a: Array, central: int) -> Array:
    """Rows ``[m, A_aug]`` with the input-rate state appended (it feeds the central compartment): (n, 1 + m^2)."""
    n, k = a.shape[0], a.shape[1]
    aug = np.zeros((n, k + 1, k + 1))
    aug[:, :k, :k] = a
    aug[:, central, k] = 1.0
    return np.concatenate([np.full((n, 1), k + 1.0), aug.reshape(n, -1)], axis=1)


def _simulate_ode(
    model: CompartmentModel,
    p: Mapping[str, Array],
    schedule: DoseSchedule,
    t: Array,
    n: int,
    solver: Solver | None,
) -> PkResult:
    a, breakpoints, on_breakpoint = ode_system(model, p, schedule, n)
    k = a.shape[1]
    c = model.central_index
    start = min(0.0, float(t[0]), *(breakpoints[:1] or [0.0]))
    grid = np.unique(np.concatenate([[start], t]))
    chosen = solver or Dopri5(rtol=1e-10, atol=1e-12)
    if isinstance(chosen, Dopri5):
        record = np.array([c, k - 1] if model.effect_compartment else [c], dtype=np.int64)
        y = _compiled_ode(a, c, model, p, schedule, grid, chosen, record, on_breakpoint)
        pick = np.searchsorted(grid, t)
        conc = (y[pick, :, 0] / p["V1"][None, :]).T
        effect = y[pick, :, 1].T if model.effect_compartment else None
        return PkResult(t_h=t, concentration_mg_l=conc, effect_site_mg_l=effect)

    def rhs(_t: float, y: Array) -> Array:
        dy = np.zeros_like(y)
        dy[:, :k] = np.einsum("nij,nj->ni", a, y[:, :k])
        dy[:, c] += y[:, k]
        return dy

    sol = integrate(rhs, np.zeros((n, k + 1)), grid, solver=chosen, breakpoints=breakpoints,
                    on_breakpoint=on_breakpoint)
    ys = sol.y[np.searchsorted(grid, t)]  # (T, n, k+1)
    conc = (ys[:, :, c] / p["V1"][None, :]).T
    effect = ys[:, :, k - 1].T if model.effect_compartment else None
    return PkResult(t_h=t, concentration_mg_l=conc, effect_site_mg_l=effect)


def _compiled_ode(a: Array, central: int, model: CompartmentModel, p: Mapping[str, Array], schedule: DoseSchedule,
                  grid: Array, solver: Dopri5, record: NDArray[np.int64],
                  on_breakpoint: Callable[[float, Array], Array]) -> Array:
    """The compiled engine (a step size per subject, only the recorded columns at ``grid``): (len(grid), n, r).
    Doses strictly inside the grid are jumps inside the kernel; at its two ends ``on_breakpoint`` applies them."""
    n, k = a.shape[0], a.shape[1]
    times, state, delta = _dose_columns(model, p, schedule, n, k)
    doses = Doses.from_columns(times, state, delta)
    batch = BatchState.start(np.zeros((n, k + 1)), solver)
    out = np.empty((grid.size, n, record.size))
    t0, t1 = float(grid[0]), float(grid[-1])
    batch.y = on_breakpoint(t0, batch.y)
    out[0] = batch.y[:, record]
    if t1 > t0:
        advance(_LINEAR, batch, _augmented(a, central), np.array([t0]), np.zeros((n, 1, 1)), t0, t1, solver, grid,
                record, out, doses)
        batch.y = on_breakpoint(t1, batch.y)
        out[-1] = batch.y[:, record]
    return out


def _dose_columns(model: CompartmentModel, p: Mapping[str, Array], schedule: DoseSchedule, n: int, k: int
                  ) -> tuple[Array, NDArray[np.int64], Array]:
    """Every dose event as columns (times, state index, amount) per subject, as :func:`ode_system` applies them."""
    boluses, infusions, orals = _dose_inputs(model, p, schedule, n)
    lag = p["tlag"] if model.absorption else np.zeros(n)
    events = [(np.full(n, t), comp, amount) for t, comp, amount in boluses]
    for begin, end, _, rate in infusions:
        events += [(np.full(n, begin), k, rate), (np.full(n, end), k, -rate)]
    events += [(t + lag, comp, amount) for t, comp, amount in orals]
    if not events:
        return np.zeros((n, 0)), np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0))
    times = np.stack([e[0] for e in events], axis=1)
    state = np.tile(np.array([e[1] for e in events], dtype=np.int64), (n, 1))
    delta = np.stack([np.broadcast_to(e[2], (n,)) for e in events], axis=1)
    return times, state, delta


def steady_state(
    model: CompartmentModel,
    parameters: Mapping[str, ArrayLike],
    dose_mg: float,
    interval_h: float,
    route: Route,
    t_in_interval_h: ArrayLike,
    infusion_duration_h: float = 0.0,
) -> Array:
    """Central concentration (n, T) at steady state at times ``0 <= t < interval`` after a dose.

    Exact: the periodic solution of the linear system, ``z_ss = (I - e^{W tau})^{-1} (input over one
    interval)`` mode by mode.
    """
    if not interval_h > 0:
        raise PharmacoInputError("interval_h", f"must be > 0, got {interval_h}")
    if route is Route.IV_INFUSION and not 0 < infusion_duration_h <= interval_h:
        raise PharmacoInputError("infusion_duration_h", "must be > 0 and not longer than the interval")
    if not model.has_closed_form:
        raise PharmacoInputError("model", "steady_state needs a model without transit compartments")
    sizes = [np.atleast_1d(np.asarray(v)).shape[0] for v in parameters.values()]
    n = max(sizes)
    p = model.parameters(parameters, n)
    tau = float(interval_h)
    tt = np.asarray(t_in_interval_h, dtype=float)
    a = model.rate_matrix(p)
    k = a.shape[1]
    w, vec, vinv = _eigen(a)
    obs = _observation_rows(model, vec)[:, :1, :]
    c = model.central_index
    decay = np.exp(w * tau)
    if route is Route.IV_INFUSION:
        unit = np.zeros((n, k))
        unit[:, c] = dose_mg / infusion_duration_h
        rz = np.einsum("nij,nj->ni", vinv, unit)
        d = infusion_duration_h
        z_end = rz * _phi(w, np.full_like(w, d)) * np.exp(w * (tau - d))
        z0 = z_end / (1.0 - decay)
        local = tt[None, :, None]
        during = z0[:, None, :] * np.exp(w[:, None, :] * local) + rz[:, None, :] * np.expm1(
            w[:, None, :] * local
        ) / w[:, None, :]
        z_d = z0 * np.exp(w * d) + rz * _phi(w, np.full_like(w, d))
        after = z_d[:, None, :] * np.exp(w[:, None, :] * (local - d))
        zq = np.where(local < d, during, after)
        shifted = None
    else:
        unit = np.zeros((n, k))
        if route is Route.ORAL:
            unit[:, model.absorption_index] = dose_mg * p["F"]
            lag = p["tlag"]
        else:
            unit[:, c] = dose_mg
            lag = np.zeros(n)
        jz = np.einsum("nij,nj->ni", vinv, unit)
        z0 = jz / (1.0 - decay)
        shifted = np.mod(tt[None, :] - lag[:, None], tau)
        zq = z0[:, None, :] * np.exp(w[:, None, :] * shifted[..., None])
    conc = np.einsum("noi,nti->nto", obs, zq)[..., 0]
    return np.asarray(conc / p["V1"][:, None], dtype=float)
