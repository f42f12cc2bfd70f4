"""The type 1 diabetes twin as a service: fit a patient's glucose twin from a log, simulate scenarios and
compare regimens on it (or on a named virtual patient), and keep every result as a twin version.

Twin versions written here (``twin_versions`` rows, payload sealed by the store's codec):

* kind ``"glucose"``: a fitted :class:`~medtwin.physiology.calibrate.FittedTwin`; provenance names the
  algorithm, parameter set, data span, who fitted it and when;
* kind ``"glucose-simulation"``: a simulate or compare result; provenance names the scenario hash, the
  model, the parameter source (virtual patient name or glucose twin version) and the solver.

Services take what they need as arguments (the store, a clock, a ``numpy.random.Generator``); the HTTP
layer only parses, authorises and calls them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from medtwin.physiology.calibrate import FITTED, FittedTwin, GlucoseLog, TwinCalibrator, sample_twins
from medtwin.physiology.errors import PhysiologyInputError, UnknownPatientError
from medtwin.physiology.scenario import Regimen, Scenario
from medtwin.physiology.service import SimulationResult, simulate_scenario
from medtwin.physiology.simulate import DEFAULT_SOLVER
from medtwin.physiology.uva_padova import PARAMETER_NAMES, PatientParameters, virtual_patients
from medtwin.physiology.whatif import ComparisonResult, compare_regimens
from medtwin.solve import Dopri5, Solver
from medtwin.store.database import Store
from medtwin.store.twins import TwinRepository, TwinVersion

Clock = Callable[[], datetime]
GLUCOSE_KIND = "glucose"
SIMULATION_KIND = "glucose-simulation"
MODEL = "UvaPadova2008"
PARAMETER_SET = "uva_padova_2008"
FIT_ALGORITHM = (
    "MAP of (Gb, Vmx, kp3, kabs) in log space with cohort log-normal priors (scipy least_squares, trf); "
    "Laplace posterior with residual-autocorrelation inflation"
)
#: Spread of a virtual patient's ensemble: this fraction of the cohort's log-SD on the fitted parameters.
VIRTUAL_ENSEMBLE_SPREAD = 0.25
#: Work bounds of one request (a batched patient-day costs ~2 ms, a fit iteration-day ~0.15 s on 2 cores).
MAX_COMPARE_MEMBER_DAYS = 2000
MAX_FIT_ITERATION_DAYS = 600


# --- requests -------------------------------------------------------------------------------------------


class ParameterChoice(BaseModel):
    """Which parameters to run: the patient's fitted glucose twin if one is stored (and ``use_twin``),
    else the named virtual patient."""

    virtual_patient: str | None = Field(
        default=None, max_length=64, description="shipped virtual patient, e.g. adult#001"
    )
    use_twin: bool = Field(default=True, description="prefer the patient's fitted glucose twin if stored")
    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="random seed (default: the scenario's seed)"
    )


class SimulateRequest(ParameterChoice):
    model_config = ConfigDict(extra="forbid")
    scenario: Scenario


class CompareRequest(ParameterChoice):
    model_config = ConfigDict(extra="forbid")
    scenario: Scenario
    regimens: list[Regimen] = Field(min_length=1, max_length=10)
    n_ensemble: int = Field(default=50, ge=2, le=500, description="ensemble members (posterior draws)")

    @field_validator("n_ensemble")
    @classmethod
    def _bounded_work(cls, value: int, info: ValidationInfo) -> int:
        scenario, regimens = info.data.get("scenario"), info.data.get("regimens")
        if isinstance(scenario, Scenario) and isinstance(regimens, list):
            member_days = value * len(regimens) * scenario.horizon_min / 1440.0
            if member_days > MAX_COMPARE_MEMBER_DAYS:
                raise ValueError(
                    f"n_ensemble x regimens x days = {member_days:g} exceeds {MAX_COMPARE_MEMBER_DAYS} "
                    "simulated patient-days per request"
                )
        return value


# --- responses ------------------------------------------------------------------------------------------


class ParameterSource(BaseModel):
    kind: Literal["virtual_patient", "glucose_twin"]
    virtual_patient: str | None = None
    glucose_twin_version: int | None = None


class StoredSimulation(SimulationResult):
    """A simulation result and the twin version it was stored as."""

    patient_id: str
    result_version: int
    source: ParameterSource
    scenario_hash: str


class StoredComparison(ComparisonResult):
    """A regimen comparison and the twin version it was stored as."""

    patient_id: str
    result_version: int
    source: ParameterSource
    scenario_hash: str


class GlucoseTwinPublic(BaseModel):
    """The latest fitted glucose twin of a patient."""

    patient_id: str
    version: int
    created_at: datetime
    actor: str
    params_: dict[str, float]
    param_sd_: dict[str, float]
    residual_sd_mg_dl: float
    n_readings: int
    provenance: dict[str, Any]


# --- helpers --------------------------------------------------------------------------------------------


def scenario_hash(scenario: Scenario) -> str:
    """SHA-256 of the scenario's canonical JSON (sorted keys): equal scenarios hash equal."""
    canonical = orjson.dumps(scenario.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def solver_description(solver: Solver) -> dict[str, Any]:
    if isinstance(solver, Dopri5):
        return {"name": "Dopri5", "rtol": solver.rtol, "atol": solver.atol}
    return {"name": "RK4", "step": solver.step}


def _fitted_twin(version: TwinVersion) -> FittedTwin:
    return FittedTwin.model_validate(version.payload["twin"])


def latest_twin_version(store: Store, patient_id: str) -> TwinVersion | None:
    with store.connect() as connection:
        return TwinRepository(connection, store.codec).latest(patient_id, GLUCOSE_KIND)


def _virtual(name: str | None) -> PatientParameters:
    if name is None:
        raise PhysiologyInputError(
            "virtual_patient", "the patient has no fitted glucose twin; name a virtual patient (e.g. adult#001)"
        )
    try:
        return virtual_patients([name], PARAMETER_SET)
    except UnknownPatientError as exc:
        raise PhysiologyInputError("virtual_patient", exc.message) from None


def _choose(store: Store, patient_id: str, choice: ParameterChoice) -> tuple[FittedTwin | None, ParameterSource]:
    """The fitted twin (if used) and the parameter source; validates a virtual patient name up front."""
    stored = latest_twin_version(store, patient_id) if choice.use_twin else None
    if stored is not None:
        return _fitted_twin(stored), ParameterSource(kind="glucose_twin", glucose_twin_version=stored.version)
    _virtual(choice.virtual_patient)
    return None, ParameterSource(kind="virtual_patient", virtual_patient=choice.virtual_patient)


def virtual_ensemble(patient: PatientParameters, n: int, rng: np.random.Generator) -> PatientParameters:
    """``n`` members around a virtual patient: log-normal on (Gb, Vmx, kp3, kabs) with
    :data:`VIRTUAL_ENSEMBLE_SPREAD` times the cohort's log-SD (a virtual patient has no posterior)."""
    cohort = virtual_patients(None, PARAMETER_SET)
    index = [PARAMETER_NAMES.index(k) for k in FITTED]
    sd = np.log(cohort.values[:, index]).std(axis=0, ddof=1) * VIRTUAL_ENSEMBLE_SPREAD
    mean = np.log(patient.values[0, index])
    thetas = mean + rng.standard_normal((n, len(FITTED))) * sd
    return sample_twins(patient, thetas, float(patient.basal_rate_u_per_min()[0] * 60.0))


def _twin_ensemble(twin: FittedTwin, n: int, rng: np.random.Generator) -> PatientParameters:
    patient = twin.parameters()
    mean = np.log([twin.fitted[k] for k in FITTED])
    thetas = rng.multivariate_normal(mean, np.asarray(twin.covariance_log), size=n)
    return sample_twins(patient, thetas, float(patient.basal_rate_u_per_min()[0] * 60.0))


def _store_result(
    store: Store, patient_id: str, payload: dict[str, Any], provenance: dict[str, Any], *, actor: str,
    now: datetime,
) -> int:
    with store.begin() as connection:
        return TwinRepository(connection, store.codec).add_version(
            patient_id, SIMULATION_KIND, payload, provenance, actor=actor, now=now
        )


# --- services -------------------------------------------------------------------------------------------


def simulate(
    store: Store,
    patient_id: str,
    request: SimulateRequest,
    *,
    actor: str,
    clock: Clock,
    rng: np.random.Generator,
    solver: Solver = DEFAULT_SOLVER,
) -> StoredSimulation:
    """Simulate ``request.scenario`` on the patient's glucose twin (or a virtual patient); store the result
    as a ``glucose-simulation`` twin version naming where its parameters came from."""
    twin, source = _choose(store, patient_id, request)
    params = twin.parameters() if twin is not None else _virtual(request.virtual_patient)
    result = simulate_scenario(params, request.scenario, rng=rng, solver=solver)
    version, digest = _record_run(store, patient_id, "simulate", request.scenario, source, result, {},
                                  solver=solver_description(solver), seed=request.seed, actor=actor, clock=clock)
    return StoredSimulation(
        **result.model_dump(), patient_id=patient_id, result_version=version, source=source, scenario_hash=digest
    )


def compare(
    store: Store,
    patient_id: str,
    request: CompareRequest,
    *,
    actor: str,
    clock: Clock,
    rng: np.random.Generator,
) -> StoredComparison:
    """Compare regimens over an ensemble: posterior draws of the fitted twin, or draws around the virtual
    patient; stored as a ``glucose-simulation`` twin version."""
    twin, source = _choose(store, patient_id, request)
    if twin is not None:
        ensemble = _twin_ensemble(twin, request.n_ensemble, rng)
        ensemble_kind = "fitted posterior (Laplace, log-normal)"
    else:
        ensemble = virtual_ensemble(_virtual(request.virtual_patient), request.n_ensemble, rng)
        ensemble_kind = f"virtual patient, {VIRTUAL_ENSEMBLE_SPREAD:g} x cohort log-SD on {', '.join(FITTED)}"
    result = compare_regimens(ensemble, request.scenario, request.regimens, rng=rng)
    extra = {"ensemble": {"n": request.n_ensemble, "from": ensemble_kind},
             "regimens": [r.name for r in request.regimens]}
    version, digest = _record_run(store, patient_id, "compare", request.scenario, source, result, extra,
                                  solver=solver_description(DEFAULT_SOLVER), seed=request.seed, actor=actor,
                                  clock=clock)
    return StoredComparison(
        **result.model_dump(), patient_id=patient_id, result_version=version, source=source, scenario_hash=digest
    )


def _record_run(store: Store, patient_id: str, operation: str, scenario: Scenario, source: Any, result: BaseModel,
                extra: dict[str, Any], *, solver: Any, seed: Any, actor: str, clock: Clock) -> tuple[int, str]:
    """Store a simulate/compare result as a ``glucose-simulation`` twin version; returns (version, hash)."""
    digest = scenario_hash(scenario)
    now = clock()
    provenance = {"operation": operation, "scenario_hash": digest, "model": MODEL,
                  "parameter_source": source.model_dump(exclude_none=True), **extra, "solver": solver,
                  "seed": seed, "by": actor, "at": now.isoformat()}
    payload = {"scenario": scenario.model_dump(mode="json"), "result": result.model_dump(mode="json")}
    return _store_result(store, patient_id, payload, provenance, actor=actor, now=now), digest


def _public(patient_id: str, stored: TwinVersion) -> GlucoseTwinPublic:
    twin = _fitted_twin(stored)
    payload = stored.payload
    return GlucoseTwinPublic(
        patient_id=patient_id,
        version=stored.version,
        created_at=stored.created_at,
        actor=stored.actor,
        params_=payload["params_"],
        param_sd_=payload["param_sd_"],
        residual_sd_mg_dl=twin.residual_sd_mg_dl,
        n_readings=twin.n_readings,
        provenance=stored.provenance,
    )


def fit(
    store: Store,
    patient_id: str,
    log: GlucoseLog,
    *,
    actor: str,
    clock: Clock,
    max_iterations: int = 30,
) -> GlucoseTwinPublic:
    """Personalise the glucose twin from a log (>= 3 days of CGM) and store it as a ``glucose`` version."""
    days = log.minutes / 1440.0
    if days * max_iterations > MAX_FIT_ITERATION_DAYS:
        raise PhysiologyInputError(
            "max_iterations",
            f"{max_iterations} iterations x {days:.1f} days exceeds {MAX_FIT_ITERATION_DAYS} iteration-days; "
            "lower max_iterations or send a shorter log",
        )
    calibrator = TwinCalibrator(max_iterations=max_iterations).fit(log)
    twin = calibrator.to_twin()
    now = clock()
    t = np.asarray(log.cgm_t_min)
    provenance = {
        "algorithm": FIT_ALGORITHM,
        "model": MODEL,
        "parameter_set": PARAMETER_SET,
        "fitted_parameters": list(FITTED),
        "max_iterations": max_iterations,
        "data_span": {
            "start_min": float(t[0]),
            "end_min": float(t[-1]),
            "days": round(float(t[-1] - t[0]) / 1440.0, 3),
            "n_readings": len(log.cgm_mg_dl),
            "n_meals": len(log.meals),
            "n_boluses": len(log.boluses),
        },
        "by": actor,
        "at": now.isoformat(),
    }
    payload = {
        "twin": twin.model_dump(mode="json"),
        "params_": calibrator.params_,
        "param_sd_": calibrator.param_sd_,
    }
    with store.begin() as connection:
        version = TwinRepository(connection, store.codec).add_version(
            patient_id, GLUCOSE_KIND, payload, provenance, actor=actor, now=now
        )
    stored = TwinVersion(patient_id=patient_id, version=version, kind=GLUCOSE_KIND, created_at=now, actor=actor,
                         provenance=provenance, payload=payload)
    return _public(patient_id, stored)


def latest(store: Store, patient_id: str) -> GlucoseTwinPublic | None:
    """The latest fitted glucose twin, or None."""
    stored = latest_twin_version(store, patient_id)
    return None if stored is None else _public(patient_id, stored)
