"""The live glucose twin over HTTP: the latest forecast and the filter's status.

Thin: resolve the patient (id or MRN; 404 when unknown or not visible), ask the running
:class:`medtwin.twin.live.LiveGlucoseService` (``Services.live_glucose``; it reads the saved state of
patients it has not seen since it started).
"""

from __future__ import annotations

from fastapi import APIRouter

from medtwin.api.deps import ObservationReader
from medtwin.twin import live as service
from medtwin.vocab import GlucoseForecast

router = APIRouter(prefix="/patients/{patient_id}", tags=["live twin"])


@router.get("/forecast", response_model=GlucoseForecast,
            summary="The live glucose twin's latest forecast (5-60 min, 80 % and 95 % prediction intervals)")
def get_forecast(call: ObservationReader) -> GlucoseForecast:
    found = call.services.live_glucose.latest_forecast(call.patient_id)  # the running twin's, else the saved
    if found is None:
        raise call.not_found("no live glucose forecast yet (it follows the first CGM reading)")
    return found


@router.get("/twin/live", response_model=service.LiveTwinStatus,
            summary="The live glucose twin: data time, readings assimilated, insulin sensitivity estimate")
def get_live_twin(call: ObservationReader) -> service.LiveTwinStatus:
    found = call.services.live_glucose.status(call.patient_id)
    if found is None:
        raise call.not_found("no live glucose twin yet")
    return found
