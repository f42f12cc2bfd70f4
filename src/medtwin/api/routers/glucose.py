"""The type 1 diabetes twin of a patient: fit from a glucose log, simulate scenarios, compare regimens on the
patient's own twin (live, else fitted, else a named virtual patient), and say which.

Thin: resolve the patient (id or MRN; 404 when unknown or not visible), build the clock and the random
generator, call :mod:`medtwin.twin.glucose` and :mod:`medtwin.twin.glucose_whatif`.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query

from medtwin.api.deps import ObservationReader, ObservationSimulator, ObservationWriter
from medtwin.physiology.calibrate import GlucoseLog
from medtwin.twin import glucose as service
from medtwin.twin import glucose_whatif as whatif

router = APIRouter(prefix="/twins/{patient_id}/glucose", tags=["glucose"])


def _rng(seed: int | None, default: int) -> np.random.Generator:
    return np.random.default_rng(default if seed is None else seed)


@router.get("/basis", response_model=whatif.WhatIfBasis,
            summary="Which twin a what-if would run on: the live twin, else the fitted twin, else none")
def basis(call: ObservationReader) -> whatif.WhatIfBasis:
    return whatif.basis(call.store, call.patient_id)


@router.post("/simulate", response_model=whatif.StoredSimulation, summary="Simulate a scenario on the twin")
def simulate(body: whatif.SimulateRequest, call: ObservationSimulator) -> whatif.StoredSimulation:
    return whatif.simulate(call.store, call.patient_id, body, actor=call.actor, clock=call.clock,
                           rng=_rng(body.seed, body.scenario.seed))


@router.post("/compare", response_model=whatif.StoredComparison,
             summary="Compare regimens with uncertainty bands over the ensemble of the patient's own twin")
def compare(body: whatif.CompareRequest, call: ObservationSimulator) -> whatif.StoredComparison:
    return whatif.compare(call.store, call.patient_id, body, actor=call.actor, clock=call.clock,
                          rng=_rng(body.seed, body.scenario.seed))


@router.post("/fit", response_model=service.GlucoseTwinPublic, status_code=201,
             summary="Fit the glucose twin from a CGM + insulin + meal log (a new twin version)")
def fit(
    body: GlucoseLog,
    call: ObservationWriter,
    max_iterations: Annotated[int, Query(ge=1, le=100, description="optimiser evaluation budget")] = 30,
) -> service.GlucoseTwinPublic:
    return service.fit(call.store, call.patient_id, body, actor=call.actor, clock=call.clock,
                       max_iterations=max_iterations)


@router.get("", response_model=service.GlucoseTwinPublic, summary="The latest fitted glucose twin")
def get_twin(call: ObservationReader) -> service.GlucoseTwinPublic:
    found = service.latest(call.store, call.patient_id)
    if found is None:
        raise call.not_found("no fitted glucose twin")
    return found
