"""The fitted type 1 diabetes twin as a service: personalise a patient's glucose twin from a log and keep it
as a twin version; ensembles around it or around a shipped virtual patient.

Twin versions written here (``twin_versions`` rows, payload sealed by the store's codec): kind ``"glucose"``,
a fitted :class:`~medtwin.physiology.calibrate.FittedTwin`; provenance names the algorithm, parameter set,
data span, who fitted it and when. What-if runs on the patient's own twin (live, else fitted) live in
:mod:`medtwin.twin.glucose_whatif` (kind ``"glucose-simulation"``), which sits above this module and the live
twin (:mod:`medtwin.twin.live`, which starts from the fitted twin).

Services take what they need as arguments (the store, a clock, a ``numpy.random.Generator``); the HTTP
layer only parses, authorises and calls them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from medtwin.physiology.calibrate import FITTED, FittedTwin, GlucoseLog, TwinCalibrator, sample_twins
from medtwin.physiology.errors import PhysiologyInputError, UnknownPatientError
from medtwin.physiology.scenario import Scenario
from medtwin.physiology.uva_padova import PARAMETER_NAMES, PatientParameters, virtual_patients
from medtwin.solve import Solver
from medtwin.store.database import Store
from medtwin.store.twins import TwinRepository, TwinVersion
from medtwin.twin.stamp import TwinVersionStamp

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


# --- responses ------------------------------------------------------------------------------------------


class GlucoseTwinPublic(TwinVersionStamp):
    """The latest fitted glucose twin of a patient."""

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
    """The solver's class name and its settings (a solver is a small frozen dataclass)."""
    settings: dict[str, Any] = asdict(solver) if is_dataclass(solver) and not isinstance(solver, type) else {}
    return {"name": type(solver).__name__, **settings}


def _fitted_twin(version: TwinVersion) -> FittedTwin:
    return FittedTwin.model_validate(version.payload["twin"])


def latest_twin_version(store: Store, patient_id: str) -> TwinVersion | None:
    with store.connect() as connection:
        return TwinRepository(connection, store.codec).latest(patient_id, GLUCOSE_KIND)


def virtual_patient(name: str | None) -> PatientParameters:
    """A shipped virtual patient by name (e.g. adult#001); a missing or unknown name names the field."""
    if name is None:
        raise PhysiologyInputError(
            "virtual_patient", "the patient has no fitted glucose twin; name a virtual patient (e.g. adult#001)"
        )
    try:
        return virtual_patients([name], PARAMETER_SET)
    except UnknownPatientError as exc:
        raise PhysiologyInputError("virtual_patient", exc.message) from None


def virtual_ensemble(patient: PatientParameters, n: int, rng: np.random.Generator) -> PatientParameters:
    """``n`` members around a virtual patient: log-normal on (Gb, Vmx, kp3, kabs) with
    :data:`VIRTUAL_ENSEMBLE_SPREAD` times the cohort's log-SD (a virtual patient has no posterior)."""
    cohort = virtual_patients(None, PARAMETER_SET)
    index = [PARAMETER_NAMES.index(k) for k in FITTED]
    sd = np.log(cohort.values[:, index]).std(axis=0, ddof=1) * VIRTUAL_ENSEMBLE_SPREAD
    mean = np.log(patient.values[0, index])
    thetas = mean + rng.standard_normal((n, len(FITTED))) * sd
    return sample_twins(patient, thetas, float(patient.basal_rate_u_per_min()[0] * 60.0))


# --- services -------------------------------------------------------------------------------------------


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
