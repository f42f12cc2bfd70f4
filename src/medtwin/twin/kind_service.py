"""The generic operations on any registered twin kind, JSON in and JSON out (what the API and CLI call).

Each operation takes a request model (pydantic; the model-specific parts are JSON checked against the kind's
model declarations, errors naming the field) and returns a JSON-ready dict. Randomness only through the
``numpy.random.Generator`` the caller passes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from medtwin.arrays import Array
from medtwin.model.assimilate import EnsembleFilter
from medtwin.model.errors import ModelInputError
from medtwin.model.fit import MapFit, Observations
from medtwin.model.kinds import TwinKind
from medtwin.model.simulate import simulate
from medtwin.model.timeline import Timeline
from medtwin.model.whatif import compare
from medtwin.solve import Dopri5, SolverFailure

#: The generic default tolerances with a step budget: a request cannot keep a worker busy for minutes on a
#: stiff corner of the parameter space (it answers 422 "not computable" instead).
SOLVER = Dopri5(rtol=1e-6, atol=1e-8, max_steps=200_000)


class SimulateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, float] = Field(default_factory=dict, description="overrides of the base parameters")
    scenario: dict[str, Any] | None = Field(default=None, description="timeline; default: the kind's example")


class FitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, float] = Field(default_factory=dict)
    observations: dict[str, Any] = Field(description="{scenario, output, t, values}")


class AssimilateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, float] = Field(default_factory=dict)
    observations: dict[str, Any] = Field(description="{scenario, output, t, values}")
    filter: dict[str, Any] | None = Field(default=None, description="a stored filter to continue")
    n_members: int = Field(default=32, ge=4, le=1000)
    seed: int = Field(default=0, ge=0)


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, float] = Field(default_factory=dict)
    scenarios: dict[str, dict[str, Any]] = Field(min_length=1, max_length=10)
    fit: dict[str, Any] | None = Field(default=None, description="a /fit result: its Laplace posterior")
    output: str | None = None
    n_ensemble: int = Field(default=50, ge=2, le=2000)
    seed: int = Field(default=0, ge=0)


def _finite(values: NDArray[np.floating[Any]]) -> None:
    if not np.all(np.isfinite(values)):
        raise FloatingPointError("non-finite values in the result")


def base_parameters(kind: TwinKind, overrides: Mapping[str, float]) -> Array:
    """(1, P) the kind's base row with ``overrides`` (each checked: a declared parameter, finite, > 0 and
    within the model's documented range)."""
    base = kind.base().copy()
    for name, value in overrides.items():
        j = kind.model.parameter_index(name)
        spec = kind.model.parameters[j]
        if not (np.isfinite(value) and value > 0):
            raise ModelInputError(f"parameters.{name}", "must be a positive finite number")
        if not spec.lower <= value <= spec.upper:
            raise ModelInputError(f"parameters.{name}", f"{value:g} {spec.unit} is outside the documented range "
                                                        f"[{spec.lower:g}, {spec.upper:g}] {spec.unit}")
        base[0, j] = value
    return base


def _outputs(kind: TwinKind, values: Array) -> dict[str, Any]:
    return {o.name: {"unit": o.unit, "values": values[:, 0, j].tolist()}
            for j, o in enumerate(kind.model.outputs)}


@contextmanager
def _solvable(field: str) -> Iterator[None]:
    """Numerical failures of these inputs (a solver giving up, a singular information matrix, non-finite
    values) are the caller's input error naming ``field``, never a crash: the answer is "not computable"."""
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            yield
    except ModelInputError:
        raise
    except (SolverFailure, FloatingPointError, ArithmeticError, np.linalg.LinAlgError, ValueError) as exc:
        raise ModelInputError(field, f"not computable for these inputs ({type(exc).__name__}: {exc})") from None


def simulate_kind(kind: TwinKind, request: SimulateRequest) -> dict[str, Any]:
    model = kind.model
    timeline = Timeline.from_dict(model, request.scenario or kind.example_scenario)
    with _solvable("parameters"):
        run = simulate(model, base_parameters(kind, request.parameters), timeline, SOLVER)
        _finite(run.outputs)
    return {"kind": kind.name, "model": model.name, "method": run.method, "time_unit": model.time_unit,
            "t": run.t.tolist(), "outputs": _outputs(kind, run.outputs),
            "delivered": run.delivered[0].tolist()}


def fit_kind(kind: TwinKind, request: FitRequest) -> dict[str, Any]:
    model = kind.model
    p = kind.personalisation
    observations = Observations.from_dict(model, {"output": p.observed_output, **request.observations})
    with _solvable("observations"):
        fitted = MapFit(model, base=base_parameters(kind, request.parameters), fitted=p.fitted,
                        prior_sd_log=p.prior_sd_log or None, noise_sd=p.noise_sd,
                        proportional=p.proportional, solver=SOLVER).fit(observations)
        _finite(fitted.covariance_)
    return {"kind": kind.name, **fitted.to_dict(), "fitted_names": list(fitted.fitted_names_),
            "t": observations.t.tolist(), "prediction": fitted.prediction_.tolist()}


def assimilate_kind(kind: TwinKind, request: AssimilateRequest) -> dict[str, Any]:
    model = kind.model
    p = kind.personalisation
    observations = Observations.from_dict(model, {"output": p.observed_output, **request.observations})
    with _solvable("observations"):
        if request.filter is not None:
            filt = EnsembleFilter.from_dict(model, request.filter, solver=SOLVER)
            if filt.output != observations.output:
                raise ModelInputError("observations.output", f"the stored filter observes {filt.output!r}")
            for t, value in zip(observations.t.tolist(), observations.values.tolist(), strict=True):
                filt.assimilate(t, value, observations.timeline)
        else:
            filt = EnsembleFilter(model, base=base_parameters(kind, request.parameters),
                                  output=observations.output, obs_sd=p.noise_sd, proportional=p.proportional,
                                  n_members=request.n_members, drift_sd_log=kind.drift_sd_log,
                                  prior_sd_log=p.prior_sd_log or None,
                                  rng=np.random.default_rng(request.seed), solver=SOLVER).fit(observations)
        mean, sd = filt.predicted()
        _finite(filt.states_)
    return {"kind": kind.name, "model": model.name, "time": filt.time_, "n_assimilated": filt.n_assimilated_,
            "estimates": filt.estimates(), "predicted": {"output": filt.output, "mean": mean, "sd": sd},
            "innovations": list(filt.innovations_), "filter": filt.to_dict()}


def _ensemble(kind: TwinKind, request: CompareRequest, rng: np.random.Generator) -> tuple[Array, str]:
    model = kind.model
    base = base_parameters(kind, request.parameters)
    n = request.n_ensemble
    if request.fit is not None:
        try:
            names = [str(x) for x in request.fit["fitted_names"]]
            theta = np.asarray(request.fit["theta_log"], dtype=float)
            covariance = np.asarray(request.fit["covariance_log"], dtype=float)
            fitted_values = request.fit["parameters"]
            base = np.array([[float(fitted_values[k]) for k in model.parameter_names]])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelInputError("fit", f"not a fit result of this kind: {exc}") from None
        if theta.shape != (len(names),) or covariance.shape != (len(names), len(names)):
            raise ModelInputError("fit", "theta_log and covariance_log do not match fitted_names")
        index = [model.parameter_index(k) for k in names]
        rows = np.repeat(base, n, axis=0)
        rows[:, index] = np.exp(rng.multivariate_normal(theta, covariance, size=n))
        return model.consistent(rows), "fitted posterior (Laplace)"
    p = kind.personalisation
    index = [model.parameter_index(k) for k in p.fitted]
    sd = np.array([p.prior_sd_log.get(k, model.parameters[j].prior_sd_log) for k, j in zip(p.fitted, index,
                                                                                            strict=True)])
    rows = np.repeat(base, n, axis=0)
    rows[:, index] *= np.exp(rng.standard_normal((n, len(index))) * sd)
    return model.consistent(rows), "population (no fitted twin given)"


def compare_kind(kind: TwinKind, request: CompareRequest) -> dict[str, Any]:
    model = kind.model
    rng = np.random.default_rng(request.seed)
    with _solvable("fit"):
        ensemble, source = _ensemble(kind, request, rng)
    timelines = {}
    for name, scenario in request.scenarios.items():
        try:
            timelines[name] = Timeline.from_dict(model, scenario)
        except ModelInputError as exc:
            raise ModelInputError(f"scenarios.{name}.{exc.field}", exc.message) from None
    with _solvable("scenarios"):
        bands = compare(model, ensemble, timelines, request.output, SOLVER)
        _finite(np.stack([np.stack([b.p5, b.median, b.p95]) for b in bands]))
    return {"kind": kind.name, "model": model.name, "ensemble": source, "n_ensemble": int(ensemble.shape[0]),
            "time_unit": model.time_unit, "bands": [b.to_dict() for b in bands]}
