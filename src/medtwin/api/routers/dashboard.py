"""Aggregates for the clinician's dashboard (the web app at ``/``): one request per screen where the screen
would otherwise need one request per patient. Thin: authorise, call :mod:`medtwin.twin.overview`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from medtwin.api.deps import Caller, caller
from medtwin.api.paging import Offset
from medtwin.twin.overview import OverviewPage, patient_overview

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
