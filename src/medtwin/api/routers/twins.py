"""Every registered twin kind over HTTP: list the kinds, simulate, fit, assimilate and compare on a patient.

Thin: resolve the patient (id or MRN; 404 when unknown or out of reach, like a missing one), look the kind
up in the registry (:mod:`medtwin.twin.kinds`; 404 when unknown), call :mod:`medtwin.twin.kind_service`.
Model input errors come back as problem+json 422 naming the field (the app's handlers).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from medtwin.api.deps import Principal, StoreDep, guard, visible_patient
from medtwin.api.problems import ProblemError
from medtwin.twin import kind_service as service
from medtwin.twin.kinds import TwinKind, UnknownTwinKindError, get, kinds

router = APIRouter(tags=["twins"])
Simulating = Annotated[Principal, Depends(guard("simulate", "Observation"))]


def _kind(name: str) -> TwinKind:
    try:
        return get(name)
    except UnknownTwinKindError as exc:
        raise ProblemError(404, "Not found", exc.message, kind="not-found", field="kind") from None


@router.get("/twin-kinds", summary="The registered twin kinds: model, units, personalisation, panel descriptor")
def list_kinds(principal: Annotated[Principal, Depends(guard("read", "Observation"))]) -> list[dict[str, Any]]:
    return [kind.describe() for kind in kinds().values()]


@router.post("/patients/{patient_id}/twins/{kind}/simulate", summary="Simulate a scenario on a twin kind")
def simulate(patient_id: str, kind: str, body: service.SimulateRequest, store: StoreDep,
             principal: Simulating) -> dict[str, Any]:
    visible_patient(store, principal, patient_id)
    return service.simulate_kind(_kind(kind), body)


@router.post("/patients/{patient_id}/twins/{kind}/fit",
             summary="MAP fit of the kind's personalised parameters from observations (Laplace covariance)")
def fit(patient_id: str, kind: str, body: service.FitRequest, store: StoreDep,
        principal: Simulating) -> dict[str, Any]:
    visible_patient(store, principal, patient_id)
    return service.fit_kind(_kind(kind), body)


@router.post("/patients/{patient_id}/twins/{kind}/assimilate",
             summary="Ensemble Kalman filter over the kind's drifting parameters (returns the filter state)")
def assimilate(patient_id: str, kind: str, body: service.AssimilateRequest, store: StoreDep,
               principal: Simulating) -> dict[str, Any]:
    visible_patient(store, principal, patient_id)
    return service.assimilate_kind(_kind(kind), body)


@router.post("/patients/{patient_id}/twins/{kind}/compare",
             summary="What-if: scenarios over a posterior (or population) ensemble, 5-95 % bands")
def compare(patient_id: str, kind: str, body: service.CompareRequest, store: StoreDep,
            principal: Simulating) -> dict[str, Any]:
    visible_patient(store, principal, patient_id)
    return service.compare_kind(_kind(kind), body)
