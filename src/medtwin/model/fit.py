"""MAP personalisation of any declared model: log-normal priors, one batched solve per Jacobian, Laplace
covariance.

Fitted parameters are estimated on the log scale (they stay positive): ``theta = log(value)`` with prior
``N(log(base), prior_sd_log^2)`` from the model's :class:`~medtwin.model.spec.ParameterSpec` (or the
constructor's override) and Gaussian observation noise of SD ``sqrt(noise_sd^2 + (proportional * prediction)^2)`` in the output's unit
(evaluated at the current prediction, iteratively reweighted), never below 1 % of the proportional error of
the largest observation (a quantification limit: else a prediction of 0 would carry infinite weight). The
Jacobian comes from one batched simulation of ``1 + n_fitted`` parameter rows (forward differences), the
minimiser is scipy's trust-region least squares, the covariance the inverse Gauss-Newton information at the
MAP (Laplace). Estimator style: configuration in the constructor, :meth:`MapFit.fit` returns self, fitted
values end in ``_``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from medtwin.arrays import Array
from medtwin.model.errors import ModelInputError
from medtwin.model.simulate import simulate
from medtwin.model.spec import Model
from medtwin.model.timeline import Timeline
from medtwin.solve import Solver


@dataclass(frozen=True)
class Observations:
    """Measured values of one declared output at times ``t`` (strictly increasing) under ``timeline``."""

    timeline: Timeline
    output: str
    t: Array
    values: Array

    @classmethod
    def from_dict(cls, model: Model, data: Mapping[str, Any]) -> Observations:
        """``{"scenario": {...}, "output": name, "t": [...], "values": [...]}``; errors name the field."""
        if not isinstance(data, Mapping):
            raise ModelInputError("observations", "must be a mapping")
        output = data.get("output", model.output_names[0])
        if output not in model.output_names:
            raise ModelInputError("output", f"unknown output {output!r}; known: {', '.join(model.output_names)}")
        t = _vector(data.get("t"), "t")
        values = _vector(data.get("values"), "values")
        if t.shape != values.shape:
            raise ModelInputError("values", f"needs one value per time ({t.size} times, {values.size} values)")
        if t.size > 1 and not np.all(np.diff(t) > 0):
            raise ModelInputError("t", "times must be strictly increasing")
        raw = data.get("scenario") or {}
        if not isinstance(raw, Mapping):
            raise ModelInputError("scenario", "must be a mapping (t_eval, inputs, doses)")
        scenario = dict(raw)
        start = float(min(0.0, t[0]))
        scenario.setdefault("t_eval", [start] + ([float(t[-1])] if t[-1] > start else []))
        timeline = Timeline.from_dict(model, scenario)
        if t[0] < timeline.t_eval[0]:
            raise ModelInputError("t", "an observation before the scenario start")
        return cls(timeline, str(output), t, values)


def _vector(raw: Any, field: str) -> Array:
    try:
        values = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        raise ModelInputError(field, "must be a list of numbers") from None
    if values.ndim != 1 or values.size < 1 or not np.all(np.isfinite(values)):
        raise ModelInputError(field, "must be a non-empty list of finite numbers")
    return values


@dataclass(eq=False)
class MapFit:
    """MAP fit of ``fitted`` parameters of ``model`` (default: those with a population SD) around ``base``.

    The configuration (keyword-only after ``model``) is the constructor's; :meth:`fit` adds the results."""

    model: Model = field(repr=False)
    _: KW_ONLY
    base: Array | None = field(default=None, repr=False)  # the values fitted around (first row); default: the model's
    fitted: Sequence[str] | None = None
    prior_sd_log: Mapping[str, float] | None = None  # overrides of the model's prior SDs (log scale)
    noise_sd: float = 1.0  # additive observation SD, in the output's unit
    proportional: float = 0.0  # proportional observation SD (fraction of the prediction)
    solver: Solver | None = None
    max_iterations: int = 50
    step: float = 1e-4  # forward-difference step on the log scale

    def _setup(self) -> tuple[Array, list[int], Array]:
        model = self.model
        base = model.check_parameters(model.defaults() if self.base is None else self.base)[:1]
        names = list(self.fitted) if self.fitted is not None else [p.name for p in model.parameters
                                                                     if p.prior_sd_log > 0]
        if not names:
            raise ModelInputError("fitted", f"{model.name}: no parameter to fit (none has a population SD)")
        index = [model.parameter_index(k) for k in names]
        override = dict(self.prior_sd_log or {})
        sd = np.array([override.get(k, model.parameters[j].prior_sd_log) for k, j in zip(names, index, strict=True)])
        if np.any(~(sd > 0)):
            raise ModelInputError("prior_sd_log", "every fitted parameter needs a positive prior SD")
        if np.any(base[0, index] <= 0):
            raise ModelInputError("base", "fitted parameters must be positive (they are fitted on the log scale)")
        if not (self.noise_sd >= 0 and self.proportional >= 0 and self.noise_sd + self.proportional > 0):
            raise ModelInputError("noise_sd", "noise_sd and proportional must be >= 0, not both 0")
        return base, index, sd

    def fit(self, observations: Observations) -> MapFit:
        base, index, sd = self._setup()
        model = self.model
        t_eval = np.union1d(observations.timeline.t_eval[:1], observations.t)
        pick = np.searchsorted(t_eval, observations.t)
        timeline = replace(observations.timeline, t_eval=t_eval)
        mean = np.log(base[0, index])
        observed = observations.values
        k = len(index)

        def rows(thetas: Array) -> Array:
            params = np.repeat(base, thetas.shape[0], axis=0)
            params[:, index] = np.exp(thetas)
            return model.consistent(params)

        cache: dict[bytes, Array] = {}

        def predictions(theta: Array) -> Array:
            key = theta.tobytes()
            if key not in cache:
                thetas = np.vstack([theta, theta + self.step * np.eye(k)])
                run = simulate(model, rows(thetas), timeline, self.solver)
                cache.clear()
                cache[key] = run.output(observations.output)[pick]  # (m, 1 + k): value and differences
            return cache[key]

        floor = 0.01 * self.proportional * float(np.max(np.abs(observed)))
        if self.noise_sd == 0 and floor == 0:
            raise ModelInputError("values", "with a proportional-only error, some observation must be non-zero")

        def noise(prediction: Array) -> Array:
            sd = np.sqrt(self.noise_sd**2 + (self.proportional * prediction) ** 2)
            return np.asarray(np.maximum(sd, floor), dtype=float)

        def residuals(prediction: Array, theta: Array) -> Array:
            return np.concatenate([(observed - prediction) / noise(prediction), (theta - mean) / sd])

        def fun(theta: Array) -> Array:
            return residuals(predictions(theta)[:, 0], theta)

        def jac(theta: Array) -> Array:
            pred = predictions(theta)
            data = -(pred[:, 1:] - pred[:, :1]) / self.step / noise(pred[:, 0])[:, None]
            return np.vstack([data, np.diag(1.0 / sd)])

        result = least_squares(fun, mean.copy(), jac=jac, method="trf", max_nfev=self.max_iterations, x_scale=sd)
        theta = np.asarray(result.x, dtype=float)
        jacobian = jac(theta)
        self.covariance_ = np.linalg.inv(jacobian.T @ jacobian)
        self.theta_ = theta
        self.fitted_names_ = tuple(model.parameters[j].name for j in index)
        self.parameters_ = rows(theta[None])
        self.params_ = {name: float(np.exp(theta[j])) for j, name in enumerate(self.fitted_names_)}
        self.param_sd_ = {name: float(np.exp(theta[j]) * np.sqrt(self.covariance_[j, j]))
                          for j, name in enumerate(self.fitted_names_)}
        prediction = predictions(theta)[:, 0]
        self.prediction_ = prediction
        self.residual_sd_ = float(np.sqrt(np.mean((observed - prediction) ** 2)))
        self.n_observations_ = int(observed.size)
        self.converged_ = bool(result.success)
        self._index = index
        return self

    def posterior_samples(self, n: int, rng: np.random.Generator) -> Array:
        """(n, P) parameter rows drawn from the Laplace posterior (log-normal in the fitted parameters)."""
        thetas = rng.multivariate_normal(self.theta_, self.covariance_, size=n)
        params = np.repeat(self.parameters_, n, axis=0)
        params[:, self._index] = np.exp(thetas)
        return self.model.consistent(params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result (natural-scale estimates and SDs, log-scale covariance, all parameter values)."""
        return {
            "model": self.model.name,
            "fitted": self.params_,
            "fitted_sd": self.param_sd_,
            "fitted_units": {k: self.model.parameters[self.model.parameter_index(k)].unit for k in self.params_},
            "theta_log": self.theta_.tolist(),
            "covariance_log": self.covariance_.tolist(),
            "parameters": dict(zip(self.model.parameter_names, self.parameters_[0].tolist(), strict=True)),
            "residual_sd": self.residual_sd_,
            "n_observations": self.n_observations_,
            "converged": self.converged_,
        }
