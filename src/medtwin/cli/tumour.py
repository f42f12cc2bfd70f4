"""``medtwin tumour fit|forecast|compare``: the tumour twin on a CSV of measurements (JSON or a table out).

The CSV has a header with ``time_day``, ``size``, ``unit`` and optionally ``lesion`` (default ``1``); one row
per reading. Thin over :mod:`medtwin.oncology.service` (the API's core); heavy modules are imported in the
commands. An error names the file and the row and exits with status 2.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medtwin.cli.common import fail_input, input_errors

HELP = "Tumour twin: fit growth laws to lesion measurements, forecast with intervals, compare treatments."
app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)

CsvArg = Annotated[Path, typer.Argument(help="CSV: time_day,size,unit[,lesion] (size in mm/cm or mm3/cm3/mL)")]
ModelOption = Annotated[str, typer.Option(help="growth law, or auto (lowest AIC)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the full JSON result")]


_fail = fail_input


def _measurements(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        _fail(f"{path}: no such file")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"time_day", "size", "unit"} - set(reader.fieldnames or [])
        if missing:
            _fail(f"{path}: header lacks {', '.join(sorted(missing))} (need time_day,size,unit[,lesion])")
        out = []
        for number, row in enumerate(reader, start=2):  # the header is line 1
            try:
                out.append({"lesion": (row.get("lesion") or "1").strip(), "time_day": float(row["time_day"]),
                            "size": float(row["size"]), "unit": (row["unit"] or "").strip(), "row": number})
            except (TypeError, ValueError):
                _fail(f"{path}: row {number}: time_day and size must be numbers")
    if not out:
        _fail(f"{path}: no measurements")
    return out


def _run(path: Path, build: Any, run: Any) -> dict[str, Any]:
    with input_errors(f"{path}: "):
        result: dict[str, Any] = run(build(_measurements(path)))
    return result


def _emit(result: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    typer.echo(json.dumps(result, indent=2) if as_json else "\n".join(lines))


@app.command("fit")
def fit_command(measurements: CsvArg, model: ModelOption = "auto", as_json: JsonOption = False) -> None:
    """Fit the growth laws to every lesion; AIC/BIC of each law and the one chosen."""
    from medtwin.oncology import service

    result = _run(measurements, lambda m: service.FitRequest.model_validate({"measurements": m, "model": model}), service.fit)
    lines = [f"{'lesion':<10} {'law':<16} {'AIC':>9} {'converged':>9}  note"]
    for lesion in result["lesions"]:
        law = lesion["laws"][lesion["model"]]
        aic = "-" if law["aic"] is None else f"{law['aic']:.2f}"
        lines.append(f"{lesion['lesion']:<10} {lesion['model']:<16} {aic:>9} {law['converged']!s:>9}  {lesion['note']}")
    _emit(result, as_json, lines)


@app.command("forecast")
def forecast_command(measurements: CsvArg, model: ModelOption = "auto", as_json: JsonOption = False,
                     horizon: Annotated[list[float] | None, typer.Option(help="days after the last reading")] = None,
                     level: Annotated[float, typer.Option(help="interval level: 0.5, 0.8, 0.9 or 0.95")] = 0.8) -> None:
    """Forecast each lesion's volume with a calibrated prediction interval."""
    from medtwin.oncology import service

    def build(m: list[dict[str, Any]]) -> Any:
        return service.ForecastRequest.model_validate({"measurements": m, "model": model, "level": level,
                                                       "horizon_days": horizon or [42.0, 84.0]})

    result = _run(measurements, build, service.forecast)
    lines = [f"{'lesion':<10} {'law':<16} {'day':>7} {'volume mm3':>12} {'interval mm3':>25}"]
    for lesion in result["lesions"]:
        for p in lesion["points"]:
            band = (f"{p['lower_mm3']:.1f} - {p['upper_mm3']:.1f}" if p["lower_mm3"] is not None
                    else p["interval"])
            lines.append(f"{lesion['lesion']:<10} {lesion['model']:<16} {p['day']:>7.0f} {p['volume_mm3']:>12.1f} "
                         f"{band:>25}")
    _emit(result, as_json, lines)


@app.command("compare")
def compare_command(measurements: CsvArg,
                    scenarios: Annotated[Path, typer.Argument(help="JSON: current, regimens, radiotherapy, "
                                                                     "assessment_day (see the API)")],
                    model: ModelOption = "auto", as_json: JsonOption = False) -> None:
    """Compare continue/stop/switch regimens and radiotherapy schedules at the next assessment."""
    from medtwin.oncology import service

    if not scenarios.is_file():
        _fail(f"{scenarios}: no such file")
    try:
        extra = json.loads(scenarios.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        _fail(f"{scenarios}: not JSON: {exc}")
    if not isinstance(extra, dict):
        _fail(f"{scenarios}: expected a JSON object")
    result = _run(measurements, lambda m: service.CompareRequest.model_validate({**extra, "measurements": m, "model": model}),
                  service.compare)
    lines = [f"{'lesion':<10} {'scenario':<16} {'volume mm3':>12} {'RECIST':>14} {'BED Gy':>8} {'EQD2 Gy':>8}"]
    for lesion in result["lesions"]:
        for s in lesion["scenarios"]:
            volume = "-" if s["volume_mm3"] is None else f"{s['volume_mm3']:.1f}"
            bed = f"{s['bed_gy']:.1f}" if "bed_gy" in s else "-"
            eqd2 = f"{s['eqd2_gy']:.1f}" if "eqd2_gy" in s else "-"
            lines.append(f"{lesion['lesion']:<10} {s['name']:<16} {volume:>12} {s['recist']:>14} {bed:>8} {eqd2:>8}")
    _emit(result, as_json, lines)
