"""`medtwin drug ...`: test drugs and doses on a patient's twin (PK/PD, PGx, dose individualisation)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from medtwin.pharmaco.covariates import PatientCovariates, Sex
from medtwin.pharmaco.dosing import DoseEvent, Regimen, Route
from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.pharmaco.iwpc import IwpcInput, Race, iwpc_weekly_dose
from medtwin.pharmaco.library import LeftOut
from medtwin.pharmaco.pgx import GeneResult, call_pgx

app = typer.Typer(help="Test drugs and doses on a patient's twin: PK/PD, pharmacogenomics, dose suggestions.",
                  no_args_is_help=True)
console = Console()
T = TypeVar("T")


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=2)


def _errors(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
    return str(exc)


@contextmanager
def _bad_input_stops() -> Iterator[None]:
    """Bad input inside (a pharmaco error or a pydantic validation error) stops the command with exit code 2
    and a message naming each offending field."""
    try:
        yield
    except (PharmacoInputError, ValidationError) as exc:
        _fail(_errors(exc))


def _entry(option: str, i: int, text: str, usage: str, min_parts: int, max_parts: int | None,
           read: Callable[[list[str]], T]) -> T:
    """The ``i``-th value of a repeatable comma-separated ``option``, split and given to ``read``. Too few or
    too many parts, or a ``ValueError`` from ``read``, stop with an error naming ``option[i]`` and the text."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) < min_parts or (max_parts is not None and len(parts) > max_parts):
        raise PharmacoInputError(f"{option}[{i}]", f"{text!r} must be '{usage}'")
    try:
        return read(parts)
    except ValueError as exc:
        raise PharmacoInputError(f"{option}[{i}]", f"cannot read numbers in {text!r}") from exc


Age = Annotated[float, typer.Option(help="Age [years].")]
Weight = Annotated[float, typer.Option(help="Weight [kg].")]


def _patient(age: float, weight: float, sex: Sex, creatinine: float | None, cyp2c9: str | None,
             vkorc1: str | None, dialysis: bool) -> PatientCovariates:
    return PatientCovariates(age_years=age, weight_kg=weight, sex=sex, serum_creatinine_mg_dl=creatinine,
                             cyp2c9=cyp2c9, vkorc1=vkorc1, dialysis=dialysis)


Folder = Annotated[Path | None, typer.Option(
    "--folder", exists=True, file_okay=False, dir_okay=True,
    help="Drug files to read instead of the shipped library (e.g. a new file before it ships).")]


def _left_out_lines(left_out: Sequence[LeftOut]) -> None:
    for entry in left_out:
        typer.echo(f"left out: {entry}")


@app.command("list")
def list_drugs(folder: Folder = None) -> None:
    """List the drug library with model and source; then every file left out, with the entry and why."""
    from medtwin.pharmaco.library import load_library
    library = load_library(folder)
    table = Table(title="Drug library")
    for col in ("drug", "model", "structure", "covariates", "source"):
        table.add_column(col)
    for name, d in library.drugs.items():
        s = d.structure
        table.add_row(name, d.model_name, f"{s.compartments}-cmt {'oral' if s.absorption else 'IV'}",
                      ", ".join(d.required_covariates) or "-", d.source[:90] + "...")
    console.print(table)
    _left_out_lines(library.left_out)


@app.command("check")
def check_drugs(folder: Folder = None) -> None:
    """Check every drug file: it loads, passes the checks (units, citations, every entry) and becomes a twin
    kind. Prints 'ok: <file>' or 'left out: <file>: <entry>: <reason>'; exit code 1 when any is left out."""
    from medtwin.pharmaco.pk_twin_kind import checked_drug_kinds
    built, left_out = checked_drug_kinds(folder)
    for kind in built:
        typer.echo(f"ok: {kind.name.removeprefix('drug-')}.toml ({kind.title})")
    _left_out_lines(left_out)
    if left_out:
        raise typer.Exit(code=1)


@app.command("simulate")
def simulate_command(
    drug: str,
    dose: Annotated[list[str], typer.Option(help="Dose with unit, repeatable to compare: '1 g'.")],
    interval: Annotated[float, typer.Option(help="Dosing interval [h].")],
    n_doses: Annotated[int, typer.Option(help="Number of doses.")] = 14,
    route: Annotated[Route | None, typer.Option(help="Route (default: the drug's).")] = None,
    infusion: Annotated[float, typer.Option(help="Infusion duration [h] (iv_infusion).")] = 0.0,
    age: Age = 60.0,
    weight: Weight = 70.0,
    sex: Annotated[Sex, typer.Option()] = Sex.MALE,
    creatinine: Annotated[float | None, typer.Option(help="Serum creatinine [mg/dL].")] = 1.0,
    cyp2c9: Annotated[str | None, typer.Option(help="CYP2C9 diplotype, e.g. '*1/*3'.")] = "*1/*1",
    vkorc1: Annotated[str | None, typer.Option(help="VKORC1 genotype: G/G, G/A, A/A.")] = "G/G",
    dialysis: bool = False,
    horizon: Annotated[float | None, typer.Option(help="Horizon [h] (default: end of dosing).")] = None,
    samples: Annotated[int, typer.Option(help="Virtual patients for the prediction interval.")] = 500,
    seed: int = 0,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Simulate (and compare) regimens on the patient's twin: PTA and adverse-event probability."""
    from medtwin.pharmaco.library import load_drug
    from medtwin.pharmaco.twin import CompareRequest, compare_regimens
    with _bad_input_stops():
        model = load_drug(drug)
        chosen = route or model.default_route
        duration = infusion or (model.default_infusion_duration_h if chosen is Route.IV_INFUSION else 0.0)
        regimens = [Regimen(dose=d, route=chosen, interval_h=interval, n_doses=n_doses, infusion_duration_h=duration)
                    for d in dose]
        request = CompareRequest(drug=drug, patient=_patient(age, weight, sex, creatinine, cyp2c9, vkorc1, dialysis),
                                 regimens=regimens, horizon_h=horizon or interval * n_doses, n_samples=samples, seed=seed)
        result = compare_regimens(request)
    if as_json:
        console.print_json(result.model_dump_json())
    else:
        table = Table(title=f"{result.drug} ({result.model}) - target {result.target}; adverse {result.adverse}")
        for col in ("regimen", "metric (median [90% PI])", "P(target)", "P(adverse)"):
            table.add_column(col)
        for o in result.outcomes:
            table.add_row(f"{o.regimen.dose} q{o.regimen.interval_h:g}h {o.regimen.route.value}",
                          f"{o.metric_name}: {o.metric_p50:.3g} [{o.metric_p05:.3g}-{o.metric_p95:.3g}]",
                          f"{o.probability_target:.1%}", f"{o.probability_adverse:.1%}")
        console.print(table)
    if plot is not None:
        from medtwin.pharmaco.plotting import plot_comparison

        console.print(f"plot written to {plot_comparison(result, plot)}")


@app.command("compare")
def compare_command(
    drug: str,
    regimen: Annotated[list[str], typer.Option(help="'DOSE,INTERVAL_H[,N_DOSES[,INFUSION_H]]', repeatable.")],
    age: Age = 60.0,
    weight: Weight = 70.0,
    sex: Annotated[Sex, typer.Option()] = Sex.MALE,
    creatinine: Annotated[float | None, typer.Option(help="Serum creatinine [mg/dL].")] = 1.0,
    cyp2c9: Annotated[str | None, typer.Option()] = "*1/*1",
    vkorc1: Annotated[str | None, typer.Option()] = "G/G",
    horizon: Annotated[float, typer.Option(help="Horizon [h].")] = 168.0,
    samples: int = 500,
    seed: int = 0,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here.")] = None,
) -> None:
    """Compare regimens of different doses and intervals (JSON result on stdout)."""
    from medtwin.pharmaco.library import load_drug
    from medtwin.pharmaco.twin import CompareRequest, compare_regimens
    with _bad_input_stops():
        model = load_drug(drug)

        def numbers(parts: list[str]) -> tuple[str, float, int, float]:
            interval = float(parts[1])
            n = int(parts[2]) if len(parts) > 2 else max(1, int(horizon // interval))
            inf = float(parts[3]) if len(parts) > 3 else model.default_infusion_duration_h
            return parts[0], interval, n, inf

        regimens = []
        for i, text in enumerate(regimen):
            dose, interval, n, inf = _entry("regimen", i, text, "DOSE,INTERVAL_H[,N_DOSES[,INFUSION_H]]", 2, None,
                                            numbers)
            route = model.default_route
            regimens.append(Regimen(dose=dose, route=route, interval_h=interval, n_doses=n,
                                    infusion_duration_h=inf if route is Route.IV_INFUSION else 0.0))
        result = compare_regimens(CompareRequest(
            drug=drug, patient=_patient(age, weight, sex, creatinine, cyp2c9, vkorc1, False), regimens=regimens,
            horizon_h=horizon, n_samples=samples, seed=seed))
    summary = [{"regimen": o.regimen.model_dump(mode="json"), "metric": o.metric_name, "median": o.metric_p50,
                "probability_target": o.probability_target, "probability_adverse": o.probability_adverse}
               for o in result.outcomes]
    typer.echo(json.dumps({"drug": result.drug, "target": result.target, "adverse": result.adverse,
                           "outcomes": summary}, indent=2))
    if plot is not None:
        from medtwin.pharmaco.plotting import plot_comparison

        plot_comparison(result, plot)


def _pgx_why(g: GeneResult) -> str:
    """Why a gene result is less than a confident call, in one cell."""
    parts: list[str] = []
    if g.status == "not_callable":
        parts.append(f"not callable: {', '.join(g.unexplained_positions) or 'see warnings'}")
    if g.missing_positions:
        shown = ", ".join(g.missing_positions[:3]) + (" ..." if len(g.missing_positions) > 3 else "")
        parts.append(f"{len(g.missing_positions)} missing: {shown}")
    parts += g.warnings[:2] + g.notes[:1]
    return "; ".join(parts)


def _pgx_diplotype(g: GeneResult) -> str:
    if g.status in ("called", "outside_call"):
        return g.diplotype
    if g.status == "ambiguous":
        shown = ", ".join(c.diplotype for c in g.candidates[:4])
        return f"one of {shown}" + (f" (+{len(g.candidates) - 4})" if len(g.candidates) > 4 else "")
    return "not callable" if g.status == "not_callable" else "no data"


@app.command("pgx")
def pgx_command(
    vcf: Annotated[Path, typer.Argument(help="VCF file (GRCh38), plain or gzip; gVCF reference blocks count.")],
    sample: Annotated[str | None, typer.Option(help="Sample name if the VCF has several.")] = None,
    outside_calls: Annotated[Path | None, typer.Option(
        "--outside-calls", help="PharmCAT outside-call TSV: gene, diplotype or phenotype, activity score.")] = None,
    cyp2d6_copy_number: Annotated[int | None, typer.Option(help="CYP2D6 total copy number.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Call 13 pharmacogenes from every PharmCAT defining position; CPIC phenotypes; says 'not callable' and why."""
    if not vcf.is_file():
        _fail(f"{vcf}: file not found")
    try:
        report = call_pgx(vcf, sample=sample, cyp2d6_copy_number=cyp2d6_copy_number, outside_calls=outside_calls)
    except PharmacoInputError as exc:
        _fail(str(exc))
        return
    if as_json:
        console.print_json(report.model_dump_json())
        return
    table = Table(title=f"Pharmacogenomics: sample {report.sample} ({report.assembly}); {report.definition_version}")
    for col in ("gene", "status", "diplotype", "activity score", "phenotype", "why"):
        table.add_column(col)
    for g in report.genes.values():
        phenotype = g.phenotype + (" (all candidates agree)" if g.phenotype_inferred else "")
        table.add_row(g.gene, g.status.replace("_", " "), _pgx_diplotype(g),
                      "-" if g.activity_score is None else f"{g.activity_score:g}", phenotype, _pgx_why(g))
    console.print(table)
    recs = Table(title="CPIC recommendations")
    for col in ("drug", "gene", "phenotype", "recommendation"):
        recs.add_column(col)
    for r in report.recommendations:
        recs.add_row(r.drug, r.gene, r.phenotype, r.recommendation)
    console.print(recs)


@app.command("warfarin-dose")
def warfarin_dose(
    age: Age,
    height: Annotated[float, typer.Option(help="Height [cm].")],
    weight: Weight,
    vkorc1: Annotated[str, typer.Option(help="G/G, G/A, A/A or unknown.")],
    cyp2c9: Annotated[str, typer.Option(help="e.g. *1/*1 or unknown.")],
    race: Annotated[Race, typer.Option()] = Race.WHITE,
    enzyme_inducer: bool = False,
    amiodarone: bool = False,
) -> None:
    """IWPC 2009 pharmacogenetic warfarin dose."""
    with _bad_input_stops():
        dose = iwpc_weekly_dose(IwpcInput(age_years=age, height_cm=height, weight_kg=weight, vkorc1=vkorc1,
                                          cyp2c9=cyp2c9, race=race, enzyme_inducer=enzyme_inducer,
                                          amiodarone=amiodarone))
    console.print(f"IWPC weekly dose: [bold]{dose.weekly_dose_mg:.1f} mg/week[/bold] ({dose.daily_dose_mg:.2f} mg/day)")


@app.command("individualise")
def individualise_command(
    drug: str,
    history: Annotated[Path, typer.Option(help="JSON list of dose events {time_h, amount, route, infusion_duration_h}.")],
    level: Annotated[list[str], typer.Option(help="'TIME_H,VALUE,UNIT' measured level, repeatable.")],
    age: Age = 60.0,
    weight: Weight = 70.0,
    sex: Annotated[Sex, typer.Option()] = Sex.MALE,
    creatinine: Annotated[float | None, typer.Option()] = 1.0,
    cyp2c9: Annotated[str | None, typer.Option()] = "*1/*1",
    vkorc1: Annotated[str | None, typer.Option()] = "G/G",
    max_adverse: Annotated[float, typer.Option(help="Largest acceptable adverse-event probability.")] = 0.1,
    seed: int = 0,
) -> None:
    """MAP-estimate the patient's parameters from measured levels and suggest a regimen."""
    from medtwin.pharmaco.twin import IndividualiseRequest, Level, individualise
    with _bad_input_stops():
        if not history.is_file():
            raise PharmacoInputError("history", f"file {history} not found")
        try:
            events = [DoseEvent(**e) for e in json.loads(history.read_text(encoding="utf-8"))]
        except json.JSONDecodeError as exc:
            raise PharmacoInputError("history", f"not valid JSON: {exc}") from exc
        levels = [_entry("level", i, text, "TIME_H,VALUE,UNIT", 3, 3,
                         lambda parts: Level(time_h=float(parts[0]), value=float(parts[1]), unit=parts[2]))
                  for i, text in enumerate(level)]
        suggestion = individualise(IndividualiseRequest(
            drug=drug, patient=_patient(age, weight, sex, creatinine, cyp2c9, vkorc1, False), history=events,
            levels=levels, max_adverse_probability=max_adverse, seed=seed))
    table = Table(title=f"{suggestion.drug}: individual parameters (MAP)")
    for col in ("parameter", "population", "individual", "90% CI"):
        table.add_column(col)
    for p in suggestion.parameters:
        table.add_row(f"{p.name} [{p.unit}]", f"{p.population:.3g}", f"{p.individual:.3g}",
                      f"{p.ci90_low:.3g}-{p.ci90_high:.3g}")
    console.print(table)
    r = suggestion.regimen
    if r is not None:
        console.print(f"Suggested: [bold]{r.dose} every {r.interval_h:g} h {r.route.value}"
                      f"{f' over {r.infusion_duration_h:g} h' if r.infusion_duration_h else ''}[/bold]; "
                      f"P(target) {suggestion.probability_target:.1%}, P(adverse) {suggestion.probability_adverse:.1%}; "
                      f"{suggestion.metric_name} median {suggestion.metric_p50:.3g}")
    console.print(suggestion.note)
