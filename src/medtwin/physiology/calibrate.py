"""Personalisation: MAP fit of a patient's most identifiable UVA/Padova parameters from CGM + insulin + meal logs.

Fitted (in log space, so they stay positive):

* ``Gb`` basal glucose (mg/dL) - pinned by the fasting CGM level;
* ``Vmx`` peripheral insulin sensitivity and ``kp3`` hepatic insulin sensitivity - they set how far glucose
  falls per unit of insulin (the post-bolus decline and the basal balance);
* ``kabs`` intestinal absorption rate - sets the timing and height of the post-meal peak.

These are the insulin-sensitivity and absorption terms that the oral glucose minimal model identifies from
glucose, insulin and meal data (Dalla Man et al. 2002 IEEE TBME 49(5):419-429; 2007), while volumes and
transfer rates are poorly identifiable from CGM alone and stay at population values. Priors are
log-normal, from the 30-patient cohort (or an age group of it). Body weight and the basal rate come from
the log: the twin's basal plasma insulin is set so that its logged basal rate is its steady state.
Uncertainty: Laplace approximation at the MAP, the data part inflated for the autocorrelation of the
residuals (effective sample size n (1 - r) / (1 + r), r the lag-1 autocorrelation).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.optimize import least_squares

from medtwin.arrays import Array
from medtwin.physiology.errors import PhysiologyInputError, validate_input
from medtwin.physiology.scenario import MAX_HORIZON_MIN, Bolus, Meal
from medtwin.physiology.simulate import Event, eaten_per_minute, fixed_bolus, simulate_inputs
from medtwin.physiology.uva_padova import (
    PARAMETER_NAMES,
    PMOL_PER_UNIT,
    PatientParameters,
    steady_state_parameters,
    virtual_patients,
)
from medtwin.solve import Dopri5

FITTED = ("Gb", "Vmx", "kp3", "kabs")
FIT_SOLVER = Dopri5(rtol=1e-5, atol=1e-4)
MIN_DAYS = 3.0


class GlucoseLog(BaseModel):
    """Observed data: CGM readings, meals, boluses and the basal rate, times in minutes from log start."""

    model_config = ConfigDict(extra="forbid")
    body_weight_kg: float = Field(gt=0, le=300)
    basal_u_per_h: float = Field(gt=0, le=30)
    cgm_t_min: list[float]
    cgm_mg_dl: list[float]
    meals: list[Meal] = Field(default_factory=list)
    boluses: list[Bolus] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> GlucoseLog:
        t = np.asarray(self.cgm_t_min, dtype=float)
        g = np.asarray(self.cgm_mg_dl, dtype=float)
        if t.size != g.size or t.size < 2:
            raise PhysiologyInputError("cgm_mg_dl", "needs at least two readings, one per cgm_t_min")
        if np.any(np.diff(t) <= 0):
            raise PhysiologyInputError("cgm_t_min", "times must be strictly increasing (non-monotonic)")
        if t[0] < 0:
            raise PhysiologyInputError("cgm_t_min", "negative time")
        if not np.all(np.isfinite(t)) or t[-1] > MAX_HORIZON_MIN:
            raise PhysiologyInputError("cgm_t_min", "a log spans at most 90 days")
        if any(t > MAX_HORIZON_MIN for t in [m.time_min for m in self.meals] + [b.time_min for b in self.boluses]):
            raise PhysiologyInputError("meals", "meals and boluses must lie within 90 days of the log start")
        if np.any(~np.isfinite(g)) or np.any(g < 20) or np.any(g > 700):
            raise PhysiologyInputError("cgm_mg_dl", "readings must lie within 20-700 mg/dL")
        for label, times in (
            ("meals", [m.time_min for m in self.meals]),
            ("boluses", [b.time_min for b in self.boluses]),
        ):
            if any(b <= a for a, b in zip(times, times[1:], strict=False)):
                raise PhysiologyInputError(f"{label}", "times must be strictly increasing (non-monotonic)")
        return self

    @property
    def minutes(self) -> int:
        ends = [self.cgm_t_min[-1]] + [m.time_min for m in self.meals] + [b.time_min for b in self.boluses]
        return int(np.ceil(max(ends))) + 1


def parse_log(data: dict[str, Any]) -> GlucoseLog:
    return validate_input(GlucoseLog, data, lambda loc: ".".join(str(p) for p in loc) or "log")


def cohort_carb_ratio(cohort: PatientParameters) -> float:
    """The typical carb ratio of a cohort (g/U): the geometric mean, the population patient's."""
    return float(np.exp(np.mean(np.log(cohort.carb_ratio_g_per_unit))))


def population_patient(
    body_weight_kg: float | Array, basal_u_per_h: float | Array, cohort: PatientParameters
) -> PatientParameters:
    """The population-average patient: geometric mean of every parameter over ``cohort``, given the body
    weight and a basal rate that is its steady state (sets Ib), steady state recomputed."""
    bw = np.atleast_1d(np.asarray(body_weight_kg, dtype=float))
    basal = np.broadcast_to(np.asarray(basal_u_per_h, dtype=float), bw.shape)
    n = bw.size
    mean = np.exp(np.mean(np.log(np.maximum(cohort.values, 1e-300)), axis=0))
    mean = np.where(np.all(cohort.values > 0, axis=0), mean, cohort.values.mean(axis=0))
    base = PatientParameters(
        names=tuple("population" for _ in range(n)),
        values=np.repeat(mean[None], n, axis=0),
        initial_state=np.zeros((n, cohort.initial_state.shape[1])),
        carb_ratio_g_per_unit=np.full(n, cohort_carb_ratio(cohort)),
        correction_factor_mg_dl_per_unit=np.full(
            n, np.exp(np.mean(np.log(cohort.correction_factor_mg_dl_per_unit)))
        ),
        total_daily_insulin_units=np.full(n, np.exp(np.mean(np.log(cohort.total_daily_insulin_units)))),
    )
    return with_basal(base.with_values(BW=bw), basal)


def with_basal(params: PatientParameters, basal_u_per_h: Array) -> PatientParameters:
    """Set Ib so that ``basal_u_per_h`` is the steady-state infusion, then recompute the steady state."""
    u2ss = np.asarray(basal_u_per_h, dtype=float) / 60.0 * PMOL_PER_UNIT / params.get("BW")  # pmol/kg/min
    m1, m2, m4, m30 = (params.get(k) for k in ("m1", "m2", "m4", "m30"))
    ipb = u2ss / ((m2 + m4) - m1 * m2 / (m1 + m30))
    return steady_state_parameters(params.with_values(Ib=ipb / params.get("Vi")))


def log_inputs(log: GlucoseLog, n: int, minutes: int | None = None) -> tuple[Array, Array, list[Event]]:
    """Replay a log as minute-grid inputs for ``n`` copies of the patient."""
    minutes = log.minutes if minutes is None else minutes
    announced = np.zeros((n, minutes))
    for meal in log.meals:
        announced[:, int(round(meal.time_min))] += meal.carbs_g
    carbs = eaten_per_minute(announced)
    insulin = np.full((n, minutes), log.basal_u_per_h / 60.0)
    events = [Event(b.time_min, fixed_bolus(b.units)) for b in log.boluses]
    return carbs, insulin, events


class FittedTwin(BaseModel):
    """Serializable fitted twin (JSON file for the CLI / a twin version payload)."""

    model: str = "UvaPadova2008"
    fitted: dict[str, float]
    fitted_sd_log: dict[str, float]
    covariance_log: list[list[float]]
    patient: dict[str, Any]
    n_readings: int
    residual_sd_mg_dl: float

    def parameters(self) -> PatientParameters:
        return PatientParameters.from_dict(self.patient)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> FittedTwin:
        file = Path(path)
        if not file.is_file():
            raise PhysiologyInputError("twin", f"no such file: {file}")
        try:
            return cls.model_validate(json.loads(file.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise PhysiologyInputError(
                "twin", f"not a fitted twin file: {str(exc).splitlines()[0]}"
            ) from None


class TwinCalibrator:
    """MAP personalisation of the UVA/Padova model (estimator habit: ``fit(log)`` returns self).

    ``cohort`` gives the priors (default: all 30 shipped virtual patients); ``exclude`` drops patients
    from it (e.g. the one the data came from, for honest validation).
    """

    def __init__(
        self,
        cohort: PatientParameters | None = None,
        exclude: tuple[str, ...] = (),
        noise_sd_mg_dl: float = 10.0,
        max_iterations: int = 30,
    ) -> None:
        self.cohort = cohort
        self.exclude = exclude
        self.noise_sd_mg_dl = noise_sd_mg_dl
        self.max_iterations = max_iterations

    def _cohort(self) -> PatientParameters:
        cohort = virtual_patients() if self.cohort is None else self.cohort
        keep = [i for i, name in enumerate(cohort.names) if name not in self.exclude]
        if len(keep) < 3:
            raise PhysiologyInputError("cohort", "needs at least 3 patients for priors")
        return cohort.take(keep)

    def fit(self, log: GlucoseLog) -> TwinCalibrator:
        t = np.asarray(log.cgm_t_min)
        if t[-1] - t[0] < MIN_DAYS * 1440 - 60:
            raise PhysiologyInputError("cgm_t_min", f"needs at least {MIN_DAYS:g} days of CGM data")
        cohort = self._cohort()
        index = [PARAMETER_NAMES.index(k) for k in FITTED]
        log_values = np.log(cohort.values[:, index])
        self.prior_mean_ = log_values.mean(axis=0)
        self.prior_sd_ = log_values.std(axis=0, ddof=1)
        base = population_patient(log.body_weight_kg, log.basal_u_per_h, cohort)
        self.population_patient_ = base
        observed = np.asarray(log.cgm_mg_dl)
        sigma = self.noise_sd_mg_dl
        carbs, insulin, events = log_inputs(log, 1 + len(FITTED))
        warmup = t >= 0

        def patients(thetas: Array) -> PatientParameters:
            batch = base.take(np.zeros(len(thetas), dtype=int))
            batch = batch.with_values(**{k: np.exp(thetas[:, j]) for j, k in enumerate(FITTED)})
            return with_basal(batch, np.full(len(thetas), log.basal_u_per_h))

        def predictions(thetas: Array) -> Array:
            n = len(thetas)
            trajectory = simulate_inputs(
                patients(thetas), carbs[:n], insulin[:n], t, events=events, solver=FIT_SOLVER
            )
            return trajectory.glucose_mg_dl  # (m, n)

        def residual_vector(prediction: Array, theta: Array) -> Array:
            data = (observed - prediction)[warmup] / sigma
            return np.concatenate([data, (theta - self.prior_mean_) / self.prior_sd_])

        cache: dict[bytes, Array] = {}
        step = 1e-4

        def evaluate(theta: Array) -> Array:
            key = theta.tobytes()
            if key not in cache:
                thetas = np.vstack([theta, theta + step * np.eye(len(theta))])
                preds = predictions(thetas)  # one batched solve gives value and finite-difference Jacobian
                cache.clear()
                cache[key] = preds
            return cache[key]

        def fun(theta: Array) -> Array:
            return residual_vector(evaluate(theta)[:, 0], theta)

        def jac(theta: Array) -> Array:
            preds = evaluate(theta)
            r0 = residual_vector(preds[:, 0], theta)
            columns = [
                (residual_vector(preds[:, j + 1], theta + step * np.eye(len(theta))[j]) - r0) / step
                for j in range(len(theta))
            ]
            return np.column_stack(columns)

        try:
            result = least_squares(
                fun,
                self.prior_mean_.copy(),
                jac=jac,
                method="trf",
                max_nfev=self.max_iterations,
                x_scale=self.prior_sd_,
            )
        except (FloatingPointError, ValueError) as exc:
            raise PhysiologyInputError("log", f"fit failed: {exc}") from None
        theta = result.x
        jacobian = jac(theta)
        n_data = int(warmup.sum())
        residuals = (observed - evaluate(theta)[:, 0])[warmup]
        r = np.corrcoef(residuals[:-1], residuals[1:])[0, 1] if n_data > 3 else 0.0
        inflation = max(1.0, (1 + r) / (1 - r)) if np.isfinite(r) and r < 0.99 else 100.0
        data_jacobian = jacobian[:n_data] / np.sqrt(inflation)
        prior_jacobian = jacobian[n_data:]
        information = data_jacobian.T @ data_jacobian + prior_jacobian.T @ prior_jacobian
        covariance = np.linalg.inv(information)
        self.theta_ = theta
        self.covariance_ = covariance
        self.params_ = {k: float(np.exp(theta[j])) for j, k in enumerate(FITTED)}
        # sd on the natural scale (delta method on the log-normal posterior)
        self.param_sd_ = {
            k: float(np.exp(theta[j]) * np.sqrt(covariance[j, j])) for j, k in enumerate(FITTED)
        }
        self.patient_ = replace(patients(theta[None]), names=("twin",))
        self.residual_sd_mg_dl_ = float(np.std(residuals, ddof=len(FITTED)))
        self.n_readings_ = n_data
        return self

    def posterior_samples(self, n: int, rng: np.random.Generator) -> PatientParameters:
        """``n`` parameter draws from the Laplace posterior (log-normal), as a batch of patients."""
        thetas = rng.multivariate_normal(self.theta_, self.covariance_, size=n)
        return sample_twins(self.patient_, thetas, self.basal_u_per_h_)

    @property
    def basal_u_per_h_(self) -> float:
        return float(self.patient_.basal_rate_u_per_min()[0] * 60.0)

    def to_twin(self) -> FittedTwin:
        return FittedTwin(
            fitted=self.params_,
            fitted_sd_log={k: float(np.sqrt(self.covariance_[j, j])) for j, k in enumerate(FITTED)},
            covariance_log=self.covariance_.tolist(),
            patient=self.patient_.to_dict(),
            n_readings=self.n_readings_,
            residual_sd_mg_dl=self.residual_sd_mg_dl_,
        )


def sample_twins(patient: PatientParameters, thetas: Array, basal_u_per_h: float) -> PatientParameters:
    """Batch of a single patient's parameters with the fitted subset replaced by ``thetas`` (log values)."""
    batch = patient.take(np.zeros(len(thetas), dtype=int))
    batch = batch.with_values(**{k: np.exp(thetas[:, j]) for j, k in enumerate(FITTED)})
    return with_basal(batch, np.full(len(thetas), basal_u_per_h))


def twin_samples(twin: FittedTwin, n: int, rng: np.random.Generator) -> PatientParameters:
    """``n`` posterior draws (Laplace, log-normal) of a saved :class:`FittedTwin`, each at its own steady state."""
    patient = twin.parameters()
    mean = np.log([twin.fitted[k] for k in FITTED])
    thetas = rng.multivariate_normal(mean, np.asarray(twin.covariance_log), size=n)
    return sample_twins(patient, thetas, float(patient.basal_rate_u_per_min()[0] * 60.0))
