"""Reports for the clinician: the CGM report as JSON (the dashboard charts it) and the one-page patient twin
report as a PDF or HTML download.

Thin: resolve the patient (id or MRN; 404 when unknown or not visible), call :mod:`medtwin.twin.cgm_report`
or :mod:`medtwin.twin.report`. A report is an export of the patient's data (``guard("export", "Patient")``):
the audit middleware records it with the format; the download name carries no patient name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from medtwin.api.deps import ObservationReader, PatientCall, PatientExporter, audit_context
from medtwin.api.problems import ProblemError
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.twin.cgm_report import DEFAULT_DAYS, MAX_DAYS, CgmReport, cgm_report, resolve_zone, zone
from medtwin.twin.report import DEFAULT_TREND_DAYS, FORMATS, build_report, report_filename

router = APIRouter(prefix="/patients/{patient_id}", tags=["reports"])

Days = Annotated[int, Query(ge=1, le=MAX_DAYS, description="Days of CGM data, ending at the latest reading")]
TimeZone = Annotated[str | None, Query(min_length=1, max_length=64,
                                       description="IANA time zone of the AGP's time of day; default the patient's "
                                                   "(record) else the server's configured zone (MEDTWIN_TIME_ZONE)")]
TrendDays = Annotated[int, Query(ge=1, le=30, description="Days of each device stream on the trend charts")]


def _checked_zone(tz: str | None) -> str | None:
    try:
        return None if tz is None else zone(tz).key
    except PhysiologyInputError as exc:
        raise ProblemError(422, "Invalid request", exc.message, kind="validation", field="tz",
                           errors=[{"loc": ["query", "tz"], "msg": exc.message, "type": "value_error"}]) from exc


@router.get("/cgm-report", response_model=CgmReport,
            summary="CGM consensus metrics, data sufficiency and AGP percentiles over the last days of data")
def get_cgm_report(call: ObservationReader, days: Days = DEFAULT_DAYS, tz: TimeZone = None) -> CgmReport:
    name, source = resolve_zone(call.store, call.patient_id, _checked_zone(tz), call.services.settings.time_zone)
    report = cgm_report(call.store, call.patient_id, days=days, tz=name)
    report.time_zone_source = source
    return report


@dataclass(frozen=True)
class ReportQuery:
    days: int
    tz: str | None
    trend_days: int


def _report_query(days: Days = DEFAULT_DAYS, tz: TimeZone = None,
                  trend_days: TrendDays = DEFAULT_TREND_DAYS) -> ReportQuery:
    return ReportQuery(days, _checked_zone(tz), trend_days)


Report = Annotated[ReportQuery, Depends(_report_query)]


def _report(fmt: str, request: Request, call: PatientCall, query: ReportQuery) -> Response:
    audit_context(request).detail["format"] = fmt
    name, _source = resolve_zone(call.store, call.patient_id, query.tz, call.services.settings.time_zone)
    report = build_report(call.store, call.patient_id, now=call.clock(), days=query.days,
                          trend_days=query.trend_days, tz=name)
    if report is None:  # resolvable but without a Patient or a twin: nothing to report
        raise ProblemError(404, "Not found", f"patient {call.requested!r} has no record", kind="not-found",
                           field="patient_id")
    media_type, render = FORMATS[fmt]
    filename = report_filename(call.patient_id, report.generated_at, fmt)
    return Response(render(report), media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


_PDF = {200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
              "description": "One A4 page"}}
_HTML = {200: {"content": {"text/html": {"schema": {"type": "string"}}},
               "description": "A self-contained HTML document (inline CSS and SVG, no scripts or external resources)"}}


@router.get("/report.pdf", response_class=Response, responses=_PDF,  # type: ignore[arg-type]
            summary="The one-page patient twin report as a PDF download (an audited export)")
def get_report_pdf(request: Request, call: PatientExporter, query: Report) -> Response:
    return _report("pdf", request, call, query)


@router.get("/report.html", response_class=Response, responses=_HTML,  # type: ignore[arg-type]
            summary="The patient twin report as a self-contained HTML download (an audited export)")
def get_report_html(request: Request, call: PatientExporter, query: Report) -> Response:
    return _report("html", request, call, query)
