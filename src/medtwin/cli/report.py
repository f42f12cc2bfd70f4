"""``medtwin report PATIENT -o FILE.pdf|FILE.html``: the one-page patient twin report, written to a file.

The format comes from the file's suffix. Writing a report is an export of the patient's data and is audited
like ``medtwin export``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from medtwin.cli.common import audit_cli, console, fail, load_settings, open_store
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.store.records import resolve_patient
from medtwin.twin.cgm_report import DEFAULT_DAYS, MAX_DAYS, zone
from medtwin.twin.report import DEFAULT_TREND_DAYS, FORMATS, build_report


def report_command(
    patient: Annotated[str, typer.Argument(help="Patient id or identifier (e.g. MRN)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the report: a .pdf or .html file")],
    days: Annotated[int, typer.Option(min=1, max=MAX_DAYS, help="Days of CGM data for the metrics and the AGP")]
    = DEFAULT_DAYS,
    tz: Annotated[str, typer.Option(help="IANA time zone of the AGP's time of day")] = "UTC",
    trend_days: Annotated[int, typer.Option(min=1, max=30, help="Days of each device stream on the trends")]
    = DEFAULT_TREND_DAYS,
) -> None:
    """Write a patient's one-page twin report (PDF: one A4 page; HTML: self-contained)."""
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        fail(f"cannot tell the format from {output.name!r}: the output file must end in .pdf or .html", 2)
    try:
        zone(tz)
    except PhysiologyInputError as error:
        fail(f"--tz: {error.message}", 2)
    store = open_store(load_settings())
    resolved = resolve_patient(store, patient)
    report = build_report(store, resolved, now=datetime.now(UTC), days=days, trend_days=trend_days, tz=tz) \
        if resolved else None
    audit_cli(store, "export", "Patient", outcome="success" if report else "failure", patient_id=resolved,
              detail={"format": fmt})
    if report is None:
        fail(f"no patient {patient!r} in the store (see `medtwin patients`)")
    _, render = FORMATS[fmt]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(render(report))
    cgm = report.cgm.coverage
    console.print(f"wrote the {fmt.upper()} report of {resolved} to {output} "
                  f"(CGM: {cgm.n_readings} readings, {cgm.percent_time_active:.0f} % active)")
