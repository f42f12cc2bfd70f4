"""The tumour twin over HTTP: fit, forecast and compare on a patient's lesion measurements.

Thin over :mod:`medtwin.oncology.service`. Measurements come from the body or, when it posts none, from the
patient's record (Observations of tumour size, LOINC 21889-1 / 33728-7, as one lesion). A fit is stored as a
twin version of kind ``tumour`` (``TwinRepository``). The patient is resolved by the guard (404 when unknown
or out of reach, like a missing one); bad measurements are 422 problem+json naming the field and row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from medtwin.api.deps import ObservationSimulator, ObservationWriter, PatientCall
from medtwin.api.problems import ProblemError
from medtwin.oncology import service
from medtwin.oncology.measurements import MeasurementError
from medtwin.store.records import RecordRepository
from medtwin.store.twins import TwinRepository

router = APIRouter(tags=["tumour"])
TUMOUR_SIZE_CODES = ("21889-1", "33728-7")  # Size Tumor; Size.maximum dimension in Tumor
KIND = "tumour"
R = TypeVar("R", bound=service.FitRequest)


def _from_record(call: PatientCall) -> list[service.Measurement]:
    rows: list[dict[str, Any]] = []
    with call.store.connect() as connection:
        repository = RecordRepository(connection, call.store.codec)
        for code in TUMOUR_SIZE_CODES:
            rows += [r for r in repository.observations(call.patient_id, code=code, limit=1000)[1]
                     if r["value"] is not None and r["effective"] is not None]
    if not rows:
        raise call.not_found("no tumour size Observations (LOINC 21889-1, 33728-7); post measurements")
    rows.sort(key=lambda r: r["effective"])
    first = rows[0]["effective"]
    return [service.Measurement(lesion="record", time_day=(r["effective"] - first).total_seconds() / 86400.0,
                                size=float(r["value"]), unit=str(r["unit"] or ""), row=i + 1)
            for i, r in enumerate(rows)]


def _measured(call: PatientCall, body: R) -> tuple[R, str]:
    if body.measurements:
        return body, "posted"
    return body.model_copy(update={"measurements": _from_record(call)}), "record"


def _run(run: Callable[[R], dict[str, Any]], body: R) -> dict[str, Any]:
    try:
        return run(body)
    except MeasurementError as exc:
        raise ProblemError(422, "Unusable measurements", exc.message, kind="invalid-measurements",
                           field=exc.field) from None


def _fit_and_store(call: PatientCall, body: service.FitRequest) -> dict[str, Any]:
    measured, source = _measured(call, body)
    result = _run(service.fit, measured)
    provenance = {"source": source, "measurements": len(measured.measurements), "model": measured.model}
    with call.store.begin() as connection:
        version = TwinRepository(connection, call.store.codec).add_version(
            call.patient_id, KIND, result, provenance, actor=call.actor, now=call.clock())
    return {**result, "source": source, "twin_version": version}


@router.post("/patients/{patient_id}/tumour/fit", summary="Fit the growth laws to the lesions; stored as a twin version")
async def fit(body: service.FitRequest, call: ObservationWriter) -> dict[str, Any]:
    return await run_in_threadpool(_fit_and_store, call, body)


@router.post("/patients/{patient_id}/tumour/forecast", summary="Lesion volume ahead with a calibrated interval")
async def forecast(body: service.ForecastRequest, call: ObservationSimulator) -> dict[str, Any]:
    measured, source = _measured(call, body)
    return {**await run_in_threadpool(_run, service.forecast, measured), "source": source}


@router.post("/patients/{patient_id}/tumour/compare",
             summary="Continue / stop / switch chemotherapy and radiotherapy schedules (BED, EQD2, RECIST)")
async def compare(body: service.CompareRequest, call: ObservationSimulator) -> dict[str, Any]:
    measured, source = _measured(call, body)
    return {**await run_in_threadpool(_run, service.compare, measured), "source": source}
