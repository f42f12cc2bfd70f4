"""Record commands: import, patients, show, export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medtwin.cli.common import audit_cli, cli_actor, console, err_console, fail, load_settings, open_store
from medtwin.record.errors import RecordError

if TYPE_CHECKING:  # the record store and the twin builder are imported by the command that runs
    from medtwin.record.sources import RawUnit
    from medtwin.store.database import Store
    from medtwin.twin.build import ImportReport
    from medtwin.twin.summary import Measurement, PatientSummary

T = TypeVar("T")


def _units(files: list[Path]) -> list[RawUnit | RecordError]:
    from medtwin.record.sources import unit_from_bytes

    out: list[RawUnit | RecordError] = []
    for path in files:
        try:
            out.append(unit_from_bytes(path.read_bytes(), source=str(path)))
        except RecordError as error:
            out.append(error.located(source=str(path)))
    return out


def import_command(
    paths: Annotated[list[Path], typer.Argument(help="FHIR files (.json Bundles/resources, .ndjson) or folders")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Import FHIR R4 data. Each file is imported all or nothing; re-importing is harmless."""
    from medtwin.record.sources import discover
    from medtwin.twin.build import ImportReport, import_units

    try:
        files = discover(paths)
    except RecordError as error:
        fail(error.describe(), 2)
    if not files:
        fail("no .json or .ndjson files found", 2)
    store = open_store(load_settings())
    report = ImportReport()
    with Progress(TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=err_console, disable=as_json) as progress:
        task = progress.add_task("", total=len(files))
        for unit in _units(files):
            progress.update(task, description=Path(unit.source or "?").name[:40])
            unit_report = import_units(store, [unit], actor=cli_actor()).units[0]
            report.units.append(unit_report)
            audit_cli(store, "write", "Bundle", outcome="success" if unit_report.ok else "failure",
                      resource_id=unit_report.import_id or None,
                      detail={"created": unit_report.created, "updated": unit_report.updated})
            progress.advance(task)
    if as_json:
        console.print_json(json.dumps(report.as_dict(), default=str))
    else:
        _print_report(report)
    if not report.ok:
        for failed in report.errors:
            assert failed.error is not None
            err = failed.error
            err_console.print(f"[bold red]failed:[/] {escape(err.describe())}  [dim](nothing of this file was stored)[/]")
        raise typer.Exit(1)


def _print_report(report: ImportReport) -> None:
    table = Table(title="Imported resources by type", show_footer=True)
    by_type = report.by_type()
    table.add_column("resource type", footer="total")
    table.add_column("created or updated", justify="right", footer=str(sum(by_type.values())))
    for rtype, count in sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(rtype, str(count))
    console.print(table)
    totals = report.totals()
    console.print(f"files: {len(report.units)}  created: {totals['created']}  updated: {totals['updated']}  "
                  f"unchanged: {totals['unchanged']}  failed files: {totals['failed_units']}")
    warnings = [w for u in report.units for w in u.warnings]
    if warnings:
        console.print(f"[yellow]{len(warnings)} value(s) with a unit that is not valid UCUM (kept as given):[/]")
        for warning in warnings[:20]:
            console.print(f"  [yellow]-[/] {escape(warning)}")


def patients_command(
    name: Annotated[str | None, typer.Option(help="Search by name word(s)")] = None,
) -> None:
    """List the patients in the store."""
    from medtwin.store.records import RecordRepository
    from medtwin.twin.build import patient_summary

    store = open_store(load_settings())
    with store.connect() as connection:
        ids = RecordRepository(connection, store.codec).patient_ids(name=name)
    audit_cli(store, "read", "Patient", detail={"listed": len(ids)})
    table = Table(title=f"{len(ids)} patient(s)")
    for column in ("id", "name", "sex", "age", "problems", "medications", "twin v."):
        table.add_column(column)
    for patient_id in ids:
        found = patient_summary(store, patient_id)
        if found is None:
            table.add_row(patient_id, "", "", "", "", "", "")
            continue
        summary, version, _ = found
        table.add_row(patient_id, summary.name or "", summary.gender or "", str(summary.age_years or ""),
                      str(len(summary.problems)), str(len(summary.medications)), str(version))
    console.print(table)


def _fmt(measurement: Measurement | None) -> str:
    if measurement is None:
        return "—"
    value = measurement.text if measurement.value is None else f"{measurement.value:g} {measurement.unit or ''}"
    when = f" ({measurement.time:%Y-%m-%d})" if measurement.time else ""
    return f"{value}{when}"


def print_summary(summary: PatientSummary, version: int, provenance: dict[str, object]) -> None:
    console.rule(f"[bold]{escape(summary.name or summary.patient_id)}[/]")
    console.print(f"id {escape(summary.patient_id)} · {summary.gender or 'sex unknown'} · born {summary.birth_date or '?'} "
                  f"· age {summary.age_years if summary.age_years is not None else '?'}"
                  f"{' · deceased' if summary.deceased else ''}")
    console.print(escape(f"height {_fmt(summary.height)} · weight {_fmt(summary.weight)} · BMI {_fmt(summary.bmi)}"))
    console.print(escape(f"twin version {version} · from {provenance.get('source', '?')} at "
                         f"{provenance.get('imported_at', '?')}"))

    def listing(title: str, rows: list[tuple[str, ...]], columns: tuple[str, ...]) -> None:
        table = Table(title=f"{title} ({len(rows)})", title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))  # record text is data, not markup
        console.print(table)

    listing("Active problems", [(p.display or "", p.code or "", f"{p.onset:%Y-%m-%d}" if p.onset else "")
                                for p in summary.problems], ("problem", "code", "onset"))
    listing("Active medications", [(m.display or "", m.code or "", f"{m.authored_on:%Y-%m-%d}" if m.authored_on else "")
                                   for m in summary.medications], ("medication", "RxNorm", "since"))
    listing("Allergies", [(a.display or "", a.criticality or "", ", ".join(a.category)) for a in summary.allergies],
            ("allergy", "criticality", "category"))
    listing("Latest vital signs", [(v.display or v.code, _fmt(v)) for v in summary.vitals], ("vital sign", "value"))
    listing("Latest labs", [(v.display or v.code, _fmt(v)) for v in summary.labs], ("lab", "value"))
    listing("Immunisations (latest 10)", [(i.display or "", f"{i.date:%Y-%m-%d}" if i.date else "")
                                          for i in summary.immunizations[:10]], ("vaccine", "date"))
    listing("Encounters (latest 10)", [(f"{e.start:%Y-%m-%d}" if e.start else "", e.encounter_class or "",
                                        e.type or "", e.reason or "") for e in summary.encounters[:10]],
            ("date", "class", "type", "reason"))
    listing("Imaging studies", [(f"{i.started:%Y-%m-%d}" if i.started else "", ",".join(i.modalities),
                                 i.description or "", str(i.instances)) for i in summary.imaging],
            ("date", "modality", "description", "images"))


def _patient_read(patient: str, action: str, read: Callable[[Store, str], T | None], missing: str) -> T:
    """Resolve ``patient`` (id or identifier), ``read`` what the command needs, audit the read as ``action``
    (failure when there is no such patient) and stop with ``missing`` when there is nothing."""
    from medtwin.store.records import resolve_patient

    store = open_store(load_settings())
    resolved = resolve_patient(store, patient)
    found = read(store, resolved) if resolved else None
    audit_cli(store, action, "Patient", outcome="success" if found else "failure", patient_id=resolved)
    if found is None:
        fail(missing)
    return found


def show_command(
    patient: Annotated[str, typer.Argument(help="Patient id or identifier (e.g. MRN)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Show a patient's twin summary."""
    from medtwin.twin.build import patient_summary

    summary, version, provenance = _patient_read(
        patient, "read", patient_summary, f"no patient {patient!r} in the store (see `medtwin patients`)")
    if as_json:
        console.print_json(json.dumps({"version": version, "provenance": provenance,
                                       "summary": summary.model_dump(mode="json")}))
    else:
        print_summary(summary, version, provenance)


def export_command(
    patient: Annotated[str, typer.Argument(help="Patient id or identifier (e.g. MRN)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the FHIR Bundle (.json)")],
) -> None:
    """Export a patient's complete record as one FHIR R4 Bundle."""
    from medtwin.record import exactjson
    from medtwin.twin.build import export_patient

    bundle = _patient_read(patient, "export", export_patient, f"no patient {patient!r} in the store")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(exactjson.dumps(bundle, indent=True))  # decimals as stored (840.20 stays 840.20)
    console.print(f"wrote {bundle['total']} resources to {output}")
