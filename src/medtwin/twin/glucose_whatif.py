"""What-if on the patient's own glucose twin: simulate a scenario and compare regimens on the best twin the
patient has, and say which one.

The basis, in order of preference (``use_twin``):

1. the **live twin** (``twin.live``: the ensemble Kalman filter fed by the patient's CGM and pump): its
   members' parameters (the tracked multipliers applied) and their **current states**, so the scenario's
   minute 0 is the filter's data time (the last reading folded in) and insulin on board is carried over;
   therapy settings (carb ratio, correction factor) of the twin it started from;
2. the latest **fitted glucose twin** (``twin.glucose``): posterior draws (Laplace, log-normal) resting at
   their steady state;
3. only when the patient has neither: a **shipped virtual patient** (named in the request), with an
   ensemble around it; the answer says so.

The result names its basis (:class:`ParameterSource`, with a sentence for the screen) and is stored as a
``glucose-simulation`` twin version whose provenance names the twin versions it was computed from. This
module sits above ``twin.glucose`` and ``twin.live`` (the live twin starts from the fitted twin), so neither
of them imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from medtwin.physiology.assimilation import GlucoseFilter
from medtwin.physiology.calibrate import FITTED, FittedTwin, population_patient, twin_samples
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.scenario import Regimen, Scenario
from medtwin.physiology.service import SimulationResult, simulate_scenario
from medtwin.physiology.simulate import DEFAULT_SOLVER
from medtwin.physiology.uva_padova import PARAMETER_NAMES, PMOL_PER_UNIT, PatientParameters, virtual_patients
from medtwin.physiology.whatif import ComparisonResult, compare_regimens
from medtwin.solve import Solver
from medtwin.store.database import Store
from medtwin.store.twins import TwinRepository, TwinVersion
from medtwin.twin.glucose import (
    GLUCOSE_KIND,
    MAX_COMPARE_MEMBER_DAYS,
    MODEL,
    SIMULATION_KIND,
    VIRTUAL_ENSEMBLE_SPREAD,
    latest_twin_version,
    scenario_hash,
    solver_description,
    virtual_ensemble,
    virtual_patient,
)
from medtwin.twin.live import LIVE_KIND, StartedFrom, from_minutes, load_state

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


# --- requests -------------------------------------------------------------------------------------------


class ParameterChoice(BaseModel):
    """Which twin to run: the patient's own (live, else fitted) if there is one and ``use_twin``, else the
    named virtual patient."""

    virtual_patient: str | None = Field(
        default=None, max_length=64, description="shipped virtual patient, e.g. adult#001 (used only without a twin)"
    )
    use_twin: bool = Field(default=True, description="prefer the patient's own twin (live, else fitted)")
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
    """Where a what-if's parameters came from."""

    kind: Literal["virtual_patient", "glucose_twin", "live_twin"]
    virtual_patient: str | None = None
    glucose_twin_version: int | None = Field(
        default=None, description="the fitted twin used, or the one the live twin started from")
    live_twin_version: int | None = Field(default=None, description="latest glucose-live twin version")
    data_time: datetime | None = Field(default=None, description="live twin: time of the last reading folded in")
    description: str = Field(default="", description="one sentence for the screen")

    def provenance(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude={"description"})


class WhatIfBasis(BaseModel):
    """What a what-if on this patient would run on, before running it."""

    patient_id: str
    kind: Literal["live_twin", "glucose_twin", "none"]
    source: ParameterSource | None = Field(description="the twin used (None: a virtual patient must be named)")
    n_members: int | None = Field(default=None, description="live twin: ensemble members it holds")
    description: str


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


# --- the live twin as parameters ------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveTwin:
    """A patient's saved live glucose twin: its filter, where it started from and its latest version."""

    filter: GlucoseFilter
    started: StartedFrom
    live_version: int | None

    @property
    def data_time(self) -> datetime:
        return from_minutes(self.filter.time_min)


def load_live_twin(store: Store, patient_id: str) -> LiveTwin | None:
    """The saved live twin of a patient, or None (none yet, or a saved state that cannot be read: logged)."""
    with store.connect() as connection:
        state = load_state(connection, store.codec, patient_id)
    if state is None:
        return None
    try:
        return LiveTwin(GlucoseFilter.from_dict(state["filter"]), StartedFrom.model_validate(state["started_from"]),
                        state.get("live_version"))
    except (PhysiologyInputError, ValidationError, KeyError, TypeError, ValueError):
        log.warning("the saved live glucose twin of a patient could not be read; not used for what-if")
        return None


def _fitted_version(store: Store, patient_id: str, version: int) -> TwinVersion | None:
    with store.connect() as connection:
        history = TwinRepository(connection, store.codec).history(patient_id)
    return next((v for v in history if v.kind == GLUCOSE_KIND and v.version == version), None)


def _therapy(store: Store, patient_id: str, live: LiveTwin) -> PatientParameters:
    """One patient holding the therapy settings (carb ratio, correction factor, daily insulin) of the twin
    the live filter started from: the fitted twin it names, else the population patient it was built as."""
    started = live.started
    if started.kind == "glucose_twin" and started.glucose_twin_version is not None:
        stored = _fitted_version(store, patient_id, started.glucose_twin_version)
        if stored is not None:
            return FittedTwin.model_validate(stored.payload["twin"]).parameters()
    return population_patient(started.body_weight_kg, max(started.basal_u_per_h, 0.05), virtual_patients())


def live_ensemble(live: LiveTwin, therapy: PatientParameters, n: int | None, rng: np.random.Generator,
                  ) -> PatientParameters:
    """``n`` members of the live twin (all of them, in order, when ``n`` is None or equal to its size; else
    drawn with replacement when more are asked for, without when fewer): each member's parameters and its
    current states; the basal rate is the filter's current one; therapy settings from ``therapy``."""
    filt = live.filter
    m = filt.n_members
    index = np.arange(m) if n is None or n == m else rng.choice(m, size=n, replace=n > m)
    values = filt.member_parameters()[index]
    body_weight = values[:, _parameter("BW")]
    values[:, _parameter("u2ss")] = filt.basal_u_per_h / 60.0 * PMOL_PER_UNIT / body_weight
    k = len(index)
    return PatientParameters(
        names=tuple(f"live member {int(i) + 1}" for i in index),
        values=values,
        initial_state=filt.states[index].copy(),
        carb_ratio_g_per_unit=np.full(k, float(therapy.carb_ratio_g_per_unit[0])),
        correction_factor_mg_dl_per_unit=np.full(k, float(therapy.correction_factor_mg_dl_per_unit[0])),
        total_daily_insulin_units=np.full(k, float(therapy.total_daily_insulin_units[0])),
    )


def live_mean_member(live: LiveTwin, therapy: PatientParameters) -> PatientParameters:
    """One patient: the live twin's reference with the members' geometric-mean multipliers and their mean
    states (what a single, noise-free simulation runs on)."""
    filt = live.filter
    mean = replace(filt, theta=filt.theta.mean(axis=0, keepdims=True), states=filt.states.mean(axis=0, keepdims=True))
    one = live_ensemble(LiveTwin(mean, live.started, live.live_version), therapy, None, np.random.default_rng(0))
    return PatientParameters(names=("live twin (ensemble mean)",), values=one.values, initial_state=one.initial_state,
                             carb_ratio_g_per_unit=one.carb_ratio_g_per_unit,
                             correction_factor_mg_dl_per_unit=one.correction_factor_mg_dl_per_unit,
                             total_daily_insulin_units=one.total_daily_insulin_units)


def _parameter(name: str) -> int:
    return PARAMETER_NAMES.index(name)


# --- choosing the basis ---------------------------------------------------------------------------------


def _live_source(live: LiveTwin) -> ParameterSource:
    started = live.started
    origin = (f"started from fitted twin v{started.glucose_twin_version}" if started.kind == "glucose_twin"
              else "started from the population prior")
    version = "" if live.live_version is None else f" v{live.live_version}"
    return ParameterSource(
        kind="live_twin", live_twin_version=live.live_version, glucose_twin_version=started.glucose_twin_version,
        data_time=live.data_time,
        description=(f"the patient's live glucose twin{version} ({live.filter.n_members} members, data to "
                     f"{live.data_time:%Y-%m-%d %H:%M} UTC, {origin}); starts from its current state"),
    )


def _fitted_source(stored: TwinVersion) -> ParameterSource:
    twin = FittedTwin.model_validate(stored.payload["twin"])
    return ParameterSource(
        kind="glucose_twin", glucose_twin_version=stored.version,
        description=(f"the patient's fitted glucose twin v{stored.version} ({twin.n_readings} readings), "
                     "ensemble from its posterior, starting at rest"),
    )


def _virtual_source(name: str, *, asked: bool) -> ParameterSource:
    why = ("asked for instead of the patient's own twin" if asked
           else "this patient has no glucose twin yet (no CGM streamed and none fitted)")
    return ParameterSource(kind="virtual_patient", virtual_patient=name,
                           description=f"the shipped virtual patient {name}, not this patient: {why}")


def basis(store: Store, patient_id: str) -> WhatIfBasis:
    """What a what-if on this patient would run on (live twin, else fitted twin, else none)."""
    live = load_live_twin(store, patient_id)
    if live is not None:
        source = _live_source(live)
        return WhatIfBasis(patient_id=patient_id, kind="live_twin", source=source, n_members=live.filter.n_members,
                           description=f"Runs on {source.description}.")
    stored = latest_twin_version(store, patient_id)
    if stored is not None:
        source = _fitted_source(stored)
        return WhatIfBasis(patient_id=patient_id, kind="glucose_twin", source=source,
                           description=f"Runs on {source.description}.")
    return WhatIfBasis(patient_id=patient_id, kind="none", source=None,
                       description=("This patient has no glucose twin yet (no CGM streamed and none fitted): "
                                    "a what-if runs on a shipped virtual patient you name."))


@dataclass(frozen=True)
class _Chosen:
    source: ParameterSource
    live: LiveTwin | None = None
    fitted: FittedTwin | None = None
    therapy: PatientParameters | None = None


def _choose(store: Store, patient_id: str, choice: ParameterChoice) -> _Chosen:
    if choice.use_twin:
        live = load_live_twin(store, patient_id)
        if live is not None:
            return _Chosen(_live_source(live), live=live, therapy=_therapy(store, patient_id, live))
        stored = latest_twin_version(store, patient_id)
        if stored is not None:
            return _Chosen(_fitted_source(stored), fitted=FittedTwin.model_validate(stored.payload["twin"]))
    if choice.virtual_patient is None:
        raise PhysiologyInputError(
            "virtual_patient", "the patient has no glucose twin (live or fitted); name a virtual patient (e.g. adult#001)"
        )
    virtual_patient(choice.virtual_patient)  # validates the name up front
    return _Chosen(_virtual_source(choice.virtual_patient, asked=not choice.use_twin))


def _store_result(store: Store, patient_id: str, operation: str, scenario: Scenario, source: ParameterSource,
                  result: BaseModel, extra: dict[str, Any], *, solver: Any, seed: Any, actor: str,
                  clock: Clock) -> tuple[int, str]:
    """Store a simulate/compare result as a ``glucose-simulation`` twin version; returns (version, hash)."""
    digest = scenario_hash(scenario)
    now = clock()
    provenance = {"operation": operation, "scenario_hash": digest, "model": MODEL,
                  "parameter_source": source.provenance(), **extra, "solver": solver, "seed": seed, "by": actor,
                  "at": now.isoformat()}
    payload = {"scenario": scenario.model_dump(mode="json"), "result": result.model_dump(mode="json")}
    with store.begin() as connection:
        version = TwinRepository(connection, store.codec).add_version(
            patient_id, SIMULATION_KIND, payload, provenance, actor=actor, now=now)
    return version, digest


# --- services -------------------------------------------------------------------------------------------


def simulate(store: Store, patient_id: str, request: SimulateRequest, *, actor: str, clock: Clock,
             rng: np.random.Generator, solver: Solver = DEFAULT_SOLVER) -> StoredSimulation:
    """Simulate ``request.scenario`` on the patient's own twin (live: its ensemble mean from the current state;
    fitted: its MAP parameters) or a named virtual patient; stored as a ``glucose-simulation`` version."""
    chosen = _choose(store, patient_id, request)
    if chosen.live is not None and chosen.therapy is not None:
        params = live_mean_member(chosen.live, chosen.therapy)
    elif chosen.fitted is not None:
        params = chosen.fitted.parameters()
    else:
        params = virtual_patient(request.virtual_patient)
    result = simulate_scenario(params, request.scenario, rng=rng, solver=solver)
    version, digest = _store_result(store, patient_id, "simulate", request.scenario, chosen.source, result, {},
                                    solver=solver_description(solver), seed=request.seed, actor=actor, clock=clock)
    return StoredSimulation(**result.model_dump(), patient_id=patient_id, result_version=version,
                            source=chosen.source, scenario_hash=digest)


def compare(store: Store, patient_id: str, request: CompareRequest, *, actor: str, clock: Clock,
            rng: np.random.Generator) -> StoredComparison:
    """Compare regimens over an ensemble of the patient's own twin (live members from their current state, or
    posterior draws of the fitted twin), else draws around a named virtual patient; stored as a version."""
    chosen = _choose(store, patient_id, request)
    n = request.n_ensemble
    if chosen.live is not None and chosen.therapy is not None:
        ensemble = live_ensemble(chosen.live, chosen.therapy, n, rng)
        ensemble_kind = (f"live twin members ({chosen.live.filter.n_members} held; "
                         f"{'all' if n == chosen.live.filter.n_members else 'resampled'}), from their current state")
    elif chosen.fitted is not None:
        ensemble = twin_samples(chosen.fitted, n, rng)
        ensemble_kind = "fitted posterior (Laplace, log-normal)"
    else:
        ensemble = virtual_ensemble(virtual_patient(request.virtual_patient), n, rng)
        ensemble_kind = f"virtual patient, {VIRTUAL_ENSEMBLE_SPREAD:g} x cohort log-SD on {', '.join(FITTED)}"
    result = compare_regimens(ensemble, request.scenario, request.regimens, rng=rng)
    extra = {"ensemble": {"n": n, "from": ensemble_kind}, "regimens": [r.name for r in request.regimens]}
    if chosen.live is not None:
        extra["twin_versions"] = {LIVE_KIND: chosen.live.live_version,
                                  GLUCOSE_KIND: chosen.live.started.glucose_twin_version}
    version, digest = _store_result(store, patient_id, "compare", request.scenario, chosen.source, result, extra,
                                    solver=solver_description(DEFAULT_SOLVER), seed=request.seed, actor=actor,
                                    clock=clock)
    return StoredComparison(**result.model_dump(), patient_id=patient_id, result_version=version,
                            source=chosen.source, scenario_hash=digest)
