"""The type 1 diabetes twin of a patient: fit from a glucose log, simulate scenarios, compare regimens on the
patient's own twin (live, else fitted, else a named virtual patient), and say which.

Thin: resolve the patient (id or MRN; 404 when unknown or not visible), build the clock and the random
generator, call :mod:`medtwin.twin.glucose` and :mod:`medtwin.twin.glucose_whatif`.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request

from medtwin.api.deps import Principal, StoreDep, app_clock, guard, visible_patient
from medtwin.api.problems import ProblemError
from medtwin.physiology.calibrate import GlucoseLog
from medtwin.twin import glucose as service
from medtwin.twin import glucose_whatif as whatif

router = APIRouter(prefix="/twins/{patient_id}/glucose", tags=["glucose"])


def _rng(seed: int | None, default: int) -> np.random.Generator:
    return np.random.default_rng(default if seed is None else seed)


@router.get("/basis", response_model=whatif.WhatIfBasis,
            summary="Which twin a what-if would run on: the live twin, else the fitted twin, else none")
def basis(
    patient_id: str,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "Observation"))],
) -> whatif.WhatIfBasis:
    resolved = visible_patient(store, principal, patient_id)
    return whatif.basis(store, resolved)


@router.post("/simulate", response_model=whatif.StoredSimulation, summary="Simulate a scenario on the twin")
def simulate(
    patient_id: str,
    body: whatif.SimulateRequest,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("simulate", "Observation"))],
) -> whatif.StoredSimulation:
    resolved = visible_patient(store, principal, patient_id)
    return whatif.simulate(store, resolved, body, actor=principal.subject, clock=app_clock(request.app),
                            rng=_rng(body.seed, body.scenario.seed))


@router.post("/compare", response_model=whatif.StoredComparison,
             summary="Compare regimens with uncertainty bands over the ensemble of the patient's own twin")
def compare(
    patient_id: str,
    body: whatif.CompareRequest,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("simulate", "Observation"))],
) -> whatif.StoredComparison:
    resolved = visible_patient(store, principal, patient_id)
    return whatif.compare(store, resolved, body, actor=principal.subject, clock=app_clock(request.app),
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
