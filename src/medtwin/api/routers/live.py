"""The live glucose twin over HTTP: the latest forecast and the filter's status.

Thin: resolve the patient (id or MRN; 404 when unknown or not visible), ask the running
:class:`medtwin.twin.live.LiveGlucoseService` (``Services.live_glucose``), or the saved state when the app
runs without one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from medtwin.api.deps import Principal, StoreDep, guard, visible_patient
from medtwin.api.problems import ProblemError
from medtwin.api.services import services_of
from medtwin.twin import live as service
from medtwin.vocab import GlucoseForecast

router = APIRouter(prefix="/patients/{patient_id}", tags=["live twin"])


def _service(request: Request) -> service.LiveGlucoseService | None:
    return services_of(request.app).live_glucose


@router.get("/forecast", response_model=GlucoseForecast,
            summary="The live glucose twin's latest forecast (5-60 min, 80 % and 95 % prediction intervals)")
def get_forecast(
    patient_id: str,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "Observation"))],
) -> GlucoseForecast:
    resolved = visible_patient(store, principal, patient_id)
    live = _service(request)
    if live is not None:
        found = live.latest_forecast(resolved)
    else:
        with store.connect() as connection:
            found = service.latest_forecast(connection, store.codec, resolved)
    if found is None:
        raise ProblemError(404, "Not found", f"patient {patient_id!r} has no live glucose forecast yet "
                           "(it follows the first CGM reading)", kind="not-found", field="patient_id")
    return found


@router.get("/twin/live", response_model=service.LiveTwinStatus,
            summary="The live glucose twin: data time, readings assimilated, insulin sensitivity estimate")
def get_live_twin(
    patient_id: str,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "Observation"))],
) -> service.LiveTwinStatus:
    resolved = visible_patient(store, principal, patient_id)
    live = _service(request)
    if live is not None:
        found = live.status(resolved)
    else:
        with store.connect() as connection:
            found = service.latest_status(connection, store.codec, resolved)
    if found is None:
        raise ProblemError(404, "Not found", f"patient {patient_id!r} has no live glucose twin yet",
                           kind="not-found", field="patient_id")
    return found
