"""Treatment effects on tumour volume: chemotherapy log-kill (Norton-Simon), sensitive/resistant
populations, radiotherapy by the linear-quadratic model with repopulation, and BED/EQD2 arithmetic.

* Norton-Simon (Norton & Simon 1977, Cancer Treat Rep 61:1307): the kill rate is proportional to the
  unperturbed growth rate; on Gompertz growth ``dV/dt = w V ln(K/V) (1 - e c(t))`` with ``c`` the
  exposure (0 off, 1 on chemotherapy). Closed form for piecewise-constant ``c``:
  ``ln(V/K) = ln(v0/K) exp(-w (t - e int c))``.
* Log-kill (Skipper 1964): ``dV/dt = g(V) - k c(t) V``; with exponential growth ``V = v0 exp(a t - k int c)``.
* Two populations (Goldie & Coldman 1979): sensitive ``S`` and resistant ``R`` share a logistic carrying
  capacity, only ``S`` is killed: ``dS/dt = r S (1 - (S+R)/K) - k c S``, ``dR/dt = r R (1 - (S+R)/K)``.
* Radiotherapy, linear-quadratic (Fowler 1989, Br J Radiol 62:679): a fraction of ``d`` Gy leaves the
  surviving fraction ``exp(-alpha d - beta d^2)``; between fractions the clonogens repopulate exponentially
  with doubling time ``Tpot`` after the kick-off time ``Tk``.
* ``BED = n d (1 + d / (alpha/beta))``; ``EQD2 = BED / (1 + 2 / (alpha/beta))``; with repopulation
  ``BED - ln 2 (T - Tk) / (alpha Tpot)`` for an overall time ``T > Tk``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medtwin.arrays import Array


def _exposure_integral(t: Array, on: Array, off: Array) -> Array:
    """int_0^t c(s) ds for c = 1 on the intervals [on_i, off_i): (T,)."""
    t = np.asarray(t, dtype=float)[:, None]
    return np.asarray(np.sum(np.clip(np.minimum(t, off[None, :]) - on[None, :], 0.0, None), axis=1),
                      dtype=float)


def norton_simon_gompertz(v0: float, k: float, omega: float, effect: float, t: Array,
                          on: Array, off: Array) -> Array:
    """Closed-form volume (T,) of Gompertz growth under Norton-Simon kill during [on, off) intervals."""
    exposure = _exposure_integral(t, np.asarray(on, float), np.asarray(off, float))
    return np.asarray(k * np.exp(math.log(v0 / k) * np.exp(-omega * (np.asarray(t) - effect * exposure))),
                      dtype=float)


def norton_simon_rhs(omega: float, k: float, effect: float, c: float, v: float) -> float:
    return omega * v * math.log(k / v) * (1.0 - effect * c)


def log_kill_exponential(v0: float, a: float, kill: float, t: Array, on: Array, off: Array) -> Array:
    """Closed-form volume (T,) of exponential growth with first-order log-kill ``kill`` (1/d) on therapy."""
    exposure = _exposure_integral(t, np.asarray(on, float), np.asarray(off, float))
    return np.asarray(v0 * np.exp(a * np.asarray(t) - kill * exposure), dtype=float)


def two_population_rhs(y: Array, r: float, k: float, kill: float, c: float) -> Array:
    """d(S, R)/dt for states ``y`` (..., 2)."""
    total = y[..., 0] + y[..., 1]
    crowd = 1.0 - total / k
    return np.stack([r * y[..., 0] * crowd - kill * c * y[..., 0], r * y[..., 1] * crowd], axis=-1)


@dataclass(frozen=True)
class Fractionation:
    """A radiotherapy schedule: ``total_gy`` in ``fractions``, over ``overall_days`` (treatment time)."""

    total_gy: float
    fractions: int
    overall_days: float = 0.0

    def __post_init__(self) -> None:
        if not (self.total_gy > 0 and self.fractions >= 1 and self.overall_days >= 0):
            raise ValueError("a schedule needs total_gy > 0, fractions >= 1 and overall_days >= 0")

    @property
    def dose_per_fraction(self) -> float:
        return self.total_gy / self.fractions


def bed(schedule: Fractionation, alpha_beta: float, *, alpha: float | None = None,
        t_pot_days: float | None = None, kickoff_days: float = 0.0) -> float:
    """Biologically effective dose (Gy); minus the repopulation term when ``alpha`` and ``t_pot_days``
    are given and the schedule lasts beyond ``kickoff_days``."""
    if alpha_beta <= 0:
        raise ValueError("alpha_beta must be > 0")
    d = schedule.dose_per_fraction
    value = schedule.total_gy * (1.0 + d / alpha_beta)
    if alpha is not None and t_pot_days is not None:
        value -= math.log(2.0) * max(schedule.overall_days - kickoff_days, 0.0) / (alpha * t_pot_days)
    return value


def eqd2(schedule: Fractionation, alpha_beta: float, **repopulation: float) -> float:
    """Equivalent dose in 2 Gy fractions (Gy)."""
    return bed(schedule, alpha_beta, **repopulation) / (1.0 + 2.0 / alpha_beta)


def lq_surviving_fraction(dose_gy: Array, alpha: float, beta: float) -> Array:
    d = np.asarray(dose_gy, dtype=float)
    return np.asarray(np.exp(-alpha * d - beta * d * d), dtype=float)


def radiotherapy_volume(v0: float, schedule: Fractionation, alpha: float, beta: float, t_pot_days: float,
                        kickoff_days: float, t: Array) -> Array:
    """Clonogen volume (T,) under a schedule with fractions evenly spread over its overall time (the first
    on day 0): LQ kill at each fraction, exponential repopulation after ``kickoff_days``."""
    n = schedule.fractions
    times = np.linspace(0.0, schedule.overall_days, n) if n > 1 else np.zeros(1)
    t = np.asarray(t, dtype=float)
    given = (times[None, :] <= t[:, None]).sum(axis=1)
    kill = given * (alpha * schedule.dose_per_fraction + beta * schedule.dose_per_fraction ** 2)
    regrowth = math.log(2.0) / t_pot_days * np.clip(t - kickoff_days, 0.0, None)
    return np.asarray(v0 * np.exp(regrowth - kill), dtype=float)
