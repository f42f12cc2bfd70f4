"""The type 1 diabetes twin of a patient: fit from a glucose log, simulate scenarios, compare regimens.

Thin: resolve the patient (id or MRN; 404 when unknown or not visible), build the clock and the random
generator, call :mod:`medtwin.twin.glucose`.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request

from medtwin.api.deps import Principal, StoreDep, app_clock, guard, visible_patient
from medtwin.api.problems import ProblemError
from medtwin.physiology.calibrate import GlucoseLog
from medtwin.twin import glucose as service

router = APIRouter(prefix="/twins/{patient_id}/glucose", tags=["glucose"])






def _rng(seed: int | None, default: int) -> np.random.Generator:
    return np.random.default_rng(default if seed is None else seed)


@router.post("/simulate", response_model=service.StoredSimulation, summary="Simulate a scenario on the twin")
def simulate(
    patient_id: str,
    body: service.SimulateRequest,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("simulate", "Observation"))],
) -> service.StoredSimulation:
    resolved = visible_patient(store, principal, patient_id)
    return service.simulate(store, resolved, body, actor=principal.subject, clock=app_clock(request.app),
                            rng=_rng(body.seed, body.scenario.seed))


@router.post("/compare", response_model=service.StoredComparison,
             summary="Compare regimens with uncertainty bands over the twin's ensemble")
def compare(
    patient_id: str,
    body: service.CompareRequest,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("simulate", "Observation"))],
) -> service.StoredComparison:
    resolved = visible_patient(store, principal, patient_id)
    return service.compare(store, resolved, body, actor=principal.subject, clock=app_clock(request.app),
                           rng=_rng(body.seed, body.scenario.seed))


@router.post("/fit", response_model=service.GlucoseTwinPublic, status_code=201,
             summary="Fit the glucose twin from a CGM + insulin + meal log (a new twin version)")
def fit(
    patient_id: str,
    body: GlucoseLog,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("write", "Observation"))],
    max_iterations: Annotated[int, Query(ge=1, le=100, description="optimiser evaluation budget")] = 30,
) -> service.GlucoseTwinPublic:
    resolved = visible_patient(store, principal, patient_id)
    return service.fit(store, resolved, body, actor=principal.subject, clock=app_clock(request.app),
                       max_iterations=max_iterations)


@router.get("", response_model=service.GlucoseTwinPublic, summary="The latest fitted glucose twin")
def get_twin(
    patient_id: str,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "Observation"))],
) -> service.GlucoseTwinPublic:
    resolved = visible_patient(store, principal, patient_id)
    found = service.latest(store, resolved)
    if found is None:
        raise ProblemError(404, "Not found", f"patient {patient_id!r} has no fitted glucose twin",
                           kind="not-found", field="patient_id")
    return found
