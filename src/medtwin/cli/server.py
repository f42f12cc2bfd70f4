"""serve and demo."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medtwin.cli.common import console, err_console, fail, load_settings, open_store

if TYPE_CHECKING:  # the API app, the server and the store are imported by the command that runs
    from medtwin.clock import ServerClock
    from medtwin.config import Settings
    from medtwin.store.database import Store


def serve_command(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default from settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings)")] = None,
) -> None:
    """Run the HTTP API and dashboard."""
    settings = load_settings()
    _run(settings, host or settings.host, port or settings.port)


def _run(settings: Settings, host: str, port: int, clock: ServerClock | None = None) -> None:
    import uvicorn

    from medtwin.api.app import create_app

    store = open_store(settings)
    app = create_app(settings, store=store, clock=clock)
    ssl = {}
    if settings.tls_certfile and settings.tls_keyfile:
        ssl = {"ssl_certfile": str(settings.tls_certfile), "ssl_keyfile": str(settings.tls_keyfile)}
    scheme = "https" if ssl else "http"
    console.print(f"[bold green]medtwin[/] serving on {scheme}://{host}:{port}/  (API docs: {scheme}://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level, access_log=False,
                server_header=False, **ssl)  # type: ignore[arg-type]  # server_header: no "server: uvicorn"


DEMO_ROLES = (("demo-admin", "admin"), ("demo-clinician", "clinician"), ("demo-patient", "patient"),
              ("demo-researcher", "researcher"), ("demo-operations", "operations"))


def demo_users(store: Store) -> list[tuple[str, str, str]]:
    """(Re)create the demo accounts with fresh random passwords: the clinician cares for every other
    patient, the patient account is the first patient; every demo patient consents to research."""
    from medtwin.security import accounts, consent
    from medtwin.security.passwords import generate_password
    from medtwin.store.records import RecordRepository

    out: list[tuple[str, str, str]] = []
    with store.begin() as connection:
        patient_ids = RecordRepository(connection, store.codec).patient_ids()
        for username, role in DEMO_ROLES:
            password = generate_password()
            own = patient_ids[0] if role == "patient" and patient_ids else None
            if accounts.find_user(connection, username) is None:
                accounts.create_user(connection, username, password, role, patient_id=own)
            else:
                accounts.set_password(connection, username, password)
                accounts.revoke_all_tokens(connection, username)
            out.append((username, role, password))
        team = set(accounts.care_team_patients(connection, accounts.require_user(connection, "demo-clinician").id))
        for patient_id in patient_ids[::2]:
            if patient_id not in team:
                accounts.add_to_care_team(connection, "demo-clinician", patient_id)
        for patient_id in patient_ids:
            if consent.current_decision(connection, patient_id) is None:
                consent.record_consent(connection, patient_id, "permit", "demo", accounts.utcnow)
    return out


def _print_demo_users(users: list[tuple[str, str, str]]) -> None:
    from rich.table import Table

    table = Table(title="demo accounts (new random passwords on every start)")
    for column in ("username", "role", "password"):
        table.add_column(column)
    for row in users:
        table.add_row(*row)
    console.print(table)


def demo_command(
    port: Annotated[int, typer.Option(help="Port to serve on")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    patients: Annotated[int, typer.Option(min=1, max=200, help="How many synthetic patients")] = 6,
    fresh: Annotated[bool, typer.Option(help="Start from an empty demo store")] = False,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Prepare the demo store, then exit")] = False,
    no_fleet: Annotated[bool, typer.Option("--no-fleet", help="Serve without the simulated devices")] = False,
    speed: Annotated[float, typer.Option(min=1, max=3600, help="Simulated devices: time acceleration")] = 60.0,
) -> None:
    """Create sample twins from medtwin's synthetic patients and serve them, with simulated devices streaming
    into them (CGM, pump, wearable, BP cuff; see ``medtwin.stream.fleet``)."""
    from medtwin.record.sources import RawUnit
    from medtwin.synthetic import generate_bundles
    from medtwin.twin.build import import_units

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
    _print_demo_users(demo_users(store))
    fleet = None
    if not no_serve and not no_fleet:
        from medtwin.cli import fleet as demo_fleet

        try:
            fleet = demo_fleet.prepare_demo_fleet(store, settings, bundles, host, port, speed=speed)
            demo_fleet.describe_demo_fleet(fleet)
        except Exception as exc:  # the demo serves without its devices
            err_console.print(f"[yellow]simulated devices unavailable:[/] {exc}")
    store.dispose()
    if not no_serve:
        from medtwin.cli.hospital import demo_hospital_settings

        settings = demo_hospital_settings(settings, speed)
        from medtwin.clock import ServerClock

        server_clock = ServerClock()  # the simulated devices' time, once they stream (#15 item 6)
        if fleet is not None:
            fleet.server_clock = server_clock
            fleet.start()
        try:
            _run(settings, host, port, clock=server_clock)
        finally:
            if fleet is not None:
                fleet.stop()
