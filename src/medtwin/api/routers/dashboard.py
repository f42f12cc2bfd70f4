"""Aggregates for the clinician's dashboard (the web app at ``/``): one request per screen where the screen
would otherwise need one request per patient; the server's clock (simulated in a demo); the panels of a
patient's page and what they draw beyond plain series (the NEWS2 trend, the events on the CGM trace).
Thin: authorise, call :mod:`medtwin.twin.overview`, :mod:`medtwin.twin.panels`, :mod:`medtwin.twin.cgm_events`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from medtwin.api.deps import Caller, ObservationReader, caller
from medtwin.api.paging import Offset
from medtwin.api.problems import ProblemError
from medtwin.twin.cgm_events import CgmEvents, cgm_events
from medtwin.twin.overview import OverviewPage, patient_overview
from medtwin.twin.panels import News2Trend, PanelsAnswer, news2_trend, patient_panels

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


@router.get("/patients", response_model=OverviewPage,
            summary="Visible patients with their twin's latest state and open alerts, most urgent first")
def patients(
    call: Annotated[Caller, Depends(caller("read", "Patient"))],
    q: Annotated[str | None, Query(max_length=200, description="name word(s), an identifier (MRN) or the id")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> OverviewPage:
    return patient_overview(call.store, allowed=call.principal.patient_ids, query=q, limit=limit, offset=offset,
                            clock=call.clock)


@router.get("/clock", summary="The server's time: simulated (a demo's accelerated devices) or the wall clock")
def clock(call: Annotated[Caller, Depends(caller("read", "Patient"))]) -> dict[str, Any]:
    """``now`` is what every time the server shows is measured against; ``simulated`` tells the page to show
    its "simulated time" badge; ``rate`` is simulated seconds per wall second (to extrapolate between reads)."""
    return call.services.clock.status()


@router.get("/patients/{patient_id}/panels", response_model=PanelsAnswer,
            summary="The panels of the patient's page, chosen from problems, medications and data")
def panels(call: ObservationReader) -> PanelsAnswer:
    return patient_panels(call.store, call.patient_id, default_zone=call.services.settings.time_zone)


@router.get("/patients/{patient_id}/news2-trend", response_model=News2Trend,
            summary="NEWS2 of each observation set over the last hours of vital signs")
def news2(call: ObservationReader, hours: Annotated[float, Query(gt=0, le=24 * 30)] = 24.0) -> News2Trend:
    return news2_trend(call.store, call.patient_id, hours=hours)


@router.get("/patients/{patient_id}/cgm-events", response_model=CgmEvents,
            summary="Boluses, carbohydrate (rescue treatment marked) and glucose alerts in a window")
def events(call: ObservationReader, start: datetime, end: datetime | None = None) -> CgmEvents:
    if start.tzinfo is None or (end is not None and end.tzinfo is None):
        raise ProblemError(422, "Invalid request", "start and end need a time zone (e.g. Z)", kind="validation",
                           field="start")
    stop = end or call.clock()
    if stop - start > timedelta(days=90):
        raise ProblemError(422, "Invalid request", "at most 90 days", kind="validation", field="start")
    return cgm_events(call.store, call.patient_id, start, stop, now=call.clock())
