"""Growth-law fits for many lesions at once: batched Levenberg-Marquardt MAP in numpy.

All lesions of one law are fitted together: measurements are padded to ``(L, T)`` with a mask, the Jacobian
is one forward difference per parameter on the whole batch, and each lesion keeps its own damping, so one
iteration is a handful of array operations whatever ``L`` is (no Python loop over lesions).

Each lesion's volumes are divided by its first reading (``scale``; the largest if the first is 0) before
fitting, so a population prior on the scaled coordinates means the same for a lesion seen 3 times or 9, and the observation
SD ``sigma`` is relative to the lesion's size. The objective is MAP with a Gaussian prior on the
unconstrained coordinates ``theta`` (:func:`medtwin.oncology.growth.from_theta`):
``sum(((f - y) / sigma)^2) + sum(((theta - mu) / tau)^2)``. A broad prior (the default) is a regularised
least-squares fit; a population prior (:func:`population_prior`) gives Benzekry et al. 2014's Bayesian
individual prediction from few points. A lesion whose iterations did not settle is flagged
(``converged = False``), never silently returned as fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medtwin.arrays import Array
from medtwin.oncology.growth import FIXED_LAMBDA, from_theta, law, rescale, volume

BoolArray = NDArray[np.bool_]
BROAD_TAU = 5.0  # prior SD on theta of the default (weakly regularised) fit
DEFAULT_SIGMA = 0.1  # relative observation SD of the default fit
FTOL = 1e-8  # relative change of the objective that ends the iterations (scipy least_squares default)


@dataclass(frozen=True)
class Prior:
    """Gaussian prior on theta: mean ``mu`` (P,) and SD ``tau`` (P,); ``sigma`` relative observation SD."""

    model: str
    mu: Array
    tau: Array
    sigma: float
    source: str = ""


@dataclass(frozen=True)
class BatchFit:
    """Fit of one law to ``L`` lesions: ``theta`` (L, P), natural ``params`` (L, P) in the input volume unit,
    ``scale`` (L,), ``rss`` (L,) residual sum of squares on the scaled volumes, ``n_obs`` (L,),
    ``converged`` (L,), ``aic``/``bic`` (L,) (Gaussian likelihood, sigma profiled out)."""

    model: str
    theta: Array
    params: Array
    scale: Array
    rss: Array
    n_obs: Array
    converged: BoolArray
    iterations: int

    @property
    def aic(self) -> Array:
        k = self.theta.shape[1] + 1
        n = np.maximum(self.n_obs, 1)
        return np.asarray(n * np.log(np.maximum(self.rss, 1e-300) / n) + 2 * k, dtype=float)

    @property
    def bic(self) -> Array:
        k = self.theta.shape[1] + 1
        n = np.maximum(self.n_obs, 1)
        return np.asarray(n * np.log(np.maximum(self.rss, 1e-300) / n) + k * np.log(n), dtype=float)

    def predict(self, t: Array) -> Array:
        """Volumes (L, T) at times ``t`` ((T,) or (L, T), days) in the input unit."""
        return volume(self.model, self.params, np.asarray(t, dtype=float))


_BROAD_MEAN = {"v0": 0.0, "K": 0.0, "omega": float(np.log(0.01)), "lam": 0.0, "a": 0.0, "a0": 0.0,
               "a1": float(np.log(0.01)), "a_pl": 0.0, "gamma": 0.0}


def broad_prior(model: str) -> Prior:
    """The default weak prior: theta centred on a volume like the first reading and rates of about 1 %/day,
    SD :data:`BROAD_TAU` (a factor of e^5 ~ 150 either way on the log quantities)."""
    names = law(model).parameters
    return Prior(model, np.array([_BROAD_MEAN[n] for n in names]), np.full(len(names), BROAD_TAU),
                 DEFAULT_SIGMA, "weakly informative default")


def _initial(model: str, t: Array, y: Array, mask: BoolArray) -> list[Array]:
    """Starting points (L, P) of ``theta`` from the data (two starts for the bounded laws)."""
    n = mask.sum(axis=1)
    first = np.maximum(y[:, 0], 0.05)
    last_index = n - 1
    rows = np.arange(y.shape[0])
    last = np.maximum(y[rows, last_index], 0.05)
    span = np.maximum(t[rows, last_index] - t[:, 0], 1.0)
    slope = np.log(last / first) / span
    lv0 = np.log(first)
    if model == "exponential":
        return [np.column_stack([lv0, slope])]
    if model in FIXED_LAMBDA or model == "gen_bertalanffy":
        starts = []
        for k in (last, np.maximum(2.0 * np.maximum(first, last), 1.0)):
            base = [lv0, np.log(k), np.full_like(lv0, np.log(0.02))]
            if model == "gen_bertalanffy":
                base.append(np.full_like(lv0, 0.3))
            starts.append(np.column_stack(base))
        return starts
    if model == "exp_linear":
        return [np.column_stack([lv0, slope, np.log(np.maximum(np.abs(slope) * first, 1e-4))])]
    return [np.column_stack([lv0, slope, np.zeros_like(lv0)]),
            np.column_stack([lv0, slope, np.full_like(lv0, 2.0)])]


def _residuals(model: str, theta: Array, t: Array, y: Array, mask: BoolArray, prior: Prior) -> Array:
    with np.errstate(over="ignore", invalid="ignore"):
        f = volume(model, from_theta(model, theta), t)
    data = np.where(mask, (f - y) / prior.sigma, 0.0)
    data = np.clip(np.where(np.isfinite(data), data, 1e6), -1e6, 1e6)  # an overflowing trial step is rejected
    return np.concatenate([data, (theta - prior.mu) / prior.tau], axis=1)


def _lm(model: str, theta: Array, t: Array, y: Array, mask: BoolArray, prior: Prior,
        max_iter: int) -> tuple[Array, Array, BoolArray, int]:
    lesions, p = theta.shape
    damping = np.full(lesions, 1e-2)
    r = _residuals(model, theta, t, y, mask, prior)
    cost = np.sum(r * r, axis=1)
    settled = np.zeros(lesions, dtype=bool)
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007 (reported)
        jac = np.empty((lesions, r.shape[1], p))
        for j in range(p):
            h = 1e-6 * np.maximum(1.0, np.abs(theta[:, j]))
            shifted = theta.copy()
            shifted[:, j] += h
            jac[:, :, j] = (_residuals(model, shifted, t, y, mask, prior) - r) / h[:, None]
        jtj = np.einsum("lki,lkj->lij", jac, jac)
        grad = np.einsum("lki,lk->li", jac, r)
        diag = np.einsum("lii->li", jtj)
        system = jtj + (damping[:, None] * (diag + 1e-9))[:, :, None] * np.eye(p)
        step = -np.linalg.solve(system, grad[:, :, None])[:, :, 0]
        candidate = theta + np.where(settled[:, None], 0.0, step)
        r_new = _residuals(model, candidate, t, y, mask, prior)
        cost_new = np.sum(r_new * r_new, axis=1)
        better = np.isfinite(cost_new) & (cost_new < cost) & ~settled
        small = (np.abs(cost - cost_new) <= FTOL * (1.0 + cost)) | (np.max(np.abs(step), axis=1) < 1e-8)
        theta = np.where(better[:, None], candidate, theta)
        r = np.where(better[:, None], r_new, r)
        settled |= small & (better | (damping > 1e6)) | (np.max(np.abs(grad), axis=1) < 1e-8)
        cost = np.where(better, cost_new, cost)
        damping = np.where(better, damping / 3.0, damping * 4.0)
        if settled.all():
            break
    return theta, cost, settled, iteration


def fit_batch(model: str, t: Array, y: Array, mask: BoolArray | None = None, prior: Prior | None = None,
              max_iter: int = 200) -> BatchFit:
    """Fit law ``model`` to every lesion of ``t``, ``y`` (L, T) (days, volumes >= 0; ``mask`` marks real
    entries, left-aligned; times relative to each lesion's first reading are best) in one batch."""
    law(model)  # an unknown name fails here, naming the known laws
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    mask = np.isfinite(y) if mask is None else np.asarray(mask, dtype=bool)
    scale = np.where(mask[:, 0] & (y[:, 0] > 0), y[:, 0], np.max(np.where(mask, y, 0.0), axis=1))
    scale = np.where(scale > 0, scale, 1.0)
    ys = np.where(mask, y / scale[:, None], 0.0)
    ts = np.where(mask, t, 0.0)
    if prior is None:
        prior = broad_prior(model)
    best: tuple[Array, Array, BoolArray, int] | None = None
    for start in _initial(model, ts, ys, mask):
        result = _lm(model, start, ts, ys, mask, prior, max_iter)
        if best is None:
            best = result
            continue
        take = result[1] < best[1]
        best = (np.where(take[:, None], result[0], best[0]), np.where(take, result[1], best[1]),
                np.where(take, result[2], best[2]), max(best[3], result[3]))
    assert best is not None
    theta, _, converged, iterations = best
    fitted = volume(model, from_theta(model, theta), ts) / 1.0
    rss = np.sum(np.where(mask, (fitted - ys) ** 2, 0.0), axis=1)
    params = rescale(model, from_theta(model, theta), scale)
    return BatchFit(model, theta, params, scale, rss, mask.sum(axis=1).astype(float), converged, iterations)


def population_prior(fit: BatchFit, source: str = "", inflate: float = 1.0) -> Prior:
    """A population prior from a batch fit of many lesions: robust mean (median) and SD (1.4826 x MAD) of
    theta over the converged lesions, and the pooled relative observation SD (a simple two-stage estimate
    of the mixed-effects distribution)."""
    ok = fit.converged & np.all(np.isfinite(fit.theta), axis=1)
    theta = fit.theta[ok]
    mu = np.median(theta, axis=0)
    tau = 1.4826 * np.median(np.abs(theta - mu), axis=0) * inflate
    tau = np.maximum(tau, 1e-3)
    dof = np.maximum(fit.n_obs[ok].sum() - theta.size, 1.0)
    sigma = float(np.sqrt(fit.rss[ok].sum() / dof))
    return Prior(fit.model, mu, tau, max(sigma, 1e-3), source)


def sample_virtual_lesions(prior: Prior, n: int, rng: np.random.Generator) -> Array:
    """``n`` virtual lesions' natural parameters (n, P), relative to a first reading of 1: theta drawn from
    the population prior (independent normals; the two-stage estimate keeps no correlations)."""
    theta = prior.mu[None, :] + prior.tau[None, :] * rng.standard_normal((n, len(prior.mu)))
    return from_theta(prior.model, theta)
