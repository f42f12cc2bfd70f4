"""Pharmacodynamics: Emax / sigmoid Emax, effect compartment (in :mod:`pk`), the four indirect-response
models (Dayneka NL, Garg V, Jusko WJ. Comparison of four basic models of indirect pharmacodynamic
responses. J Pharmacokinet Biopharm 1993;21:457-478), and the warfarin INR transit model of
Hamberg et al. 2007 (Clin Pharmacol Ther 81:529-538), all coupled to PK in one batched ODE solve."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from medtwin.arrays import Array
from medtwin.pharmaco.dosing import DoseSchedule
from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.pharmaco.pk import CompartmentModel, ode_system
from medtwin.solve import Dopri5, Solver, integrate


def emax_effect(
    concentration: ArrayLike, e0: ArrayLike, emax: ArrayLike, ec50: ArrayLike, hill: ArrayLike = 1.0
) -> Array:
    """Sigmoid Emax: ``E = E0 + Emax C^h / (EC50^h + C^h)`` (``hill = 1``: the hyperbolic Emax model)."""
    c = np.clip(np.asarray(concentration, dtype=float), 0.0, None)
    h = np.asarray(hill, dtype=float)
    ch = c**h
    return np.asarray(np.asarray(e0) + np.asarray(emax) * ch / (np.asarray(ec50, dtype=float) ** h + ch), dtype=float)


def _fraction(c: Array, maximum: Array, c50: Array, hill: Array) -> Array:
    ch = np.clip(c, 0.0, None) ** hill
    return np.asarray(maximum * ch / (c50**hill + ch), dtype=float)


def indirect_response_rate(
    kind: int, response: Array, concentration: Array, p: Mapping[str, ArrayLike]
) -> Array:
    """dR/dt of indirect-response model ``kind`` (1-4, Dayneka 1993).

    I: inhibition of kin; II: inhibition of kout; III: stimulation of kin; IV: stimulation of kout.
    ``p``: ``kin`` [response unit/h], ``kout`` [1/h], ``maximum`` (Imax <= 1 or Emax), ``c50`` [mg/L],
    ``hill`` (default 1).
    """
    kin = np.asarray(p["kin"], dtype=float)
    kout = np.asarray(p["kout"], dtype=float)
    hill = np.asarray(p.get("hill", 1.0), dtype=float)
    drug = _fraction(concentration, np.asarray(p["maximum"], dtype=float), np.asarray(p["c50"], dtype=float), hill)
    if kind == 1:
        return np.asarray(kin * (1.0 - drug) - kout * response, dtype=float)
    if kind == 2:
        return np.asarray(kin - kout * (1.0 - drug) * response, dtype=float)
    if kind == 3:
        return np.asarray(kin * (1.0 + drug) - kout * response, dtype=float)
    if kind == 4:
        return np.asarray(kin - kout * (1.0 + drug) * response, dtype=float)
    raise PharmacoInputError("kind", f"indirect-response model must be 1, 2, 3 or 4, got {kind}")


def indirect_response_steady_state(kind: int, concentration: ArrayLike, p: Mapping[str, ArrayLike]) -> Array:
    """Analytic steady state of the indirect-response model at constant concentration."""
    c = np.asarray(concentration, dtype=float)
    kin, kout = np.asarray(p["kin"], dtype=float), np.asarray(p["kout"], dtype=float)
    drug = _fraction(c, np.asarray(p["maximum"], dtype=float), np.asarray(p["c50"], dtype=float),
                     np.asarray(p.get("hill", 1.0), dtype=float))
    factor = {1: 1.0 - drug, 2: 1.0 / (1.0 - drug), 3: 1.0 + drug, 4: 1.0 / (1.0 + drug)}.get(kind)
    if factor is None:
        raise PharmacoInputError("kind", f"indirect-response model must be 1, 2, 3 or 4, got {kind}")
    return np.asarray(kin / kout * factor, dtype=float)


@dataclass(frozen=True)
class PkPdResult:
    """``t_h`` (T,), ``concentration_mg_l`` (n, T), ``response`` (n, T), ``pd_states`` (n, T, m)."""

    t_h: Array
    concentration_mg_l: Array
    response: Array
    pd_states: Array


PdRate = Callable[[Array, Array], Array]  # (C (n,), pd states (n, m)) -> d pd states / dt


def simulate_pkpd(
    model: CompartmentModel,
    pk_parameters: Mapping[str, Array],
    schedule: DoseSchedule,
    t_h: ArrayLike,
    pd_rate: PdRate,
    pd_initial: Array,
    response: Callable[[Array], Array],
    solver: Solver | None = None,
) -> PkPdResult:
    """Integrate PK (linear, from :func:`medtwin.pharmaco.pk.ode_system`) and PD states in one batch."""
    t = np.asarray(t_h, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise PharmacoInputError("t_h", "output times must be a non-empty 1-D array")
    n = pd_initial.shape[0]
    p = model.parameters(pk_parameters, n)
    a, breakpoints, on_breakpoint = ode_system(model, p, schedule, n)
    k = a.shape[1]
    c_idx = model.central_index
    v1 = p["V1"]

    def rhs(_t: float, y: Array) -> Array:
        dy = np.empty_like(y)
        dy[:, :k] = np.einsum("nij,nj->ni", a, y[:, :k])
        dy[:, c_idx] += y[:, k]
        dy[:, k] = 0.0
        dy[:, k + 1 :] = pd_rate(y[:, c_idx] / v1, y[:, k + 1 :])
        return dy

    start = min(0.0, float(t[0]))
    grid = np.unique(np.concatenate([[start], t]))
    y0 = np.concatenate([np.zeros((n, k + 1)), pd_initial], axis=1)
    sol = integrate(rhs, y0, grid, solver=solver or Dopri5(rtol=1e-7, atol=1e-9), breakpoints=breakpoints,
                    on_breakpoint=on_breakpoint)
    y = sol.y[np.searchsorted(grid, t)]  # (T, n, s)
    conc = (y[:, :, c_idx] / v1[None, :]).T
    pd_states = np.transpose(y[:, :, k + 1 :], (1, 0, 2))
    return PkPdResult(t_h=t, concentration_mg_l=conc, response=response(pd_states), pd_states=pd_states)


# ---- warfarin INR (Hamberg 2007) -------------------------------------------------------------------

WARFARIN_PD_NAMES = ("EC50", "gamma", "MTT1", "MTT2", "lambda", "INRmax", "INRbase")


def warfarin_inr_rate(p: Mapping[str, Array]) -> PdRate:
    """Transit-compartment INR model: 6 compartments with ktr1 = 6/MTT1 and 1 with ktr2 = 1/MTT2, both
    fed by (1 - E(C)), E = C^gamma / (EC50^gamma + C^gamma) (Emax = 1)."""
    ktr1 = 6.0 / p["MTT1"]
    ktr2 = 1.0 / p["MTT2"]
    ec50g = p["EC50"] ** p["gamma"]
    gamma = p["gamma"]

    def rate(c: Array, a: Array) -> Array:
        cg = np.clip(c, 0.0, None) ** gamma
        inhibition = cg / (ec50g + cg)
        d = np.empty_like(a)
        d[:, 0] = ktr1 * (1.0 - inhibition) - ktr1 * a[:, 0]
        d[:, 1:6] = ktr1[:, None] * (a[:, 0:5] - a[:, 1:6])
        d[:, 6] = ktr2 * (1.0 - inhibition) - ktr2 * a[:, 6]
        return d

    return rate


def warfarin_inr(p: Mapping[str, Array]) -> Callable[[Array], Array]:
    """INR = INRbase + INRmax (1 - A6 A7)^lambda from the PD states (n, T, 7)."""

    def inr(states: Array) -> Array:
        prod = np.clip(1.0 - states[..., 5] * states[..., 6], 0.0, None)
        return np.asarray(
            p["INRbase"][:, None] + p["INRmax"][:, None] * prod ** p["lambda"][:, None], dtype=float
        )

    return inr


def warfarin_inr_steady_state(concentration: ArrayLike, p: Mapping[str, ArrayLike]) -> Array:
    """Analytic steady-state INR at a constant S-warfarin concentration: A6 = A7 = 1 - E(C)."""
    c = np.asarray(concentration, dtype=float)
    g = np.asarray(p["gamma"], dtype=float)
    e = c**g / (np.asarray(p["EC50"], dtype=float) ** g + c**g)
    return np.asarray(
        np.asarray(p["INRbase"]) + np.asarray(p["INRmax"]) * (1.0 - (1.0 - e) ** 2) ** np.asarray(p["lambda"]),
        dtype=float,
    )
