"""serve and demo."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from medtwin.api.app import create_app
from medtwin.cli.common import console, err_console, fail, load_settings, open_store
from medtwin.config import Settings
from medtwin.record.sources import RawUnit
from medtwin.twin.build import import_units


def serve_command(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default from settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings)")] = None,
) -> None:
    """Run the HTTP API and dashboard."""
    settings = load_settings()
    _run(settings, host or settings.host, port or settings.port)


def _run(settings: Settings, host: str, port: int) -> None:
    store = open_store(settings)
    app = create_app(settings, store=store)
    ssl = {}
    if settings.tls_certfile and settings.tls_keyfile:
        ssl = {"ssl_certfile": str(settings.tls_certfile), "ssl_keyfile": str(settings.tls_keyfile)}
    scheme = "https" if ssl else "http"
    console.print(f"[bold green]medtwin[/] serving on {scheme}://{host}:{port}/  (API docs: {scheme}://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level, access_log=False, **ssl)  # type: ignore[arg-type]


def demo_command(
    port: Annotated[int, typer.Option(help="Port to serve on")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    patients: Annotated[int, typer.Option(min=1, max=200, help="How many synthetic patients")] = 6,
    fresh: Annotated[bool, typer.Option(help="Start from an empty demo store")] = False,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Prepare the demo store, then exit")] = False,
) -> None:
    """Create sample twins from medtwin's synthetic patients and serve them."""
    from medtwin.synthetic import generate_bundles

    settings = load_settings()
    if "data_dir" not in settings.model_fields_set:
        settings = settings.model_copy(update={"data_dir": Path(".medtwin-demo")})
    settings = settings.model_copy(update={"demo": True})
    if fresh and settings.data_dir.exists() and settings.database_url is None:
        shutil.rmtree(settings.data_dir)
    store = open_store(settings)
    bundles = generate_bundles(n_patients=patients)
    import orjson

    units = [RawUnit(f"synthetic-patient-{i + 1}.json", "json", orjson.loads(orjson.dumps(b)))
             for i, b in enumerate(bundles)]
    report = import_units(store, units, actor="demo")
    if not report.ok:
        for unit in report.errors:
            err_console.print(f"[red]{unit.error}[/]")
        fail("the demo data did not import")
    totals = report.totals()
    console.print(f"demo store: {settings.data_dir.resolve()}  ({len(bundles)} patients; created "
                  f"{totals['created']}, unchanged {totals['unchanged']})")
    store.dispose()
    if not no_serve:
        _run(settings, host, port)
