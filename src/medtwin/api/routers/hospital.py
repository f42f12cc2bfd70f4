"""The hospital operations twin over HTTP: simulate, forecast from a census, compare what-ifs.

Thin over :mod:`medtwin.hospital.service`. Guarded as ``simulate`` on the route family ``hospital`` (no
patient scope: the inputs are a model, a census of counts and stays, and scenarios; the outputs are counts,
times and flows, never a patient's identity). Model, census and scenario errors are problem+json 422 naming
the field. Runs are bounded per request (replications, weeks) and made in the request's worker thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from medtwin.api.deps import Principal, guard
from medtwin.api.problems import ProblemError
from medtwin.hospital import service
from medtwin.hospital.model import HospitalModel, HospitalModelError, demo_model, parse_model

router = APIRouter(tags=["hospital"])
Caller = Annotated[Principal, Depends(guard("simulate", "hospital"))]


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
