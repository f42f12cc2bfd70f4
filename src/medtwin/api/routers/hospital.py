"""The hospital operations twin over HTTP: simulate, forecast from a census, compare what-ifs.

Thin over :mod:`medtwin.hospital.service`. Guarded as ``simulate`` on the route family ``hospital`` (no
patient scope: the inputs are a model, a census of counts and stays, and scenarios; the outputs are counts,
times and flows, never a patient's identity). Model, census and scenario errors are problem+json 422 naming
the field. Runs are bounded per request (replications, weeks) and made in the request's worker thread.

The live census (``/hospital/census``, ``/hospital/census/forecast``) is the app's
:class:`~medtwin.hospital.live.LiveHospital`, fed by ``POST /hospital/adt`` (HL7 v2 text), ``POST
/hospital/encounter`` (FHIR Encounter) and the MLLP listener. Reading it is ``simulate`` on ``hospital`` (the
``operations`` role may); feeding it is ``write`` on ``Encounter`` (it carries real patients' ADT).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from medtwin.api.deps import Principal, ServicesDep, guard
from medtwin.api.problems import ProblemError
from medtwin.hospital import service
from medtwin.hospital.adt import Outcome, ack
from medtwin.hospital.equipment import EquipmentInputError
from medtwin.hospital.equipment_ingest import readings_from_payload
from medtwin.hospital.model import HospitalModel, HospitalModelError, demo_model, parse_model

router = APIRouter(tags=["hospital"])
Caller = Annotated[Principal, Depends(guard("simulate", "hospital"))]
#: feeding the live census: the ADT of real patients, so a write on Encounter (admin, clinician), never operations
Feeder = Annotated[Principal, Depends(guard("write", "Encounter"))]
MAX_ADT_BYTES = 64 * 1024
#: equipment telemetry: a write on the route family ``equipment`` (no FHIR type: only a ``*`` scope covers it,
#: so admin and clinician); not a patient device key, not the integration role, never operations
Telemetry = Annotated[Principal, Depends(guard("write", "equipment"))]


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: dict[str, Any] | None = Field(default=None, description="hospital model document (default: the demo)")
    replications: int = Field(default=10, ge=2, le=100)
    weeks: float = Field(default=8.0, gt=0, le=52)
    warmup_weeks: float = Field(default=3.0, ge=0, le=26)
    seed: int = Field(default=0, ge=0)


class CompareRequest(RunRequest):
    scenarios: list[dict[str, Any]] = Field(min_length=1, max_length=10)


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: dict[str, Any] | None = None
    census: dict[str, Any] | None = Field(default=None, description="patients in place (default: the demo's)")
    horizon_h: float = Field(default=48.0, ge=1, le=336)
    replications: int = Field(default=200, ge=10, le=1000)
    history_weeks: int = Field(default=8, ge=3, le=52)
    seed: int = Field(default=0, ge=0)


#: work one request may ask for (a demo-hospital replication-week is ~15 ms here): bigger jobs use the CLI
MAX_REPLICATION_WEEKS = 400
MAX_FORECAST_REPLICATION_HOURS = 20_000


def _budget(runs: float, limit: float, what: str) -> None:
    if runs > limit:
        raise ProblemError(422, "Too much work for one request", f"{what} = {runs:g} > {limit:g}; use the CLI "
                           "(medtwin hospital ...) with a Dask scheduler for bigger jobs", kind="hospital-input",
                           field="replications")


def _problem(error: HospitalModelError) -> ProblemError:
    return ProblemError(422, "Invalid hospital model input", str(error), kind="hospital-input", field=error.field)


def _model(document: dict[str, Any] | None) -> HospitalModel:
    return demo_model() if document is None else parse_model(document)


@router.get("/hospital/demo-model", summary="The demo hospital model (generated, with its source)")
def demo(principal: Caller) -> dict[str, Any]:
    return demo_model().model_dump()


@router.post("/hospital/simulate", summary="Waits, occupancy and throughput per unit with 95 % CIs")
def simulate(body: RunRequest, principal: Caller) -> dict[str, Any]:
    _budget(body.replications * body.weeks, MAX_REPLICATION_WEEKS, "replications x weeks")
    try:
        return service.simulate(_model(body.model), body.replications, body.weeks, body.warmup_weeks, body.seed)
    except HospitalModelError as error:
        raise _problem(error) from None


@router.post("/hospital/compare", summary="What-if scenarios against the baseline, paired 95 % CIs")
def compare(body: CompareRequest, principal: Caller) -> dict[str, Any]:
    _budget(body.replications * body.weeks * (len(body.scenarios) + 1), MAX_REPLICATION_WEEKS,
            "replications x weeks x (scenarios + baseline)")
    try:
        return service.compare(_model(body.model), service.parse_scenarios(body.scenarios), body.replications,
                               body.weeks, body.warmup_weeks, body.seed)
    except HospitalModelError as error:
        raise _problem(error) from None


@router.post("/hospital/forecast", summary="Occupancy and ED waits ahead from the census, 95 % prediction intervals")
def forecast(body: ForecastRequest, principal: Caller) -> dict[str, Any]:
    _budget(body.replications * body.horizon_h, MAX_FORECAST_REPLICATION_HOURS, "replications x horizon_h")
    try:
        model = _model(body.model)
        if body.census is None:
            return service.forecast_demo(model, body.history_weeks, body.horizon_h, body.replications, body.seed)
        census, how = service.parse_census(body.census, model)
        return service.forecast_from(model, census, how, body.horizon_h, body.replications, body.seed)
    except HospitalModelError as error:
        raise _problem(error) from None


@router.get("/hospital/live-model", summary="The model of the live census (units, beds, rosters; no patients)")
def live_model(principal: Caller, services: ServicesDep) -> dict[str, Any]:
    return services.hospital.model.model_dump()


@router.get("/hospital/census", summary="The live census per unit (counts, time in place), ED queue, flows")
def census(principal: Caller, services: ServicesDep,
           after_version: Annotated[int | None, Query(ge=0, description="answer 'unchanged' while the census "
                                                      "is still at this version (cheap polling)")] = None,
           ) -> dict[str, Any]:
    live = services.hospital
    if after_version is not None and after_version == live.version:
        return {"version": live.version, "unchanged": True}
    return live.snapshot()


@router.get("/hospital/census/forecast", summary="Occupancy and ED waits ahead from the live census, 95 % bands")
def census_forecast(principal: Caller, services: ServicesDep,
                    horizon_h: Annotated[float, Query(ge=1, le=48)] = 48.0,
                    replications: Annotated[int, Query(ge=10, le=200)] = 100) -> dict[str, Any]:
    try:
        return services.hospital.forecast(horizon_h, replications)
    except HospitalModelError as error:
        raise _problem(error) from None


def _adt_answer(outcome: Outcome, ack_text: str | None = None) -> dict[str, Any]:
    if outcome.retry:  # not kept (the journal could not take it): nothing applied, the sender sends it again
        raise ProblemError(503, "ADT message not taken: send it again", outcome.reason, kind="hospital-adt-retry",
                           control_id=outcome.control_id, ack=ack_text)
    if not outcome.accepted:
        raise ProblemError(422, "ADT message refused", outcome.reason, kind="hospital-adt", field=outcome.field,
                           control_id=outcome.control_id, ack=ack_text)
    return {"accepted": True, "duplicate": outcome.duplicate, "control_id": outcome.control_id, "ack": ack_text}


REFUSED: dict[int | str, dict[str, Any]] = {413: {"description": "The body is too large"},
                                           422: {"description": "Refused (problem+json naming the field; for "
                                                                 "ADT with the NAK in `ack`)"},
                                           503: {"description": "Not taken (the journal could not keep it; "
                                                                 "nothing applied): send it again"}}


@router.post("/hospital/adt", summary="One HL7 v2 ADT message (ER7 text) into the live census; answers the ACK",
             responses=REFUSED)
async def adt(request: Request, principal: Feeder, services: ServicesDep) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_ADT_BYTES:
        raise ProblemError(413, "Request too large", f"an ADT message is at most {MAX_ADT_BYTES} bytes",
                           field="body")
    text = body.decode("utf-8", errors="replace")
    outcome = services.hospital.handle(text)
    return _adt_answer(outcome, ack(text, outcome, services.clock()))


@router.post("/hospital/encounter", summary="A FHIR R4 Encounter (create or update) into the live census")
def encounter(resource: dict[str, Any], principal: Feeder, services: ServicesDep) -> dict[str, Any]:
    return _adt_answer(services.hospital.handle_encounter(resource))


@router.get("/hospital/equipment", summary="Equipment health and remaining life from telemetry, predicted downtime")
def equipment(principal: Caller, services: ServicesDep) -> dict[str, Any]:
    return services.hospital.equipment.status()


@router.post("/hospital/equipment/{asset}/samples", summary="Telemetry of one device (the ingest's sample formats)",
             responses={404: {"description": "No such device"}, **REFUSED})
async def equipment_samples(asset: str, request: Request, principal: Telemetry, services: ServicesDep) -> dict[str, Any]:
    twin = services.hospital.equipment
    if asset not in twin.assets:
        raise ProblemError(404, "Not found", f"no device {asset!r} in the equipment list", kind="not-found",
                           field="asset")
    try:
        accepted = twin.ingest(asset, readings_from_payload(await request.body()), "http")
    except EquipmentInputError as error:
        raise ProblemError(422, "Invalid telemetry", str(error), kind="equipment-input", field=error.field) from None
    return {"asset": asset, "accepted": accepted}
