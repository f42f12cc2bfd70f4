"""Every registered twin kind over HTTP: list the kinds, simulate, fit, assimilate and compare on a patient.

Thin: resolve the patient (id or MRN; 404 when unknown or out of reach, like a missing one), look the kind
up in the registry (:mod:`medtwin.model.kinds`; 404 when unknown), call :mod:`medtwin.twin.kind_service`.
Model input errors come back as problem+json 422 naming the field (the app's handlers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from medtwin.api.deps import ObservationSimulator, Principal, guard
from medtwin.api.problems import ProblemError
from medtwin.model.kinds import TwinKind, UnknownTwinKindError, get, kinds
from medtwin.twin import kind_service as service

router = APIRouter(tags=["twins"])


def _kind(kind: str) -> TwinKind:
    """The registered kind named in the path, or 404."""
    try:
        return get(kind)
    except UnknownTwinKindError as exc:
        raise ProblemError(404, "Not found", exc.message, kind="not-found", field="kind") from None


Kind = Annotated[TwinKind, Depends(_kind)]


@router.get("/twin-kinds", summary="The registered twin kinds: model, units, personalisation, panel descriptor")
def list_kinds(principal: Annotated[Principal, Depends(guard("read", "Observation"))]) -> list[dict[str, Any]]:
    return [kind.describe() for kind in kinds().values()]


#: The framework's actions on any kind: request model, service call, summary. One route each, the same shape.
_ACTIONS: dict[str, tuple[type[BaseModel], Callable[[TwinKind, Any], dict[str, Any]], str]] = {
    "simulate": (service.SimulateRequest, service.simulate_kind, "Simulate a scenario on a twin kind"),
    "fit": (service.FitRequest, service.fit_kind,
            "MAP fit of the kind's personalised parameters from observations (Laplace covariance)"),
    "assimilate": (service.AssimilateRequest, service.assimilate_kind,
                   "Ensemble Kalman filter over the kind's drifting parameters (returns the filter state)"),
    "compare": (service.CompareRequest, service.compare_kind,
                "What-if: scenarios over a posterior (or population) ensemble, 5-95 % bands"),
}


def _endpoint(action: str, body_type: type[BaseModel],
              run: Callable[[TwinKind, Any], dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def endpoint(body: Any, call: ObservationSimulator, kind: Kind) -> dict[str, Any]:
        return run(kind, body)  # call: the guard and the patient (404 when out of reach)

    endpoint.__annotations__ = {**endpoint.__annotations__, "body": body_type}  # the body's schema per action
    endpoint.__name__ = endpoint.__qualname__ = action
    return endpoint


for _action, (_body, _run, _summary) in _ACTIONS.items():
    router.add_api_route(f"/patients/{{patient_id}}/twins/{{kind}}/{_action}", _endpoint(_action, _body, _run),
                         methods=["POST"], summary=_summary)
