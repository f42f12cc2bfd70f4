"""``medtwin hospital``: the hospital operations twin: simulate, forecast from a census, compare what-ifs.

Models and scenarios are files (TOML or JSON; the demo hospital by default). Output is a table, or ``--json``.
Counts and times only: no patient is named. ``--scheduler`` sends the runs to a Dask scheduler at that address;
``--workers N`` starts a local cluster of N processes; by default runs are made here.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from medtwin.cli.common import console, fail

if TYPE_CHECKING:
    from medtwin.config import Settings
    from medtwin.hospital.model import HospitalModel

app = typer.Typer(help="Hospital operations twin: simulate, forecast from a census, compare what-ifs.",
                  no_args_is_help=True)

ModelOpt = Annotated[Path | None, typer.Option("--model", help="hospital model TOML/JSON (default: the demo)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
SchedulerOpt = Annotated[str | None, typer.Option(help="Dask scheduler address (tcp://host:8786)")]
WorkersOpt = Annotated[int, typer.Option(help="local Dask processes (0: run here)", min=0, max=64)]


@contextmanager
def _guarded() -> Iterator[None]:
    from medtwin.hospital.model import HospitalModelError

    try:
        yield
    except HospitalModelError as error:
        fail(f"{error.field}: {error.message}", 2)


def _model(path: Path | None) -> HospitalModel:
    from medtwin.hospital.model import demo_model, load_model

    return demo_model() if path is None else load_model(path)


def _read(path: Path) -> Any:
    from medtwin.hospital.model import HospitalModelError

    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as error:
        raise HospitalModelError(str(path), f"cannot read: {error}") from None


def _client(scheduler: str | None, workers: int) -> Any:
    if not scheduler and workers == 0:
        return nullcontext(None)
    from medtwin.hospital.fanout import dask_client

    return dask_client(scheduler, processes=True, n_workers=max(workers, 1), threads_per_worker=1)


def _table(title: str, metrics: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    for column in ("metric", "mean", "95 % CI"):
        table.add_column(column)
    for key, ci in metrics.items():
        table.add_row(key, f"{ci['mean']:.3f}", f"{ci['low']:.3f} .. {ci['high']:.3f}")
    return table


@app.command()
def simulate(model: ModelOpt = None, replications: int = 10, weeks: float = 8.0, warmup_weeks: float = 3.0,
             seed: int = 0, scheduler: SchedulerOpt = None, workers: WorkersOpt = 0, as_json: JsonOpt = False) -> None:
    """Waits, occupancy and throughput per unit from an empty hospital, with 95 % CIs over replications."""
    from medtwin.hospital import service

    with _guarded():
        hospital = _model(model)
        with _client(scheduler, workers) as client:
            out = service.simulate(hospital, replications, weeks, warmup_weeks, seed, client)
    if as_json:
        console.print_json(json.dumps(out))
    else:
        console.print(_table(f"{out['model']}: {replications} replications x {weeks} weeks", out["metrics"]))


@app.command()
def forecast(model: ModelOpt = None,
             census: Annotated[Path | None, typer.Option(help="census JSON (default: the demo's, from its generated ADT history)")] = None,
             horizon_h: Annotated[float, typer.Option(help="hours ahead (24 or 48 typically)")] = 48.0,
             replications: int = 200, history_weeks: int = 8, seed: int = 0, as_json: JsonOpt = False) -> None:
    """Occupancy per unit and ED waits for the next hours, starting from the patients in place, with 95 %
    prediction intervals."""
    from medtwin.hospital import service

    with _guarded():
        hospital = _model(model)
        if census is None:
            out = service.forecast_demo(hospital, history_weeks, horizon_h, replications, seed)
        else:
            now, how = service.parse_census(_read(census), hospital)
            out = service.forecast_from(hospital, now, how, horizon_h, replications, seed)
    if as_json:
        console.print_json(json.dumps(out))
        return
    table = Table(title=f"{out['model']}: forecast from the census ({out['parameters']})")
    for column in ("unit", "now", *(f"+{h} h (95 % PI)" for h in (24, int(horizon_h)) if h <= horizon_h)):
        table.add_column(column)
    for unit in out["units"]:
        cells = [f"{out['occupancy']['median'][unit][h]:.0f} ({out['occupancy']['low'][unit][h]:.0f}-"
                 f"{out['occupancy']['high'][unit][h]:.0f})" for h in sorted({24, int(horizon_h)}) if h <= horizon_h]
        table.add_row(unit, str(out["census"][unit]), *cells)
    console.print(table)


@app.command()
def compare(scenarios: Annotated[Path, typer.Argument(help="scenarios TOML/JSON: a list under 'scenarios'")],
            model: ModelOpt = None, replications: int = 10, weeks: float = 8.0, warmup_weeks: float = 3.0,
            seed: int = 0, scheduler: SchedulerOpt = None, workers: WorkersOpt = 0, as_json: JsonOpt = False) -> None:
    """Each what-if scenario (roster, beds, surge) against the baseline: differences with paired 95 % CIs."""
    from medtwin.hospital import service
    from medtwin.hospital.model import HospitalModelError

    with _guarded():
        hospital = _model(model)
        data = _read(scenarios)
        items = data.get("scenarios") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise HospitalModelError(f"{scenarios}: scenarios", "a list of scenarios")
        with _client(scheduler, workers) as client:
            out = service.compare(hospital, service.parse_scenarios(items), replications, weeks, warmup_weeks,
                                  seed, client)
    if as_json:
        console.print_json(json.dumps(out))
        return
    keys = ("ed_wait_h", "boarding_h", "lost_fraction", *(k for k in out["baseline"] if k.startswith("occupancy.")))
    for name, result in out["scenarios"].items():
        console.print(_table(f"{name} - baseline (paired, {replications} replications)",
                             {k: result["difference"][k] for k in keys if k in result["difference"]}))


@app.command()
def listen(model: ModelOpt = None, host: str = "127.0.0.1",
           port: Annotated[int, typer.Option(help="TCP port (0: any free port, printed)", min=0, max=65535)] = 2575,
           max_messages: Annotated[int, typer.Option(help="stop after this many messages (0: run until Ctrl-C)")] = 0,
           ) -> None:
    """Listen for HL7 v2 ADT over MLLP, ACK/NAK each message and print the census per unit as it changes."""
    import asyncio
    from datetime import UTC, datetime

    from medtwin.hospital.adt import CensusTracker
    from medtwin.hospital.mllp import start_mllp

    with _guarded():
        hospital = _model(model)
    tracker = CensusTracker([u.name for u in hospital.units])

    async def main() -> None:
        server = await start_mllp(tracker, host, port, lambda: datetime.now(UTC))
        bound = server.sockets[0].getsockname()
        console.print(f"listening on {bound[0]}:{bound[1]}", highlight=False)
        seen, last = 0, tracker.counts()
        async with server:
            while max_messages == 0 or seen < max_messages:
                await asyncio.sleep(0.05)
                seen = len(tracker.handled)
                if tracker.counts() != last:
                    last = tracker.counts()
                    console.print(json.dumps({"census": last, "messages": seen, "refused": len(tracker.quarantine)}),
                                  highlight=False)

    with suppress(KeyboardInterrupt):
        asyncio.run(main())


def demo_hospital_settings(settings: Settings, speed: float) -> Settings:
    """``medtwin demo``'s hospital: an MLLP listener (a free port unless one is set) and the generated ADT
    feed at ``speed`` x, both inside the server; says where to look."""
    import socket

    port = settings.hospital_mllp_port
    if port is None:
        with socket.socket() as probe:
            probe.bind((settings.host, 0))
            port = int(probe.getsockname()[1])
    console.print(f"demo hospital: HL7 v2 ADT over MLLP on {settings.host}:{port}, a generated feed at {speed:g}x; "
                  "command centre at #/hospital (account demo-operations)", highlight=False)
    return settings.model_copy(update={"hospital_mllp_port": port, "hospital_demo_feed_speed": speed})
