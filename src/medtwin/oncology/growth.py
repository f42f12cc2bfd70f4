"""Tumour growth laws: closed-form volume curves, their ODE right-hand sides, and fitting transforms.

Seven laws of Benzekry et al. 2014 (PLoS Comput Biol 10:e1003800) and Laleh et al. 2022 (PLoS Comput Biol
18:e1009822), volume ``V`` in mm^3 (or any volume unit, the curves are homogeneous), time in days:

* ``exponential``      dV/dt = a V                                 V = v0 exp(a t)
* ``logistic``         dV/dt = w V (1 - V/K)                        generalised Bertalanffy with lam = -1
* ``gompertz``         dV/dt = w V ln(K/V)                          the limit lam -> 0
* ``bertalanffy``      dV/dt = 3 w K^(1/3) V^(2/3) - 3 w V          lam = 1/3 (classical von Bertalanffy)
* ``gen_bertalanffy``  dV/dt = (w/lam) V ((V/K)^(-lam) - 1)         V = K (1 + ((v0/K)^lam - 1) e^(-w t))^(1/lam)
* ``exp_linear``       dV/dt = min(a0 V, a1) (a0 > 0), a0 V else    Simeoni et al. 2004, Cancer Res 64:1094
* ``power_law``        dV/dt = a V^g, 0 < g < 1                     V = (v0^(1-g) + (1-g) a t)^(1/(1-g)), >= 0

Every law is written for a batch: parameters ``(n, P)`` and times ``(n, T)`` (or ``(T,)``) give ``(n, T)``.
A fitted law runs on *unconstrained* coordinates ``theta`` (logs of positive quantities, a logit for the
power-law exponent) so a Gauss-Newton step never leaves the valid range: :func:`from_theta` maps them to
the natural parameters in the order of :data:`LAWS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtwin.arrays import Array


@dataclass(frozen=True)
class GrowthLaw:
    name: str
    parameters: tuple[str, ...]
    units: tuple[str, ...]  # "V" is the volume unit, "d" days
    description: str

    @property
    def n_parameters(self) -> int:
        return len(self.parameters)


LAWS: dict[str, GrowthLaw] = {law.name: law for law in (
    GrowthLaw("exponential", ("v0", "a"), ("V", "1/d"), "unbounded exponential growth or decay"),
    GrowthLaw("logistic", ("v0", "K", "omega"), ("V", "V", "1/d"), "logistic (Verhulst) growth to K"),
    GrowthLaw("gompertz", ("v0", "K", "omega"), ("V", "V", "1/d"), "Gompertz growth to K"),
    GrowthLaw("bertalanffy", ("v0", "K", "omega"), ("V", "V", "1/d"), "classical von Bertalanffy (lam = 1/3)"),
    GrowthLaw("gen_bertalanffy", ("v0", "K", "omega", "lam"), ("V", "V", "1/d", "1"),
              "generalised Bertalanffy (Richards); lam = -1 logistic, 0 Gompertz, 1/3 classical"),
    GrowthLaw("exp_linear", ("v0", "a0", "a1"), ("V", "1/d", "V/d"), "exponential then linear (Simeoni 2004)"),
    GrowthLaw("power_law", ("v0", "a_pl", "gamma"), ("V", "V^(1-gamma)/d", "1"), "power law, 0 < gamma < 1"),
)}
FIXED_LAMBDA = {"logistic": -1.0, "gompertz": 0.0, "bertalanffy": 1.0 / 3.0}
_SMALL_LAMBDA = 1e-6


def law(name: str) -> GrowthLaw:
    try:
        return LAWS[name]
    except KeyError:
        raise ValueError(f"unknown growth model {name!r}; known: {', '.join(LAWS)}") from None


def _richards(v0: Array, k: Array, omega: Array, lam: Array, t: Array) -> Array:
    """V = K (1 + expm1(lam r) e^(-w t))^(1/lam), r = ln(v0/K); the Gompertz limit taken for small |lam|."""
    r = np.log(v0 / k)
    decay = np.exp(-omega * t)
    small = np.abs(lam) < _SMALL_LAMBDA
    safe = np.where(small, 1.0, lam)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # log(1 + (e^(lam r) - 1) e^(-w t)) = log(e^(lam r - w t) + (1 - e^(-w t))): two positive terms, no
        # cancellation (exact v0 at t = 0 however far v0 is from K)
        general = np.logaddexp(safe * r - omega * t, np.log(-np.expm1(-omega * t))) / safe
    log_ratio = np.where(small, r * decay, general)
    return np.asarray(k * np.exp(np.clip(log_ratio, -700.0, 700.0)), dtype=float)


def volume(name: str, p: Array, t: Array) -> Array:
    """Closed-form volume (n, T) of law ``name`` for natural parameters ``p`` (n, P) at times ``t``."""
    p = np.asarray(p, dtype=float)
    t = np.asarray(t, dtype=float)
    col = [p[:, j:j + 1] for j in range(p.shape[1])]
    v0 = col[0]
    if name == "exponential":
        return np.asarray(v0 * np.exp(np.clip(col[1] * t, -700.0, 700.0)), dtype=float)
    if name in FIXED_LAMBDA:
        return _richards(v0, col[1], col[2], np.full_like(v0, FIXED_LAMBDA[name]), t)
    if name == "gen_bertalanffy":
        return _richards(v0, col[1], col[2], col[3], t)
    if name == "exp_linear":
        return _exp_linear(v0, col[1], col[2], t)
    if name == "power_law":
        one_minus = 1.0 - col[2]
        base = np.maximum(v0 ** one_minus + one_minus * col[1] * t, 0.0)
        return np.asarray(base ** (1.0 / one_minus), dtype=float)
    raise ValueError(f"unknown growth model {name!r}; known: {', '.join(LAWS)}")


def _exp_linear(v0: Array, a0: Array, a1: Array, t: Array) -> Array:
    growing = a0 > 0
    safe_a0 = np.where(growing, a0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(growing, np.maximum(np.log(a1 / (safe_a0 * v0)) / safe_a0, 0.0), np.inf)
    exponential = v0 * np.exp(np.clip(a0 * np.minimum(t, tau), -700.0, 700.0))
    linear = np.where(growing, v0 * np.exp(np.clip(safe_a0 * np.minimum(tau, 1e6), -700.0, 300.0)), 0.0)
    linear = linear + a1 * (t - tau)
    return np.asarray(np.where(t <= tau, exponential, linear), dtype=float)


def rate(name: str, p: Array, v: Array) -> Array:
    """dV/dt (n, k) of law ``name`` at volumes ``v`` (n, k): the ODE the closed forms solve."""
    col = [p[:, j:j + 1] for j in range(p.shape[1])]
    v = np.maximum(v, 1e-300)
    if name == "exponential":
        return np.asarray(col[1] * v, dtype=float)
    lam = FIXED_LAMBDA.get(name)
    if name in FIXED_LAMBDA or name == "gen_bertalanffy":
        lam_col = col[3] if lam is None else np.full_like(col[0], lam)
        k, omega = col[1], col[2]
        small = np.abs(lam_col) < _SMALL_LAMBDA
        safe = np.where(small, 1.0, lam_col)
        general = (omega / safe) * v * ((v / k) ** (-safe) - 1.0)
        return np.asarray(np.where(small, omega * v * np.log(k / v), general), dtype=float)
    if name == "exp_linear":
        a0, a1 = col[1], col[2]
        return np.asarray(np.where(a0 > 0, np.minimum(a0 * v, a1), a0 * v), dtype=float)
    if name == "power_law":
        return np.asarray(col[1] * v ** col[2], dtype=float)
    raise ValueError(f"unknown growth model {name!r}; known: {', '.join(LAWS)}")


def _constrained(name: str) -> tuple[list[int], list[int]]:
    """The columns ``theta`` keeps positive (through log) and in (0, 1) (through logit); the rest are as is."""
    if name in FIXED_LAMBDA or name == "gen_bertalanffy":
        return [0, 1, 2], []
    if name == "exp_linear":
        return [0, 2], []
    if name == "power_law":
        return [0], [2]
    return [0], []


def from_theta(name: str, theta: Array) -> Array:
    """Natural parameters (n, P) from unconstrained ``theta`` (n, P)."""
    positive, unit = _constrained(name)
    p = np.array(theta, dtype=float, copy=True)
    p[:, positive] = np.exp(theta[:, positive])
    p[:, unit] = 1.0 / (1.0 + np.exp(-theta[:, unit]))
    return p


def to_theta(name: str, p: Array) -> Array:
    """Inverse of :func:`from_theta`."""
    positive, unit = _constrained(name)
    theta = np.array(p, dtype=float, copy=True)
    theta[:, positive] = np.log(p[:, positive])
    theta[:, unit] = np.log(p[:, unit] / (1.0 - p[:, unit]))
    return theta


def rescale(name: str, p: Array, scale: Array) -> Array:
    """Natural parameters fitted on volumes divided by ``scale`` (n,) back in the original volume unit."""
    out = np.array(p, dtype=float, copy=True)
    s = np.asarray(scale, dtype=float)
    out[:, 0] *= s
    if name in FIXED_LAMBDA or name == "gen_bertalanffy":
        out[:, 1] *= s
    elif name == "exp_linear":
        out[:, 2] *= s
    elif name == "power_law":
        out[:, 1] *= s ** (1.0 - p[:, 2])
    return out
