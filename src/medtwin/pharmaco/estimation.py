"""Bayesian estimation: batched MAP (empirical Bayes) estimates of individual parameters, and a
population fit by the iterative two-stage method with posterior covariance (Steimer JL et al. 1984;
Prevost G. 1977), which approximates FOCE for rich data. All subjects are solved together: each
Gauss-Newton / Levenberg-Marquardt iteration is one batched model evaluation per parameter.

Parameters are log-normal: ``P_i = typical_i * exp(eta_i)``, ``eta ~ N(0, omega)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medtwin.arrays import Array
from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.pharmaco.population import ResidualError

Predictor = Callable[[Mapping[str, Array]], Array]  # parameters (n,) each -> predictions (n, m)


@dataclass(frozen=True)
class MapResult:
    """``eta`` (n, p), ``parameters`` (individual values), ``covariance`` (n, p, p) of eta (Laplace),
    ``objective`` (n,) -2 log posterior up to a constant, ``prediction`` (n, m)."""

    names: tuple[str, ...]
    eta: Array
    parameters: dict[str, Array]
    covariance: Array
    objective: Array
    prediction: Array
    jacobian: Array


def _individual(typical: Mapping[str, Array], names: Sequence[str], eta: Array) -> dict[str, Array]:
    out = {k: np.asarray(v, dtype=float) for k, v in typical.items()}
    for j, name in enumerate(names):
        out[name] = out[name] * np.exp(eta[:, j])
    return out


def map_estimate(
    predict: Predictor,
    typical: Mapping[str, Array],
    names: Sequence[str],
    omega: Array,
    residual: ResidualError,
    observed: Array,
    mask: Array | None = None,
    eta0: Array | None = None,
    max_iterations: int = 100,
    step: float = 1e-5,
) -> MapResult:
    """Maximum a posteriori eta for every subject at once (Levenberg-Marquardt per subject).

    ``observed`` (n, m) with ``mask`` (n, m) True where a level was measured. The residual SD is
    evaluated at the current prediction (iteratively reweighted).
    """
    y = np.asarray(observed, dtype=float)
    n, m = y.shape
    w = np.ones_like(y, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if w.shape != y.shape:
        raise PharmacoInputError("mask", f"must have the shape of observed {y.shape}")
    y = np.where(w, y, 0.0)
    p = len(names)
    omega = np.asarray(omega, dtype=float)
    if omega.shape != (p, p):
        raise PharmacoInputError("omega", f"must be {p}x{p}")
    whiten = np.linalg.inv(np.linalg.cholesky(omega))  # L^{-1}
    eta = np.zeros((n, p)) if eta0 is None else np.array(eta0, dtype=float)

    def residuals(e: Array, sd: Array | None = None) -> tuple[Array, Array, Array]:
        f = np.asarray(predict(_individual(typical, names, e)), dtype=float)
        s = residual.sd(f) if sd is None else sd
        r_obs = np.where(w, (y - f) / s, 0.0)
        r_prior = e @ whiten.T
        return np.concatenate([r_obs, r_prior], axis=1), f, s

    def jacobian(e: Array, r: Array, sd: Array) -> Array:
        """(n, m + p, p) forward differences of the residuals at ``e`` (residuals ``r``, SD held at ``sd``)."""
        jac = np.zeros((n, m + p, p))
        for j in range(p):
            e2 = e.copy()
            e2[:, j] += step
            r2, _, _ = residuals(e2, sd)
            jac[:, :, j] = (r2 - r) / step
        return jac

    lam = np.full(n, 1e-2)
    r, f, sd = residuals(eta)
    obj = np.sum(r * r, axis=1)
    for _ in range(max_iterations):
        jac = jacobian(eta, r, sd)
        jtj = np.einsum("nkp,nkq->npq", jac, jac)
        jtr = np.einsum("nkp,nk->np", jac, r)
        diag = np.einsum("npp->np", jtj)
        system = jtj + lam[:, None, None] * np.einsum("np,pq->npq", np.maximum(diag, 1e-12), np.eye(p))
        delta = -np.linalg.solve(system, jtr[..., None])[..., 0]
        delta = np.clip(delta, -2.0, 2.0)
        trial = eta + delta
        r_t, f_t, sd_t = residuals(trial)
        obj_t = np.sum(r_t * r_t, axis=1)
        better = obj_t < obj
        eta = np.where(better[:, None], trial, eta)
        r = np.where(better[:, None], r_t, r)
        f = np.where(better[:, None], f_t, f)
        sd = np.where(better[:, None], sd_t, sd)
        gain = np.where(better, obj - obj_t, 0.0)
        obj = np.where(better, obj_t, obj)
        lam = np.where(better, np.maximum(lam / 5.0, 1e-7), np.minimum(lam * 10.0, 1e7))
        converged = np.where(better, gain < 1e-10 * (1.0 + obj), lam >= 1e5)
        if np.all(converged):
            break
    jac = jacobian(eta, r, sd)
    information = np.einsum("nkp,nkq->npq", jac, jac)
    covariance = np.linalg.inv(information + 1e-12 * np.eye(p))
    objective = obj + 2.0 * np.sum(np.where(w, np.log(sd), 0.0), axis=1)
    return MapResult(tuple(names), eta, _individual(typical, names, eta), covariance, objective, f, jac[:, :m, :])


@dataclass
class IterativeTwoStage:
    """Population fit (typical values, omega, additive residual SD) by the iterative two-stage method.

    Follows the scikit-learn habit: configuration here, :meth:`fit` returns self, results end in ``_``.
    """

    names: tuple[str, ...]
    initial: Mapping[str, float]
    initial_omega: Sequence[float]
    initial_additive_sd: float = 1.0
    n_iterations: int = 80

    def fit(self, predict: Predictor, observed: Array, mask: Array) -> IterativeTwoStage:
        y = np.asarray(observed, dtype=float)
        n = y.shape[0]
        w = np.asarray(mask, dtype=bool)
        log_typical = np.log(np.array([self.initial[k] for k in self.names], dtype=float))
        omega = np.diag(np.asarray(self.initial_omega, dtype=float))
        sigma = float(self.initial_additive_sd)
        eta: Array | None = None
        n_obs = int(w.sum())
        for _ in range(self.n_iterations):
            typical = {k: np.full(n, np.exp(log_typical[j])) for j, k in enumerate(self.names)}
            result = map_estimate(predict, typical, self.names, omega, ResidualError(additive_sd=sigma), y, w, eta0=eta)
            shift = result.eta.mean(axis=0)
            log_typical = log_typical + shift
            eta = result.eta - shift
            omega = (eta.T @ eta + result.covariance.sum(axis=0)) / n
            omega = 0.5 * (omega + omega.T) + 1e-10 * np.eye(len(self.names))
            resid = np.where(w, y - result.prediction, 0.0)
            # expected squared residual includes the posterior uncertainty of the prediction
            jac_f = -result.jacobian * sigma  # d f / d eta (the residual Jacobian was scaled by 1/sd)
            spread = np.einsum("nmp,npq,nmq->nm", jac_f, result.covariance, jac_f)
            sigma = float(np.sqrt(np.sum(resid**2 + np.where(w, spread, 0.0)) / n_obs))
        self.typical_ = {k: float(np.exp(log_typical[j])) for j, k in enumerate(self.names)}
        self.omega_ = omega
        self.additive_sd_ = sigma
        self.eta_ = eta if eta is not None else np.zeros((n, len(self.names)))
        return self
