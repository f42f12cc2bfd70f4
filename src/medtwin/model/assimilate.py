"""Online assimilation for any declared model: a stochastic ensemble Kalman filter (Evensen 1994, J Geophys
Res 99(C5):10143; perturbed observations after Burgers, van Leeuwen & Evensen 1998, Mon Weather Rev
126:1719) on the model's states and the log multipliers of its declared ``drifting`` parameters.

Each member carries the states and a log multiplier per drifting parameter, starting from the population
distribution (``N(0, prior_sd_log^2)``). Between observations the members are simulated (one batched run)
with the known inputs and doses of the timeline, and the multipliers drift as random walks
(``drift_sd_log`` per square-root time unit). At an observation of one output the augmented vector is
updated with the Kalman gain estimated from the ensemble, each member against its own perturbed copy of the
reading; the observation error has SD ``sqrt(obs_sd^2 + (proportional * predicted mean)^2)``. Randomness comes only from the filter's ``numpy.random.Generator``; the whole filter (with the
generator state) round-trips through JSON, so a stored filter resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from medtwin.arrays import Array
from medtwin.model.errors import ModelInputError
from medtwin.model.fit import Observations
from medtwin.model.rngstate import generator_from_json, generator_to_json
from medtwin.model.simulate import simulate
from medtwin.model.spec import Model
from medtwin.model.timeline import Timeline
from medtwin.solve import Solver

FORMAT = 1
LOG_MULTIPLIER_BOUND = math.log(5.0)


class EnsembleFilter:
    """Ensemble Kalman filter of ``model`` around parameter row ``base`` observing ``output`` (see module)."""

    def __init__(self, model: Model, *, base: Array | None = None, output: str | None = None,
                 obs_sd: float = 1.0, proportional: float = 0.0, n_members: int = 32, drift_sd_log: float = 0.01,
                 prior_sd_log: Mapping[str, float] | None = None, rng: np.random.Generator | None = None,
                 solver: Solver | None = None) -> None:
        if not model.drifting:
            raise ModelInputError("drifting", f"{model.name} declares no drifting parameters to assimilate")
        if not 4 <= n_members <= 1000:
            raise ModelInputError("n_members", "must be between 4 and 1000")
        if not (obs_sd >= 0 and proportional >= 0 and obs_sd + proportional > 0):
            raise ModelInputError("obs_sd", "obs_sd and proportional must be >= 0, not both 0")
        if not drift_sd_log >= 0:
            raise ModelInputError("drift_sd_log", "must be non-negative")
        self.model = model
        self.base = model.check_parameters(model.defaults() if base is None else base)[:1]
        self.output = output or model.output_names[0]
        self._output = model.output_index(self.output)
        self.obs_sd = float(obs_sd)
        self.proportional = float(proportional)
        self.n_members = n_members
        self.drift_sd_log = float(drift_sd_log)
        override = dict(prior_sd_log or {})
        self._columns = [model.parameter_index(k) for k in model.drifting]
        self.prior_sd = np.array([override.get(k, model.parameters[j].prior_sd_log)
                                  for k, j in zip(model.drifting, self._columns, strict=True)])
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.solver = solver
        self._nonnegative = [model.state_index(s) for s in model.nonnegative]

    # --- ensemble ------------------------------------------------------------------------------------

    def member_parameters(self) -> Array:
        params = np.repeat(self.base, self.theta_.shape[0], axis=0)
        params[:, self._columns] *= np.exp(self.theta_)
        return params

    def start(self, time: float, initial_state: Array | None = None) -> EnsembleFilter:
        """Members drawn from the population distribution of the drifting parameters at ``time``."""
        m, d = self.n_members, len(self._columns)
        self.theta_ = np.clip(self.rng.standard_normal((m, d)) * self.prior_sd, -LOG_MULTIPLIER_BOUND,
                              LOG_MULTIPLIER_BOUND)
        params = self.member_parameters()
        self.states_ = (self.model.start(params) if initial_state is None
                        else np.broadcast_to(np.asarray(initial_state, dtype=float), (m, len(self.model.states))).copy())
        self.time_ = float(time)
        self.n_assimilated_ = 0
        self.innovations_: list[float] = []
        return self

    def _advance(self, t: float, timeline: Timeline) -> None:
        if t < self.time_:
            raise ModelInputError("t", f"observation at {t} is before the filter's time {self.time_}")
        if t == self.time_:
            return
        window = replace(timeline, t_eval=np.array([self.time_, t]),
                         doses=tuple(d for d in timeline.doses if self.time_ < d.time <= t))
        run = simulate(self.model, self.member_parameters(), window, self.solver, initial_state=self.states_,
                       method="ode", resume=True)
        assert run.states is not None
        self.states_ = run.states[-1].copy()
        drift = self.drift_sd_log * math.sqrt(t - self.time_)
        self.theta_ = np.clip(self.theta_ + drift * self.rng.standard_normal(self.theta_.shape),
                              -LOG_MULTIPLIER_BOUND, LOG_MULTIPLIER_BOUND)
        self.time_ = float(t)

    def _analyse(self, value: float) -> float:
        params = self.member_parameters()
        predicted = self.model.outputs_of(self.states_, params)[:, self._output]
        k = self.states_.shape[1]
        z = np.concatenate([self.states_, self.theta_], axis=1)
        anomaly = predicted - predicted.mean()
        m = predicted.size
        variance = float(anomaly @ anomaly) / (m - 1)
        noise_sd = math.hypot(self.obs_sd, self.proportional * float(predicted.mean()))
        total = variance + noise_sd**2
        gain = ((z - z.mean(axis=0)).T @ anomaly) / (m - 1) / total if total > 0 else np.zeros(z.shape[1])
        perturbed = value + noise_sd * self.rng.standard_normal(m)
        z = z + np.outer(perturbed - predicted, gain)
        self.states_ = z[:, :k]
        if self._nonnegative:
            self.states_[:, self._nonnegative] = np.maximum(self.states_[:, self._nonnegative], 0.0)
        self.theta_ = np.clip(z[:, k:], -LOG_MULTIPLIER_BOUND, LOG_MULTIPLIER_BOUND)
        self.n_assimilated_ += 1
        innovation = float(value - predicted.mean())
        self.innovations_.append(innovation)
        return innovation

    def assimilate(self, t: float, value: float, timeline: Timeline) -> float:
        """Advance to ``t`` under ``timeline``'s inputs and doses, fold in ``value``; returns the innovation."""
        if not math.isfinite(value):
            raise ModelInputError("values", "an observation must be finite")
        self._advance(float(t), timeline)
        return self._analyse(float(value))

    def fit(self, observations: Observations) -> EnsembleFilter:
        """Start at the timeline's start and assimilate every observation in order (returns self)."""
        if observations.output != self.output:
            raise ModelInputError("output", f"this filter observes {self.output!r}")
        self.start(float(observations.timeline.t_eval[0]))
        for t, value in zip(observations.t.tolist(), observations.values.tolist(), strict=True):
            self.assimilate(t, value, observations.timeline)
        return self

    # --- results -------------------------------------------------------------------------------------

    def estimates(self) -> dict[str, dict[str, float | str]]:
        """Per drifting parameter: the geometric-mean multiplier, the SD of its log, the value it implies."""
        out: dict[str, dict[str, float | str]] = {}
        for j, name in enumerate(self.model.drifting):
            mean = float(self.theta_[:, j].mean())
            out[name] = {"multiplier": math.exp(mean), "sd_log": float(self.theta_[:, j].std(ddof=1)),
                         "value": float(self.base[0, self._columns[j]] * math.exp(mean)),
                         "unit": self.model.parameters[self._columns[j]].unit}
        return out

    def predicted(self) -> tuple[float, float]:
        """Mean and SD over the members of the observed output now."""
        values = self.model.outputs_of(self.states_, self.member_parameters())[:, self._output]
        return float(values.mean()), float(values.std(ddof=1))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; floats round-trip exactly; the generator state's 128-bit integers are strings."""
        return {
            "format": FORMAT, "model": self.model.name, "output": self.output, "obs_sd": self.obs_sd,
            "proportional": self.proportional,
            "drift_sd_log": self.drift_sd_log, "prior_sd_log": self.prior_sd.tolist(),
            "base": self.base[0].tolist(), "states": self.states_.tolist(), "theta": self.theta_.tolist(),
            "time": self.time_, "n_assimilated": self.n_assimilated_, "innovations": list(self.innovations_),
            "drifting": list(self.model.drifting), "rng": generator_to_json(self.rng),
        }

    @classmethod
    def from_dict(cls, model: Model, data: Mapping[str, Any], solver: Solver | None = None) -> EnsembleFilter:
        """Resume a stored filter; errors name the field."""
        try:
            if data.get("format") != FORMAT or data.get("model") != model.name:
                raise ModelInputError("filter", f"not a stored {model.name} filter (format {FORMAT})")
            if list(data["drifting"]) != list(model.drifting):
                raise ModelInputError("filter.drifting", "the model's drifting parameters changed")
            prior = dict(zip(model.drifting, (float(x) for x in data["prior_sd_log"]), strict=True))
            states = np.asarray(data["states"], dtype=float)
            filt = cls(model, base=np.asarray(data["base"], dtype=float)[None], output=str(data["output"]),
                       obs_sd=float(data["obs_sd"]), proportional=float(data.get("proportional", 0.0)),
                       n_members=states.shape[0],
                       drift_sd_log=float(data["drift_sd_log"]), prior_sd_log=prior,
                       rng=generator_from_json(data["rng"]), solver=solver)
            filt.states_ = states.reshape(-1, len(model.states))
            filt.theta_ = np.asarray(data["theta"], dtype=float).reshape(-1, len(model.drifting))
            filt.time_ = float(data["time"])
            filt.n_assimilated_ = int(data["n_assimilated"])
            filt.innovations_ = [float(x) for x in data["innovations"]]
            return filt
        except KeyError as exc:
            raise ModelInputError(f"filter.{exc.args[0]}", "missing from the stored filter") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelInputError("filter", f"malformed stored filter: {exc}") from None

