"""``medtwin twin``: any registered twin kind from the command line (list, simulate, fit, assimilate, compare).

Thin over :mod:`medtwin.twin.kind_service`, the same core the API calls. Heavy modules (numpy, scipy, the
model framework, the kinds' plug-ins) are imported inside the commands only. Inputs are JSON or YAML files;
an error names the file and the entry and exits with status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medtwin.cli.common import fail_input, input_errors

HELP = "Any registered twin kind (plug-ins): list kinds, simulate, fit, assimilate, compare."
app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)

KindArg = Annotated[str, typer.Argument(help="twin kind name (see `medtwin twin kinds`)")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="parameter override NAME=VALUE (repeatable)")]
OutOption = Annotated[Path | None, typer.Option(help="write the full JSON result here")]


_fail = fail_input


def _read(path: Path, what: str) -> Any:
    import yaml

    if not path.is_file():
        _fail(f"{path}: no such {what} file")
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        _fail(f"{path}: cannot parse {what}: {str(exc).splitlines()[0]}")


def _overrides(pairs: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            _fail(f"--set {pair!r}: expected NAME=NUMBER")
        if not sep:
            _fail(f"--set {pair!r}: expected NAME=NUMBER")
    return out


def _run(kind: str, source: Path | None, call: Any) -> dict[str, Any]:
    """Look the kind up and run ``call(kind)``; model input errors name the file they came from."""
    from medtwin.model.errors import ModelInputError
    from medtwin.model.kinds import get

    try:
        found = get(kind)
    except ModelInputError as exc:
        _fail(str(exc))
    with input_errors(f"{source}: " if source is not None else ""):
        result: dict[str, Any] = call(found)
    return result


def _write(result: dict[str, Any], out: Path | None) -> None:
    if out is not None:
        out.write_text(json.dumps(result, indent=1), encoding="utf-8")
        typer.echo(f"wrote {out}")


def kind_problems(drug_folder: Path | None = None) -> list[str]:
    """What did not become a kind: each plug-in that failed to load (the registry's ``load_errors``), then each
    drug file left out ('left out: <file>: <entry>: <reason>', :func:`medtwin.pharmaco.pk_twin_kind.checked_drug_kinds`
    of ``drug_folder``, default the shipped one the ``drugs`` plug-in reads), which otherwise shows only in the log."""
    from medtwin.model.kinds import load_errors
    from medtwin.pharmaco.pk_twin_kind import checked_drug_kinds

    lines = [f"plug-in {name} failed to load: {error}" for name, error in load_errors().items()]
    try:
        left_out = checked_drug_kinds(drug_folder)[1]
    except Exception as exc:  # the drugs plug-in itself failed (listed above): say so, do not hide it in a traceback
        return [*lines, f"drug files could not be checked: {type(exc).__name__}: {exc}"]
    return [*lines, *(f"left out: {entry}" for entry in left_out)]


@app.command("kinds")
def kinds_command(as_json: Annotated[bool, typer.Option("--json", help="the full descriptors as JSON")] = False) -> None:
    """List the registered twin kinds (entry points and registrations) with their outputs and units; on stderr,
    the plug-ins that failed to load and the drug files left out, with the reason (the exit code stays 0)."""
    from medtwin.model.kinds import kinds

    found = kinds()
    if as_json:
        typer.echo(json.dumps([k.describe() for k in found.values()], indent=1))
    else:
        for name, kind in found.items():
            outputs = ", ".join(f"{o.name} [{o.unit}]" for o in kind.model.outputs)
            typer.echo(f"{name}\t{kind.title}\t{kind.model.name}\t{outputs}")
    for line in kind_problems():
        typer.echo(line, err=True)


@app.command("simulate")
def simulate_command(kind: KindArg,
                     scenario: Annotated[Path | None, typer.Option(help="timeline JSON/YAML (default: the kind's example)")] = None,
                     set_: SetOption = None, out: OutOption = None) -> None:
    """Simulate a scenario on the kind's base patient (with --set overrides)."""
    from medtwin.twin import kind_service as service

    data = _read(scenario, "scenario") if scenario is not None else None
    overrides = _overrides(set_)
    result = _run(kind, scenario, lambda k: service.simulate_kind(
        k, service.SimulateRequest(parameters=overrides, scenario=data)))
    for name, output in result["outputs"].items():
        values = output["values"]
        typer.echo(f"{name} [{output['unit']}]: start {values[0]:.4g}, min {min(values):.4g}, "
                   f"max {max(values):.4g}, end {values[-1]:.4g} ({len(values)} times, {result['method']})")
    _write(result, out)


@app.command("fit")
def fit_command(kind: KindArg,
                observations: Annotated[Path, typer.Argument(help="JSON/YAML {scenario, output, t, values}")],
                set_: SetOption = None, out: OutOption = None) -> None:
    """MAP fit of the kind's personalised parameters (Laplace SDs)."""
    from medtwin.twin import kind_service as service

    data = _read(observations, "observations")
    overrides = _overrides(set_)
    result = _run(kind, observations, lambda k: service.fit_kind(
        k, service.FitRequest(parameters=overrides, observations=data)))
    for name, value in result["fitted"].items():
        typer.echo(f"{name} = {value:.6g} ± {result['fitted_sd'][name]:.3g} {result['fitted_units'][name]}")
    typer.echo(f"residual SD {result['residual_sd']:.4g}, {result['n_observations']} observations")
    _write(result, out)


@app.command("assimilate")
def assimilate_command(kind: KindArg,
                       observations: Annotated[Path, typer.Argument(help="JSON/YAML {scenario, output, t, values}")],
                       filter_: Annotated[Path | None, typer.Option("--filter", help="stored filter to continue")] = None,
                       members: Annotated[int, typer.Option(help="ensemble members")] = 32,
                       seed: Annotated[int, typer.Option(help="seed of the filter's generator")] = 0,
                       out: OutOption = None) -> None:
    """Ensemble Kalman filter over the kind's drifting parameters; --out keeps the filter to continue it."""
    from medtwin.twin import kind_service as service

    data = _read(observations, "observations")
    stored = _read(filter_, "filter") if filter_ is not None else None
    result = _run(kind, observations, lambda k: service.assimilate_kind(
        k, service.AssimilateRequest(observations=data, filter=stored, n_members=members, seed=seed)))
    for name, estimate in result["estimates"].items():
        typer.echo(f"{name} = {estimate['value']:.6g} {estimate['unit']} (multiplier {estimate['multiplier']:.4g}, "
                   f"SD log {estimate['sd_log']:.3g})")
    typer.echo(f"{result['n_assimilated']} observations assimilated, time {result['time']:g}")
    _write(result, out)


@app.command("compare")
def compare_command(kind: KindArg,
                    scenarios: Annotated[Path, typer.Argument(help="JSON/YAML {name: timeline, ...}")],
                    fit: Annotated[Path | None, typer.Option(help="a fit result (--out of `twin fit`)")] = None,
                    ensemble: Annotated[int, typer.Option(help="ensemble size")] = 50,
                    seed: Annotated[int, typer.Option(help="seed of the ensemble draws")] = 0,
                    out: OutOption = None) -> None:
    """What-if: each scenario over the fitted posterior (or the population), median and 5-95 % band."""
    from medtwin.twin import kind_service as service

    data = _read(scenarios, "scenarios")
    fitted = _read(fit, "fit") if fit is not None else None
    if not isinstance(data, dict):
        _fail(f"{scenarios}: must map scenario names to timelines")
    result = _run(kind, scenarios, lambda k: service.compare_kind(
        k, service.CompareRequest(scenarios=data, fit=fitted, n_ensemble=ensemble, seed=seed)))
    typer.echo(f"ensemble: {result['n_ensemble']} members, {result['ensemble']}")
    for band in result["bands"]:
        typer.echo(f"{band['scenario']}: {band['output']} [{band['unit']}] median mean {band['median_mean']:.4g}, "
                   f"min {band['median_min']:.4g}, max {band['median_max']:.4g}, end {band['p5'][-1]:.4g}-"
                   f"{band['p95'][-1]:.4g} (5-95 %)")
    _write(result, out)
