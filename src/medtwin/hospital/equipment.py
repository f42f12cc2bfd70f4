"""Equipment twin: a device's remaining useful life (RUL) from two sources.

* Fleet reliability: a Weibull accelerated-failure-time model, ``log T = x'beta + sigma W`` with W the
  standard minimum extreme-value law (so T is Weibull with scale exp(x'beta), shape 1/sigma), fitted by
  maximum likelihood with right censoring (a device still working). Validated against lifelines'
  ``WeibullAFTFitter`` on ``survival::imotor`` (motorette insulation life by temperature) in the tests.
  RUL at age a: the conditional median, ``(a^k + lam^k ln 2)^(1/k) - a``.
* The device's own telemetry: a degradation signal (vibration, tube current drift, occlusion pressure...)
  tracked by a local-linear-trend Kalman filter (level and slope); failure is the signal crossing its
  threshold, RUL = (threshold - level) / slope while the slope is positive. The health indicator is
  1 - level / threshold, clipped to [0, 1].

Times are hours of operation. The tests report RMSE of both on generated run-to-failure telemetry with known
failure times. Not built yet: MQTT telemetry through the ingest, maintenance alerts, downtime as capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from medtwin.errors import InputError


class EquipmentInputError(InputError):
    """Bad reliability or telemetry input; ``field`` names it."""


@dataclass(frozen=True)
class WeibullAft:
    """``beta`` (intercept first) on log time, ``sigma`` the scale of log time (shape k = 1 / sigma)."""

    beta: np.ndarray
    sigma: float
    covariance: np.ndarray

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Weibull scale lambda (hours) for covariate rows ``x`` (no intercept column)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        return np.asarray(np.exp(self.beta[0] + x @ self.beta[1:]))

    def remaining_life(self, age_h: np.ndarray, x: np.ndarray, quantile: float = 0.5) -> np.ndarray:
        """Conditional ``quantile`` of remaining life given survival to ``age_h``."""
        k = 1.0 / self.sigma
        lam = self.scale(x)
        age = np.asarray(age_h, dtype=float)
        return np.asarray((age**k + lam**k * -np.log1p(-quantile)) ** (1.0 / k) - age)


def _design(time: np.ndarray, event: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=float)
    d = np.asarray(event, dtype=bool)
    z = np.column_stack([np.ones(t.size), np.asarray(x, dtype=float).reshape(t.size, -1)])
    if t.size < 3 or np.any(~(t > 0)) or not np.all(np.isfinite(t)):
        raise EquipmentInputError("time", "at least 3 positive, finite times")
    if d.sum() < 2:
        raise EquipmentInputError("event", f"{int(d.sum())} failures: too few to fit a Weibull model")
    return np.log(t), d, z


def fit_weibull_aft(time: np.ndarray, event: np.ndarray, x: np.ndarray) -> WeibullAft:
    """Maximum likelihood with right censoring (``event`` False = still working at ``time``)."""
    y, d, z = _design(time, event, x)
    scale = z[:, 1:].std(axis=0) if z.shape[1] > 1 else np.array([])
    scale[scale == 0] = 1.0
    zs = z.copy()
    zs[:, 1:] = (z[:, 1:] - z[:, 1:].mean(axis=0)) / scale  # standardised for the optimiser

    def nll(theta: np.ndarray) -> float:
        log_sigma = theta[-1]
        w = (y - zs @ theta[:-1]) / np.exp(log_sigma)
        return float(-(np.sum(w[d] - log_sigma) - np.sum(np.exp(w))))

    start = np.zeros(zs.shape[1] + 1)
    start[0] = y.mean()
    result = optimize.minimize(nll, start, method="BFGS")
    if not result.success and not np.isfinite(result.fun):
        raise EquipmentInputError("time", f"the fit did not converge: {result.message}")
    beta_s, sigma = result.x[:-1], float(np.exp(result.x[-1]))
    beta = beta_s.copy()
    if z.shape[1] > 1:  # back to the original covariates
        beta[1:] = beta_s[1:] / scale
        beta[0] = beta_s[0] - np.sum(beta[1:] * z[:, 1:].mean(axis=0))
    return WeibullAft(beta, sigma, np.asarray(result.hess_inv))


@dataclass(frozen=True)
class DegradationState:
    level: float
    slope_per_h: float
    health: float
    rul_h: float  # inf while the signal is not rising


def track_degradation(times_h: np.ndarray, signal: np.ndarray, threshold: float, noise_sd: float,
                      slope_sd_per_h: float = 1e-6) -> DegradationState:
    """Local-linear-trend Kalman filter over the telemetry; the state after the last sample.
    ``slope_sd_per_h`` is the slope's random-walk density: small for wear that changes pace slowly (1e-4
    lets the slope wander by its own size in a day and the RUL goes unstable; see the test)."""
    t = np.asarray(times_h, dtype=float)
    y = np.asarray(signal, dtype=float)
    if t.size < 2 or t.size != y.size or np.any(np.diff(t) <= 0):
        raise EquipmentInputError("times_h", "at least 2 samples, increasing times, one signal value each")
    if not threshold > 0 or not noise_sd > 0:
        raise EquipmentInputError("threshold", "threshold and noise_sd must be > 0")
    state = np.array([y[0], 0.0])
    cov = np.diag([noise_sd**2, (10 * slope_sd_per_h) ** 2 + 1e-6])
    h = np.array([[1.0, 0.0]])
    for i in range(1, t.size):
        dt = t[i] - t[i - 1]
        f = np.array([[1.0, dt], [0.0, 1.0]])
        q = slope_sd_per_h**2 * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
        state, cov = f @ state, f @ cov @ f.T + q
        gain = cov @ h.T / (h @ cov @ h.T + noise_sd**2)
        state = state + (gain * (y[i] - state[0])).ravel()
        cov = (np.eye(2) - gain @ h) @ cov
    level, slope = float(state[0]), float(state[1])
    rul = (threshold - level) / slope if slope > 0 else float("inf")
    return DegradationState(level, slope, float(np.clip(1 - level / threshold, 0, 1)), max(rul, 0.0))


def generate_fleet(n: int, rng: np.random.Generator, threshold: float = 1.0, noise_sd: float = 0.02,
                   sample_every_h: float = 24.0) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Run-to-failure telemetry with known failure times: each device degrades linearly at its own rate
    (lognormal around 1 / 2000 h) from a small random start; it fails when the true level crosses
    ``threshold``. Returns failure times and per device (times, noisy signal) up to failure."""
    rate = np.exp(rng.normal(np.log(1 / 2000.0), 0.35, n))
    start = rng.uniform(0.0, 0.1, n)
    fail = (threshold - start) / rate
    series = []
    for i in range(n):
        t = np.arange(0.0, fail[i], sample_every_h)
        series.append((t, start[i] + rate[i] * t + rng.normal(0, noise_sd, t.size)))
    return fail, series
