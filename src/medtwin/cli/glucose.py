"""``medtwin glucose``: simulate, personalise and compare regimens with the UVA/Padova T1D twin."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from medtwin.physiology.errors import PhysiologyInputError

if TYPE_CHECKING:  # the model, solver and plotting stack is imported by the command that runs
    from medtwin.physiology.uva_padova import PatientParameters

app = typer.Typer(
    help="Type 1 diabetes twin (UVA/Padova 2008): simulate, fit, compare.", no_args_is_help=True
)
console = Console()


def _fail(error: Exception) -> None:
    field = getattr(error, "field", "input")
    console.print(f"[red]error[/red] in [bold]{field}[/bold]: {getattr(error, 'message', error)}")
    raise typer.Exit(code=2)


def _patient(patient: str | None, twin: Path | None) -> PatientParameters:
    from medtwin.physiology.calibrate import FittedTwin
    from medtwin.physiology.uva_padova import virtual_patients
    if (patient is None) == (twin is None):
        raise PhysiologyInputError("patient", "give exactly one of --patient NAME or --twin FILE")
    if twin is not None:
        return FittedTwin.load(twin).parameters()
    return virtual_patients([p.strip() for p in str(patient).split(",")])


@app.command()
def simulate(
    scenario: Annotated[
        Path, typer.Argument(help="scenario YAML/JSON (meals, horizon_min, regimen, sensor)")
    ],
    patient: Annotated[
        str | None, typer.Option(help="virtual patient(s), e.g. adult#001 or adult#001,child#002")
    ] = None,
    twin: Annotated[Path | None, typer.Option(help="fitted twin JSON from `medtwin glucose fit`")] = None,
    out: Annotated[Path, typer.Option(help="output folder for CSV and plots")] = Path("glucose-out"),
) -> None:
    """Simulate a scenario; writes glucose.csv, metrics.json, trajectory PNG/HTML and AGP PNG."""
    import numpy as np

    from medtwin.physiology.metrics import ambulatory_glucose_profile
    from medtwin.physiology.plots import agp_png, trajectory_html, trajectory_png
    from medtwin.physiology.scenario import load_scenario
    from medtwin.physiology.service import simulate_scenario
    try:
        params = _patient(patient, twin)
        parsed = load_scenario(scenario)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as bar:
            bar.add_task(
                f"simulating {params.n} patient(s) x {parsed.horizon_min / 1440:g} day(s)", total=None
            )
            result = simulate_scenario(params, parsed)
    except PhysiologyInputError as exc:
        _fail(exc)
        return
    # write into a temporary folder first, then move: nothing partially written on failure
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".glucose-", dir=out.parent))
    with open(staging / "glucose.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["time [min]"] + [f"{p.name} glucose [mg/dL]" for p in result.patients])
        for i, t in enumerate(result.t_min):
            writer.writerow([t] + [p.glucose_mg_dl[i] for p in result.patients])
    (staging / "result.json").write_text(result.model_dump_json(), encoding="utf-8")
    for i, p in enumerate(result.patients):
        safe = p.name.replace("#", "_")
        trajectory_png(result, staging / f"{safe}_trajectory.png", i)
        trajectory_html(result, staging / f"{safe}_trajectory.html", i)
        agp = ambulatory_glucose_profile(np.asarray(result.cgm_t_min), np.asarray(p.cgm_mg_dl))
        agp_png(agp, staging / f"{safe}_agp.png", title=f"{p.name} AGP")
    out.mkdir(parents=True, exist_ok=True)
    for file in staging.iterdir():
        file.replace(out / file.name)
    staging.rmdir()
    table = Table(title="CGM metrics")
    for column in ("patient", "mean", "CV %", "TIR %", "<70 %", "<54 %", ">180 %", "LBGI", "HBGI"):
        table.add_column(column, justify="right")
    for p in result.patients:
        m = p.metrics
        table.add_row(
            p.name,
            f"{m.mean_mg_dl:.0f}",
            f"{m.cv_percent:.1f}",
            f"{m.time_in_range_70_180_percent:.1f}",
            f"{m.time_below_70_percent:.1f}",
            f"{m.time_below_54_percent:.1f}",
            f"{m.time_above_180_percent:.1f}",
            f"{m.lbgi:.2f}",
            f"{m.hbgi:.2f}",
        )
    console.print(table)
    console.print(f"wrote {out}")


@app.command()
def fit(
    log: Annotated[
        Path,
        typer.Argument(help="JSON log: body_weight_kg, basal_u_per_h, cgm_t_min, cgm_mg_dl, meals, boluses"),
    ],
    out: Annotated[Path, typer.Option(help="fitted twin JSON to write")] = Path("twin.json"),
) -> None:
    """Personalise the twin (MAP with cohort priors) from >= 3 days of CGM, insulin and meals."""
    from medtwin.physiology.calibrate import TwinCalibrator, parse_log
    try:
        if not log.is_file():
            raise PhysiologyInputError("log", f"no such file: {log}")
        try:
            data = json.loads(log.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PhysiologyInputError("log", f"not JSON: {exc}") from None
        parsed = parse_log(data)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as bar:
            bar.add_task(f"fitting {len(parsed.cgm_mg_dl)} CGM readings", total=None)
            calibrator = TwinCalibrator().fit(parsed)
    except PhysiologyInputError as exc:
        _fail(exc)
        return
    calibrator.to_twin().save(out)
    table = Table(title="fitted parameters (MAP +/- posterior SD)")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column("sd", justify="right")
    for key, value in calibrator.params_.items():
        table.add_row(key, f"{value:.5g}", f"{calibrator.param_sd_[key]:.3g}")
    console.print(table)
    console.print(f"residual SD {calibrator.residual_sd_mg_dl_:.1f} mg/dL; wrote {out}")


@app.command()
def compare(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML/JSON (meals and horizon)")],
    twin: Annotated[Path | None, typer.Option(help="fitted twin JSON")] = None,
    patient: Annotated[str | None, typer.Option(help="virtual patient (no posterior: single member)")] = None,
    basal_scale: Annotated[list[float], typer.Option(help="alternative basal multipliers")] = [],  # noqa: B006
    carb_ratio_scale: Annotated[list[float], typer.Option(help="alternative carb-ratio multipliers")] = [],  # noqa: B006
    bolus_offset: Annotated[
        list[float], typer.Option(help="alternative bolus offsets, min (negative = pre-bolus)")
    ] = [],  # noqa: B006
    ensemble: Annotated[int, typer.Option(min=1, max=500, help="posterior draws")] = 50,
    seed: Annotated[int, typer.Option(help="random seed for the posterior draws")] = 0,
    out: Annotated[Path | None, typer.Option(help="write the comparison JSON here")] = None,
) -> None:
    """Compare the current regimen with alternatives; metrics with a 5-95% band over the posterior."""
    import numpy as np

    from medtwin.physiology.calibrate import FittedTwin, twin_samples
    from medtwin.physiology.scenario import Regimen, load_scenario
    from medtwin.physiology.whatif import compare_regimens
    rng = np.random.default_rng(seed)
    try:
        if twin is not None and patient is None:
            members = twin_samples(FittedTwin.load(twin), ensemble, rng)
        else:
            members = _patient(patient, twin)
        parsed = load_scenario(scenario)
        regimens = [Regimen(name="current")]
        regimens += [Regimen(name=f"basal x{v:g}", basal_scale=v) for v in basal_scale]
        regimens += [Regimen(name=f"carb ratio x{v:g}", carb_ratio_scale=v) for v in carb_ratio_scale]
        regimens += [Regimen(name=f"bolus {v:+g} min", bolus_offset_min=v) for v in bolus_offset]
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as bar:
            bar.add_task(f"{len(regimens)} regimens x {members.n} members", total=None)
            result = compare_regimens(members, parsed, regimens, rng=rng)
    except PhysiologyInputError as exc:
        _fail(exc)
        return
    except ValueError as exc:  # pydantic range errors of regimen options
        console.print(
            f"[red]error[/red] in [bold]regimen[/bold]: {str(exc).splitlines()[0]} {str(exc).splitlines()[-1]}"
        )
        raise typer.Exit(code=2) from None
    table = Table(title=f"regimen comparison ({result.n_ensemble} members)")
    for column in ("regimen", "mean", "TIR % (5-95%)", "<70 % (95th)", "LBGI", "HBGI"):
        table.add_column(column, justify="right")
    for o in result.outcomes:
        m = o.metrics_median
        table.add_row(
            o.regimen.name,
            f"{m.mean_mg_dl:.0f}",
            f"{m.time_in_range_70_180_percent:.1f} ({o.time_in_range_p5_percent:.0f}-{o.time_in_range_p95_percent:.0f})",
            f"{o.time_below_70_p95_percent:.1f}",
            f"{m.lbgi:.2f}",
            f"{m.hbgi:.2f}",
        )
    console.print(table)
    if out is not None:
        out.write_text(result.model_dump_json(), encoding="utf-8")
        console.print(f"wrote {out}")
