"""Online assimilation of CGM readings into the UVA/Padova glucose twin: a batched ensemble Kalman filter.

What the filter believes about one patient is an ensemble of ``M`` members. Each member carries

* the 14 UVA/Padova states (13 model states plus the last-meal memory ``D``, see :mod:`.uva_padova`);
* the CGM sensor error ``e`` (mg/dL), an Ornstein-Uhlenbeck process: the error of a CGM is strongly
  autocorrelated (Breton & Kovatchev 2008, J Diabetes Sci Technol 2(5):853-862: an AR(1) with coefficient
  0.7 per 15 min before the Johnson transform), so it is a state of the filter, not white noise;
* the unmodelled glucose disturbance ``w`` (mg/dL/min), added to the plasma glucose rate and decaying
  (OU, ``disturbance_tau_min``): what the model gets wrong about the current trend;
* log multipliers on seven of the twin's starting parameters (:data:`AUGMENTED`), drifting as random walks
  (joint state-parameter estimation): ``Vmx`` and ``kp3`` (insulin sensitivity, below), ``kp1`` (extrapolated
  endogenous glucose production: the fasting level), ``kabs``, ``kmax`` and ``kmin`` (absorption and gastric
  emptying: the shape of the meal response) and ``p2u`` (speed of insulin action). Without a fitted twin
  the members start from the cohort's own values of these parameters (one cohort patient per member,
  :func:`cohort_prior_draws`), which carries the cohort's spread and correlations into the ensemble.

**Insulin sensitivity** is carried by ``Vmx`` (insulin-dependent peripheral utilisation) and ``kp3`` (insulin
suppression of hepatic glucose production), the model's two insulin-action gains: their product with the
insulin action states is what the oral minimal model calls insulin sensitivity (Dalla Man et al. 2002 IEEE
TBME 49(5):419-429; 2007 IEEE TBME 54(10):1740-1749), and the same pair is what
:class:`~medtwin.physiology.calibrate.TwinCalibrator` fits. The reported ratio is the geometric mean of their
two multipliers, ``exp(mean over members of (log m_Vmx + log m_kp3) / 2)``: 1 means "as the twin started".

The CGM observation is ``Gs / Vg + e + v`` with ``v`` white (``white_sd_mg_dl``). The analysis is the
ensemble adjustment Kalman filter for a scalar observation (Anderson 2001, Mon Weather Rev 129:2884-2903):
deterministic, so a member's update needs no perturbed observation; it updates the glucose, gut and
insulin-action states, the sensor error and the multipliers (the insulin compartments are driven by the
known insulin delivery and are left alone). Process noise: a random walk on plasma glucose mass for
unmodelled disturbances, the multipliers' drift, the sensor error's OU noise, and a log-normal error on
each announced meal's size per member (carbohydrate counting).

Known inputs between readings (carbohydrate ``g`` eaten at ``EATING_RATE_G_PER_MIN`` from the announced
time, insulin boluses ``U`` and basal rates ``U/h`` from their time on) enter the model as their average
rate over each integration step: mass is conserved exactly and timing is resolved to one step
(``step_min``). Readings may come at any spacing; each patient is advanced by its own interval in the
same batched solve (time is rescaled per row: ``dy/ds = h_row f(y)``), rows needing the same number of
steps being integrated together with the classical RK4 of :mod:`medtwin.solve`.

Policies (see also :mod:`medtwin.twin.live`): a reading older than the filter's time cannot be folded in
(the ensemble cannot go back) and is skipped; an input (meal, bolus, basal) up to ``late_input_min`` late
is applied at the filter's time (its amount matters more than its minutes), an older one is skipped; a gap
longer than ``max_gap_min`` restarts the states around the new reading (the multipliers are kept).

Everything is pure numpy; randomness comes from each filter's own ``numpy.random.Generator``, so a
patient's results do not depend on which other patients share a batch, and a persisted filter (with its
generator state) resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medtwin.arrays import Array
from medtwin.model.rngstate import generator_from_json, generator_to_json
from medtwin.physiology.devices import CGMSensor
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.scenario import MAX_MEAL_CARBS_G
from medtwin.physiology.uva_padova import (
    DRIFTING,
    PARAMETER_NAMES,
    PMOL_PER_UNIT,
    STATES,
    PatientParameters,
    rhs,
)
from medtwin.solve import RK4, integrate

#: Eating speed of an announced meal, g/min (the academic simulator's and :func:`.simulate.eaten_per_minute`'s).
EATING_RATE_G_PER_MIN = 5.0
#: Parameters the filter estimates online, as log multipliers on the twin's starting values.
AUGMENTED: tuple[str, ...] = DRIFTING  # the model's declared drifting parameters (one source of truth)
#: The parameters whose multipliers make up the reported insulin sensitivity (geometric mean).
INSULIN_SENSITIVITY: tuple[str, ...] = ("Vmx", "kp3")
#: Log-SD of each augmented parameter over the 30 published virtual patients (Gaussian prior, no cohort draws).
COHORT_SD_LOG: tuple[float, ...] = (0.50, 0.50, 0.30, 1.00, 0.43, 0.46, 0.39)
N_STATES = len(STATES)
_PARAM_INDEX = {name: i for i, name in enumerate(PARAMETER_NAMES)}
_AUG_COLUMNS = tuple(_PARAM_INDEX[p] for p in AUGMENTED)
_SI = [AUGMENTED.index(p) for p in INSULIN_SENSITIVITY]
# model states the analysis updates: qsto1, qsto2, qgut, Gp, Gt, X, Gs
_UPDATED_STATES = np.array([0, 1, 2, 3, 4, 6, 12])
# states that cannot be negative (all but the insulin action X, which is relative to basal)
_NONNEGATIVE = np.array([i for i in range(N_STATES) if i != 6])
_VG_INDEX = _PARAM_INDEX["Vg"]
_BW_INDEX = _PARAM_INDEX["BW"]
_GP, _GT, _X, _I1, _ID, _IP, _IL, _ISC1, _ISC2, _GS, _D = 3, 4, 6, 7, 8, 5, 9, 10, 11, 12, 13
MAX_BOLUS_U = 50.0
MAX_BASAL_U_PER_H = 30.0


def _sensor_error_statistics(sensor: CGMSensor) -> tuple[float, float, float]:
    """Mean (mg/dL), SD (mg/dL) and correlation time (min) of a :class:`CGMSensor`'s error, in closed form.

    The latent ``e`` is AR(1) per 15 min, ``e_k = a (e_{k-1} + v_k)``, stationary variance
    ``s^2 = a^2 / (1 - a^2)``; the error is ``xi + lambda sinh(z)``, ``z = (e - gamma) / delta`` normal with
    mean ``m = -gamma/delta`` and variance ``w = s^2/delta^2``, so ``E sinh z = sinh(m) e^(w/2)`` and
    ``E sinh^2 z = (cosh(2m) e^(2w) - 1) / 2``. The correlation time of the latent process is
    ``-15 / ln a`` minutes."""
    a = sensor.pacf
    s2 = a * a / (1.0 - a * a)
    m = -sensor.johnson_gamma / sensor.johnson_delta
    w = s2 / sensor.johnson_delta**2
    mean_sinh = math.sinh(m) * math.exp(w / 2)
    var_sinh = (math.cosh(2 * m) * math.exp(2 * w) - 1.0) / 2.0 - mean_sinh**2
    mean = sensor.johnson_xi_mg_dl + sensor.johnson_lambda_mg_dl * mean_sinh
    sd = sensor.johnson_lambda_mg_dl * math.sqrt(var_sinh)
    return mean, sd, -15.0 / math.log(a)


_SENSOR_MEAN, _SENSOR_SD, _SENSOR_TAU = _sensor_error_statistics(CGMSensor())


@dataclass(frozen=True)
class FilterSettings:
    """Configuration of the filter. Noise settings were tuned on adult#001-#003 (benchmarks/bench_forecast.py
    evaluates on the other 27 virtual patients); the sensor settings are the published error model's."""

    n_members: int = 32
    step_min: float = 2.0  # largest RK4 step (stable for the cohort's fastest rates at <= 2.5 min)
    sensor_mean_mg_dl: float = _SENSOR_MEAN
    sensor_sd_mg_dl: float = _SENSOR_SD
    sensor_tau_min: float = _SENSOR_TAU
    white_sd_mg_dl: float = 6.0
    glucose_noise_mg_dl_per_sqrt_min: float = 0.4
    disturbance_sd_mg_dl_per_min: float = 0.2
    disturbance_tau_min: float = 45.0
    prior_sd_log: tuple[float, ...] = COHORT_SD_LOG  # per AUGMENTED: Gaussian prior when not drawn from a cohort
    drift_sd_log_per_sqrt_h: tuple[float, ...] = (0.05,) * len(AUGMENTED)
    min_log_multiplier: float = math.log(0.2)
    max_log_multiplier: float = math.log(5.0)
    carb_error_sd_log: float = 0.15
    forecast_noise_mg_dl_per_min: float = 0.18  # unmodelled SD added to prediction intervals, x horizon
    max_gap_min: float = 720.0
    late_input_min: float = 60.0
    eating_rate_g_per_min: float = EATING_RATE_G_PER_MIN

    @staticmethod
    def missing_records(base: FilterSettings | None = None) -> FilterSettings:
        """Settings for a person whose meals (and insulin) are not recorded: the unmodelled glucose rate
        ``disturbance`` (the model-error term the filter learns online) may be three times larger, so an
        unannounced meal's rise is taken up as a disturbance input from the CGM itself. Chosen on the TRAINING
        virtual patients streamed with no records (30- and 60-min RMSE of 0.2, 0.6, 1.2 and 2.0 mg/dL/min:
        0.6 the best at both), never on the real traces it is reported on."""
        return replace(base or FilterSettings(), disturbance_sd_mg_dl_per_min=0.6)

    def __post_init__(self) -> None:
        if not 4 <= self.n_members <= 1000:
            raise PhysiologyInputError("n_members", "must be between 4 and 1000")
        if not 0 < self.step_min <= 5:
            raise PhysiologyInputError("step_min", "must be in (0, 5] minutes")
        for name in ("sensor_sd_mg_dl", "sensor_tau_min", "white_sd_mg_dl", "max_gap_min",
                     "eating_rate_g_per_min"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise PhysiologyInputError(name, "must be positive and finite")
        for name in ("prior_sd_log", "drift_sd_log_per_sqrt_h"):
            value = getattr(self, name)
            if len(value) != len(AUGMENTED) or any(not (math.isfinite(v) and v >= 0) for v in value):
                raise PhysiologyInputError(name, f"needs {len(AUGMENTED)} non-negative values "
                                                 f"({', '.join(AUGMENTED)})")


@dataclass
class MealInput:
    """An announced meal: eaten at the eating rate from ``time_min``; ``factors`` (M,) are the members'
    multipliers on the announced carbohydrate (carbohydrate-counting error)."""

    time_min: float
    carbs_g: float
    factors: Array

    def end_min(self, rate: float) -> float:
        return self.time_min + self.carbs_g / rate


@dataclass
class GlucoseFilter:
    """One patient's filter: ensemble, estimated multipliers, the inputs it knows of, bookkeeping."""

    patient_id: str
    reference: Array  # (34,) the twin's starting parameters (UVA/Padova order)
    states: Array  # (M, 14)
    sensor_error: Array  # (M,) mg/dL
    theta: Array  # (M, len(AUGMENTED)) log multipliers
    disturbance: Array  # (M,) mg/dL/min: unmodelled glucose rate of change, decaying (OU)
    time_min: float  # data time of the last reading folded in
    basal_u_per_h: float
    rng: np.random.Generator
    started_min: float
    source: dict[str, Any] = field(default_factory=dict)
    meals: list[MealInput] = field(default_factory=list)
    boluses: list[tuple[float, float]] = field(default_factory=list)  # (time_min, U) not yet delivered
    basal_changes: list[tuple[float, float]] = field(default_factory=list)  # (time_min, U/h) not yet reached
    n_assimilated: int = 1
    n_skipped: int = 0
    n_restarts: int = 0
    last_reading_mg_dl: float = math.nan

    @property
    def n_members(self) -> int:
        return int(self.states.shape[0])

    def member_parameters(self) -> Array:
        """(M, 34): the reference with each member's multipliers applied."""
        return np.asarray(_member_parameters(self.reference[None, :], self.theta[None])[0], dtype=float)

    def glucose_mg_dl(self) -> Array:
        """Members' interstitial glucose (mg/dL), the sensor error removed."""
        return np.asarray(self.states[:, _GS] / self.reference[_PARAM_INDEX["Vg"]], dtype=float)

    def multiplier(self, name: str) -> tuple[float, float]:
        """(exp(mean log multiplier), SD of the log multiplier) of an AUGMENTED parameter."""
        if name not in AUGMENTED:
            raise PhysiologyInputError("name", f"not an estimated parameter: {name!r}")
        j = AUGMENTED.index(name)
        return float(np.exp(self.theta[:, j].mean())), float(self.theta[:, j].std(ddof=1))

    def insulin_sensitivity(self) -> tuple[float, float]:
        """(ratio to the starting twin, SD of its log over the members): the geometric mean of the ``Vmx``
        and ``kp3`` multipliers."""
        log_si = self.theta[:, _SI].mean(axis=1)
        return float(np.exp(log_si.mean())), float(log_si.std(ddof=1))

    # --- persistence ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; floats round-trip exactly; the generator state's 128-bit integers are strings."""
        return {
            "format": 1,
            "patient_id": self.patient_id,
            "reference": self.reference.tolist(),
            "states": self.states.tolist(),
            "sensor_error": self.sensor_error.tolist(),
            "theta": self.theta.tolist(),
            "disturbance": self.disturbance.tolist(),
            "augmented": list(AUGMENTED),
            "time_min": self.time_min,
            "basal_u_per_h": self.basal_u_per_h,
            "rng": generator_to_json(self.rng),
            "started_min": self.started_min,
            "source": self.source,
            "meals": [{"time_min": m.time_min, "carbs_g": m.carbs_g, "factors": m.factors.tolist()}
                      for m in self.meals],
            "boluses": [list(b) for b in self.boluses],
            "basal_changes": [list(b) for b in self.basal_changes],
            "n_assimilated": self.n_assimilated,
            "n_skipped": self.n_skipped,
            "n_restarts": self.n_restarts,
            "last_reading_mg_dl": None if math.isnan(self.last_reading_mg_dl) else self.last_reading_mg_dl,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GlucoseFilter:
        try:
            if data.get("format") != 1 or tuple(data["augmented"]) != AUGMENTED:
                raise PhysiologyInputError("filter", "stored filter state has an unknown format")
            rng = generator_from_json(data["rng"])
            reading = data.get("last_reading_mg_dl")
            return cls(
                patient_id=str(data["patient_id"]),
                reference=np.asarray(data["reference"], dtype=float),
                states=np.asarray(data["states"], dtype=float).reshape(-1, N_STATES),
                sensor_error=np.asarray(data["sensor_error"], dtype=float),
                theta=np.asarray(data["theta"], dtype=float).reshape(-1, len(AUGMENTED)),
                disturbance=np.asarray(data["disturbance"], dtype=float),
                time_min=float(data["time_min"]),
                basal_u_per_h=float(data["basal_u_per_h"]),
                rng=rng,
                started_min=float(data["started_min"]),
                source=dict(data.get("source") or {}),
                meals=[MealInput(float(m["time_min"]), float(m["carbs_g"]), np.asarray(m["factors"], dtype=float))
                       for m in data["meals"]],
                boluses=[(float(t), float(u)) for t, u in data["boluses"]],
                basal_changes=[(float(t), float(r)) for t, r in data["basal_changes"]],
                n_assimilated=int(data["n_assimilated"]),
                n_skipped=int(data["n_skipped"]),
                n_restarts=int(data.get("n_restarts", 0)),
                last_reading_mg_dl=math.nan if reading is None else float(reading),
            )
        except PhysiologyInputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PhysiologyInputError("filter", f"stored filter state is malformed: {exc!r}") from None


# --- starting a filter ----------------------------------------------------------------------------------


def basal_insulin_states(params: Array, basal_u_per_h: Array) -> Array:
    """Steady-state insulin states under a constant basal rate: (n, 14) with Ip, X, I1, Id, Il, Isc1, Isc2 set
    (Dalla Man et al. 2007 steady-state relations; ``X = I - Ib`` at rest). ``params`` (n, 34)."""
    g = {k: params[:, _PARAM_INDEX[k]] for k in ("BW", "ka1", "ka2", "kd", "m1", "m2", "m4", "m30", "Vi", "Ib")}
    u = np.asarray(basal_u_per_h, dtype=float) / 60.0 * PMOL_PER_UNIT / g["BW"]
    isc1 = u / (g["ka1"] + g["kd"])
    isc2 = g["kd"] * isc1 / g["ka2"]
    ip = (g["ka1"] * isc1 + g["ka2"] * isc2) / ((g["m2"] + g["m4"]) - g["m1"] * g["m2"] / (g["m1"] + g["m30"]))
    il = g["m2"] * ip / (g["m1"] + g["m30"])
    insulin = ip / g["Vi"]
    out = np.zeros((params.shape[0], N_STATES))
    out[:, _IP], out[:, _IL], out[:, _ISC1], out[:, _ISC2] = ip, il, isc1, isc2
    out[:, _I1] = out[:, _ID] = insulin
    out[:, _X] = insulin - g["Ib"]
    return out


def _glucose_states(params: Array, glucose_mg_dl: Array) -> tuple[Array, Array]:
    """(Gp, Gt) in mg/kg for plasma glucose ``glucose_mg_dl`` at rest: Gt from the tissue balance
    ``Gt`` scaled like the basal steady state of :func:`.uva_padova.steady_state_parameters`."""
    vg = params[:, _PARAM_INDEX["Vg"]]
    gb = params[:, _PARAM_INDEX["Gb"]]
    k1, k2 = params[:, _PARAM_INDEX["k1"]], params[:, _PARAM_INDEX["k2"]]
    gpb = gb * vg
    egpb, fsnc = params[:, _PARAM_INDEX["EGPb"]], params[:, _PARAM_INDEX["Fsnc"]]
    ke1, ke2 = params[:, _PARAM_INDEX["ke1"]], params[:, _PARAM_INDEX["ke2"]]
    renal = np.where(gpb > ke2, ke1 * (gpb - ke2), 0.0)
    gtb = (fsnc - egpb + renal + k1 * gpb) / k2
    gp = glucose_mg_dl * vg
    return gp, np.maximum(gtb * gp / gpb, 0.0)


def start_filter(
    patient_id: str,
    reference: PatientParameters,
    *,
    time_min: float,
    glucose_mg_dl: float,
    basal_u_per_h: float,
    settings: FilterSettings,
    rng: np.random.Generator,
    prior_sd_log: Sequence[float] | None = None,
    prior_theta: Array | None = None,
    source: dict[str, Any] | None = None,
) -> GlucoseFilter:
    """A filter at its first reading: members at rest under ``basal_u_per_h``, their interstitial glucose the
    reading minus a draw of the sensor error, multipliers drawn around 1 with ``prior_sd_log`` (default: the
    settings' cohort prior; a fitted twin passes its posterior SDs). ``rng`` seeds the filter's own generator."""
    if reference.n != 1:
        raise PhysiologyInputError("reference", "must hold exactly one patient")
    _check_reading(glucose_mg_dl)
    _check_value("basal_u_per_h", basal_u_per_h, MAX_BASAL_U_PER_H)
    sd = np.asarray(settings.prior_sd_log if prior_sd_log is None else prior_sd_log, dtype=float)
    if sd.shape != (len(AUGMENTED),) or np.any(~np.isfinite(sd)) or np.any(sd < 0):
        raise PhysiologyInputError("prior_sd_log", f"needs {len(AUGMENTED)} non-negative values")
    own = np.random.default_rng(rng.integers(0, 2**63 - 1))
    m = settings.n_members
    if prior_theta is not None:
        theta = np.asarray(prior_theta, dtype=float)
        if theta.shape != (m, len(AUGMENTED)) or not np.all(np.isfinite(theta)):
            raise PhysiologyInputError("prior_theta", f"expected finite values shaped {(m, len(AUGMENTED))}")
    else:
        theta = own.standard_normal((m, len(AUGMENTED))) * sd
    theta = np.clip(theta, settings.min_log_multiplier, settings.max_log_multiplier)
    error = settings.sensor_mean_mg_dl + settings.sensor_sd_mg_dl * own.standard_normal(m)
    ref = reference.values[0].copy()
    filt = GlucoseFilter(
        patient_id=patient_id, reference=ref, states=np.zeros((m, N_STATES)), sensor_error=error, theta=theta,
        disturbance=settings.disturbance_sd_mg_dl_per_min * own.standard_normal(m),
        time_min=float(time_min), basal_u_per_h=float(basal_u_per_h), rng=own, started_min=float(time_min),
        source=dict(source or {}), last_reading_mg_dl=float(glucose_mg_dl),
    )
    _rest_at(filt, np.ones(m, dtype=bool), glucose_mg_dl)
    return filt


def cohort_prior_draws(reference: PatientParameters, cohort: PatientParameters, n: int, rng: np.random.Generator,
                       *, shrink: float = 1.0, jitter_sd_log: float = 0.05) -> Array:
    """(n, len(AUGMENTED)) initial log multipliers: the cohort's patients' own values of the augmented
    parameters relative to ``reference`` (each member one cohort patient, cycling through a permutation),
    times ``shrink``, plus ``jitter_sd_log`` normal jitter. Keeps the cohort's correlations between them."""
    if cohort.n < 2:
        raise PhysiologyInputError("cohort", "needs at least 2 patients")
    columns = list(_AUG_COLUMNS)
    deviations = np.log(cohort.values[:, columns] / reference.values[0, columns])
    order = np.concatenate([rng.permutation(cohort.n) for _ in range(n // cohort.n + 1)])[:n]
    return np.asarray(shrink * deviations[order] + jitter_sd_log * rng.standard_normal((n, len(AUGMENTED))))


def _rest_at(filt: GlucoseFilter, rows: NDArray[np.bool_], reading: float) -> None:
    """Put the selected members at rest under the current basal rate, at the reading minus their sensor error."""
    params = filt.member_parameters()[rows]
    glucose = np.maximum(reading - filt.sensor_error[rows], 20.0)
    states = basal_insulin_states(params, np.full(params.shape[0], filt.basal_u_per_h))
    gp, gt = _glucose_states(params, glucose)
    states[:, _GP], states[:, _GT], states[:, _GS] = gp, gt, gp
    filt.states[rows] = states


def _check_reading(glucose_mg_dl: float) -> None:
    if not (math.isfinite(glucose_mg_dl) and 10.0 <= glucose_mg_dl <= 1000.0):
        raise PhysiologyInputError("glucose_mg_dl", f"a CGM reading must lie within 10-1000 mg/dL, got {glucose_mg_dl}")


def _check_value(name: str, value: float, upper: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= upper):
        raise PhysiologyInputError(name, f"must be finite and within 0-{upper:g}, got {value}")


# --- inputs ---------------------------------------------------------------------------------------------


def add_input(filt: GlucoseFilter, kind: str, time_min: float, value: float, settings: FilterSettings) -> bool:
    """Tell the filter about a meal (``"carbs"``, g), bolus (``"bolus"``, U) or basal rate (``"basal"``, U/h)
    at ``time_min``. Returns False if it was too late to use (older than ``late_input_min`` before the
    filter's time); a late but usable input is applied at the filter's time."""
    if not math.isfinite(time_min):
        raise PhysiologyInputError("time_min", "must be finite")
    limits = {"carbs": MAX_MEAL_CARBS_G, "bolus": MAX_BOLUS_U, "basal": MAX_BASAL_U_PER_H}
    if kind not in limits:
        raise PhysiologyInputError("kind", f"unknown input {kind!r}; expected carbs, bolus or basal")
    _check_value(kind, value, limits[kind])
    if time_min < filt.time_min:
        if filt.time_min - time_min > settings.late_input_min:
            filt.n_skipped += 1
            return False
        time_min = filt.time_min
    if kind == "carbs":
        if value > 0:
            factors = np.exp(settings.carb_error_sd_log * filt.rng.standard_normal(filt.n_members))
            filt.meals.append(MealInput(float(time_min), float(value), factors))
            filt.meals.sort(key=lambda meal: meal.time_min)
    elif kind == "bolus":
        if value > 0:
            filt.boluses.append((float(time_min), float(value)))
            filt.boluses.sort()
    else:
        if time_min == filt.time_min and not any(t == time_min for t, _ in filt.basal_changes):
            filt.basal_u_per_h = float(value)  # takes effect now: nothing between here and the next reading
        else:
            filt.basal_changes = sorted([c for c in filt.basal_changes if c[0] != time_min] + [(time_min, value)])
    return True


# --- propagation ----------------------------------------------------------------------------------------


def _member_parameters(reference: Array, theta: Array) -> Array:
    """(P, M, 34) parameters from references (P, 34) and log multipliers (P, M, A)."""
    p, m = theta.shape[:2]
    out = np.repeat(reference[:, None, :], m, axis=1)
    out[:, :, list(_AUG_COLUMNS)] *= np.exp(theta)
    return out


@dataclass(frozen=True)
class _Plan:
    """Per-step inputs of a batch of patients advanced by ``n_steps`` equal steps each."""

    carbs_g: Array  # (P, M, K) grams eaten by each member in each step
    meal_start: NDArray[np.bool_]  # (P, K) a meal starts in this step (last-meal memory resets)
    insulin_u: Array  # (P, K) basal units delivered in each step
    bolus_u: Array  # (P, K+1) bolus units given at each grid point (the nearest to the bolus time)


def _plan(filters: Sequence[GlucoseFilter], t0: Array, step: Array, n_steps: int, settings: FilterSettings) -> _Plan:
    p, m, k = len(filters), filters[0].n_members, n_steps
    rate = settings.eating_rate_g_per_min
    edges = t0[:, None] + step[:, None] * np.arange(-1, k + 1)[None, :]  # (P, K+2): from one step before
    # meals, padded to the patient with most
    q = max(1, max(len(f.meals) for f in filters))
    start = np.full((p, q), np.inf)
    end = np.full((p, q), np.inf)
    factors = np.zeros((p, m, q))
    for i, f in enumerate(filters):
        for j, meal in enumerate(f.meals):
            start[i, j], end[i, j] = meal.time_min, meal.end_min(rate)
            factors[i, :, j] = meal.factors
    lo, hi = edges[:, :-1, None], edges[:, 1:, None]  # (P, K+1, 1)
    eaten = np.clip(np.minimum(hi, end[:, None, :]) - np.maximum(lo, start[:, None, :]), 0.0, None) * rate
    eating = eaten.sum(axis=2) > 0  # (P, K+1), column 0 is the step before t0
    carbs = np.einsum("pkq,pmq->pmk", eaten[:, 1:, :], factors)
    meal_start = eating[:, 1:] & ~eating[:, :-1]
    # insulin: cumulative basal with its changes, plus boluses in each step [a, b)
    n_changes = max(1, max(len(f.basal_changes) for f in filters))
    change_t = np.full((p, n_changes), np.inf)
    change_d = np.zeros((p, n_changes))
    r0 = np.array([f.basal_u_per_h for f in filters])
    for i, f in enumerate(filters):
        previous = f.basal_u_per_h
        for j, (t, r) in enumerate(f.basal_changes):
            change_t[i, j], change_d[i, j] = t, r - previous
            previous = r
    grid = edges[:, 1:]  # (P, K+1) from t0
    cumulative = r0[:, None] * (grid - t0[:, None]) + np.sum(
        change_d[:, None, :] * np.clip(grid[:, :, None] - change_t[:, None, :], 0.0, None), axis=2)
    insulin = np.diff(cumulative, axis=1) / 60.0
    n_bolus = max(1, max(len(f.boluses) for f in filters))
    bolus_t = np.full((p, n_bolus), np.inf)
    bolus_u = np.zeros((p, n_bolus))
    for i, f in enumerate(filters):
        for j, (t, u) in enumerate(f.boluses):
            bolus_t[i, j], bolus_u[i, j] = t, u
    # a bolus before t1 is given at the nearest grid point (instantaneous, as the simulator does); one at or
    # after t1 waits for the next advance
    nearest = np.clip(np.round((bolus_t - t0[:, None]) / step[:, None]), 0, k)
    due = bolus_t < grid[:, -1:]
    boluses = np.zeros((p, k + 1))
    rows = np.repeat(np.arange(p)[:, None], n_bolus, axis=1)
    np.add.at(boluses, (rows[due], nearest[due].astype(int)), bolus_u[due])
    return _Plan(carbs_g=carbs, meal_start=meal_start, insulin_u=insulin, bolus_u=boluses)


def _integrate(states: Array, params: Array, step: Array, plan: _Plan, n_steps: int, disturbance: Array,
               tau_min: float, outputs_at: Array | None = None) -> Array:
    """Advance (P, M, 14) states by ``n_steps`` steps of ``step`` (P,) minutes each (all rows in lockstep on
    the rescaled time ``s`` in [0, n_steps]); ``disturbance`` (P, M) mg/dL/min is added to the plasma glucose
    rate, decaying with ``tau_min``. Returns the states at ``outputs_at`` (default: the end) as
    (len(outputs_at), P, M, 14)."""
    p, m = states.shape[:2]
    n = p * m
    flat_params = np.asfortranarray(params.reshape(n, -1))  # the equations index columns: contiguous
    row_step = np.repeat(step, m)[:, None]
    row_minutes = row_step[:, 0]
    push = disturbance.reshape(n) * params.reshape(n, -1)[:, _VG_INDEX] * row_minutes  # mg/kg per unit s
    carbs_rate = (plan.carbs_g / step[:, None, None]).reshape(n, n_steps)  # g/min
    insulin_rate = np.repeat(plan.insulin_u / step[:, None], m, axis=0)  # U/min
    eaten_mg = plan.carbs_g.reshape(n, n_steps) * 1000.0
    starts = np.repeat(plan.meal_start, m, axis=0)
    bolus_pmol_per_kg = np.repeat(plan.bolus_u, m, axis=0) * PMOL_PER_UNIT / params.reshape(n, -1)[:, _BW_INDEX, None]
    u = np.empty((n, 2), order="F")
    last = n_steps - 1

    def f(s: float, y: Array) -> Array:
        k = min(int(s), last)
        u[:, 0] = carbs_rate[:, k]
        u[:, 1] = insulin_rate[:, k]
        dy = row_step * rhs(s, np.asfortranarray(y), flat_params, u)
        dy[:, _GP] += push * np.exp(-s * row_minutes / tau_min)
        return dy

    def jump(s: float, y: Array) -> Array:
        k = int(round(s))
        if k <= last:
            now = eaten_mg[:, k]
            start = starts[:, k] & (now > 0)
            going = ~starts[:, k] & (now > 0)
            y[:, _D] = np.where(start, y[:, 0] + y[:, 1] + now, np.where(going, y[:, _D] + now, y[:, _D]))
        y[:, _ISC1] += bolus_pmol_per_kg[:, k]
        return y

    grid = np.arange(n_steps + 1, dtype=float)
    t_eval = grid if outputs_at is None else np.union1d(grid, outputs_at)
    solution = integrate(f, states.reshape(n, N_STATES), t_eval, solver=RK4(step=1.0), breakpoints=grid,
                         on_breakpoint=jump)
    wanted = [n_steps] if outputs_at is None else outputs_at
    index = np.searchsorted(t_eval, wanted)
    return solution.y[index].reshape(len(index), p, m, N_STATES)


def _advance(filters: Sequence[GlucoseFilter], t1: Array, settings: FilterSettings, *, noise: bool,
             outputs_at_min: Array | None = None) -> Array:
    """Advance every filter to its ``t1`` (one batched solve per group needing the same step count).
    With ``noise`` the process noise is added (assimilation); without, the ensembles are copies (forecasts).
    Returns the states at the end, (P, M, 14), or at ``outputs_at_min`` after t0 (same for all: forecasts)."""
    t0 = np.array([f.time_min for f in filters])
    duration = t1 - t0
    counts = np.maximum(1, np.ceil(duration / settings.step_min - 1e-9)).astype(int)
    if outputs_at_min is not None:
        counts[:] = counts.max()
    out: Array | None = None
    for k in np.unique(counts):
        rows = np.flatnonzero(counts == k)
        group = [filters[int(i)] for i in rows]
        step = duration[rows] / k
        plan = _plan(group, t0[rows], step, int(k), settings)
        states = np.stack([g.states for g in group])
        params = _member_parameters(np.stack([g.reference for g in group]), np.stack([g.theta for g in group]))
        at = None if outputs_at_min is None else np.asarray(outputs_at_min) / step[0]
        disturbance = np.stack([g.disturbance for g in group])
        result = _integrate(states, params, step, plan, int(k), disturbance, settings.disturbance_tau_min, at)
        if out is None:
            out = np.empty((result.shape[0], len(filters), *result.shape[2:]))
        out[:, rows] = result
    assert out is not None
    if outputs_at_min is not None:
        out[..., _NONNEGATIVE] = np.maximum(out[..., _NONNEGATIVE], 0.0)
        return out
    end = out[0]
    end[..., _NONNEGATIVE] = np.maximum(end[..., _NONNEGATIVE], 0.0)
    for i, f in enumerate(filters):
        f.states = end[i].copy()
        if noise:
            _add_process_noise(f, float(duration[i]), settings)
        _consume_inputs(f, float(t1[i]), settings)
        f.time_min = float(t1[i])
    return np.asarray(end, dtype=float)


def _add_process_noise(f: GlucoseFilter, minutes: float, settings: FilterSettings) -> None:
    m = f.n_members
    vg = f.reference[_PARAM_INDEX["Vg"]]
    sd_gp = settings.glucose_noise_mg_dl_per_sqrt_min * math.sqrt(minutes) * vg
    f.states[:, _GP] = np.maximum(f.states[:, _GP] + sd_gp * f.rng.standard_normal(m), 0.0)
    a = math.exp(-minutes / settings.sensor_tau_min)
    mu = settings.sensor_mean_mg_dl
    f.sensor_error = mu + a * (f.sensor_error - mu) + math.sqrt(1 - a * a) * settings.sensor_sd_mg_dl * \
        f.rng.standard_normal(m)
    b = math.exp(-minutes / settings.disturbance_tau_min)
    f.disturbance = b * f.disturbance + math.sqrt(1 - b * b) * settings.disturbance_sd_mg_dl_per_min * \
        f.rng.standard_normal(m)
    drift = np.asarray(settings.drift_sd_log_per_sqrt_h) * math.sqrt(minutes / 60.0)
    f.theta = np.clip(f.theta + drift * f.rng.standard_normal(f.theta.shape), settings.min_log_multiplier,
                      settings.max_log_multiplier)


def _consume_inputs(f: GlucoseFilter, t1: float, settings: FilterSettings) -> None:
    rate = settings.eating_rate_g_per_min
    f.meals = [meal for meal in f.meals if meal.end_min(rate) > t1]
    f.boluses = [b for b in f.boluses if b[0] >= t1]
    for t, r in f.basal_changes:
        if t < t1:
            f.basal_u_per_h = r
    f.basal_changes = [c for c in f.basal_changes if c[0] >= t1]


# --- analysis -------------------------------------------------------------------------------------------


def _analyse(filters: Sequence[GlucoseFilter], readings: Array, settings: FilterSettings) -> Array:
    """Ensemble adjustment Kalman filter update for one scalar CGM reading per patient; returns innovations."""
    vg = np.array([f.reference[_PARAM_INDEX["Vg"]] for f in filters])
    states = np.stack([f.states for f in filters])  # (P, M, 14)
    error = np.stack([f.sensor_error for f in filters])  # (P, M)
    theta = np.stack([f.theta for f in filters])  # (P, M, A)
    disturbance = np.stack([f.disturbance for f in filters])  # (P, M)
    predicted = states[:, :, _GS] / vg[:, None] + error
    mean = predicted.mean(axis=1)
    anomaly = predicted - mean[:, None]
    m = predicted.shape[1]
    var = np.maximum((anomaly**2).sum(axis=1) / (m - 1), 1e-6)
    r = settings.white_sd_mg_dl**2
    var_post = 1.0 / (1.0 / var + 1.0 / r)
    mean_post = var_post * (mean / var + readings / r)
    shift = mean_post[:, None] + np.sqrt(var_post / var)[:, None] * anomaly - predicted  # (P, M)
    # regress every updated component on the predicted reading
    z = np.concatenate([states[:, :, _UPDATED_STATES], error[:, :, None], disturbance[:, :, None], theta],
                       axis=2)  # (P, M, L)
    cov = np.einsum("pml,pm->pl", z - z.mean(axis=1, keepdims=True), anomaly) / (m - 1)
    z = z + (cov / var[:, None])[:, None, :] * shift[:, :, None]
    n_updated = len(_UPDATED_STATES)
    states[:, :, _UPDATED_STATES] = z[:, :, :n_updated]
    states[..., _NONNEGATIVE] = np.maximum(states[..., _NONNEGATIVE], 0.0)
    theta = np.clip(z[:, :, n_updated + 2:], settings.min_log_multiplier, settings.max_log_multiplier)
    for i, f in enumerate(filters):
        f.states = states[i]
        f.sensor_error = z[i, :, n_updated]
        f.disturbance = z[i, :, n_updated + 1]
        f.theta = theta[i]
        f.n_assimilated += 1
        f.last_reading_mg_dl = float(readings[i])
    return np.asarray(readings - mean, dtype=float)


def assimilate(filters: Sequence[GlucoseFilter], times_min: Sequence[float] | Array,
               glucose_mg_dl: Sequence[float] | Array, settings: FilterSettings) -> Array:
    """Fold one CGM reading per filter into its ensemble: advance to the reading's time (known inputs,
    process noise), then update. All filters in one batched solve (grouped by step count). A reading not
    after the filter's time is skipped (``n_skipped``); one after a gap over ``max_gap_min`` restarts the
    states there. Returns the innovations (reading minus predicted mean; NaN where skipped or restarted)."""
    times = np.asarray(times_min, dtype=float)
    readings = np.asarray(glucose_mg_dl, dtype=float)
    if times.shape != (len(filters),) or readings.shape != times.shape:
        raise PhysiologyInputError("glucose_mg_dl", "needs one time and one reading per filter")
    for value in readings:
        _check_reading(float(value))
    innovations = np.full(len(filters), np.nan)
    if not filters:
        return innovations
    members = {f.n_members for f in filters}
    if len(members) != 1:
        raise PhysiologyInputError("filters", "all filters of a batch need the same number of members")
    now = np.array([f.time_min for f in filters])
    late = ~(times > now)
    gap = ~late & (times - now > settings.max_gap_min)
    for i in np.flatnonzero(late).tolist():
        filters[i].n_skipped += 1
    for i in np.flatnonzero(gap).tolist():  # restart the states at the reading (inputs during the gap are lost)
        f = filters[i]
        _consume_inputs(f, float(times[i]), settings)
        f.time_min = float(times[i])
        _rest_at(f, np.ones(f.n_members, dtype=bool), float(readings[i]))
        f.n_restarts += 1
        f.n_assimilated += 1
        f.last_reading_mg_dl = float(readings[i])
    rows = np.flatnonzero(~late & ~gap)
    if rows.size:
        group = [filters[int(i)] for i in rows]
        _advance(group, times[rows], settings, noise=True)
        innovations[rows] = _analyse(group, readings[rows], settings)
    return innovations


def propagate_copies(filters: Sequence[GlucoseFilter], horizons_min: Array, settings: FilterSettings) -> Array:
    """States of the ensembles ``horizons_min`` after each filter's time, with the known inputs and no
    process noise (forecasts); the filters are left unchanged. Returns (H, P, M, 14)."""
    horizon = float(np.max(horizons_min))
    t1 = np.array([f.time_min + horizon for f in filters])
    return _advance(filters, t1, settings, noise=False, outputs_at_min=np.asarray(horizons_min, dtype=float))
