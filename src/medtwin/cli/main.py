"""Root Typer app; sub-apps are registered at the bottom."""

from __future__ import annotations

import typer

app = typer.Typer(name="medtwin", help="Healthcare digital twins.", no_args_is_help=True, add_completion=False)

from medtwin.cli import records as _records  # noqa: E402
from medtwin.cli import server as _server  # noqa: E402

app.command("import")(_records.import_command)
app.command("patients")(_records.patients_command)
app.command("show")(_records.show_command)
app.command("export")(_records.export_command)
app.command("serve")(_server.serve_command)
app.command("demo")(_server.demo_command)

from medtwin.cli import fleet as _fleet  # noqa: E402

app.command("fleet")(_fleet.fleet_command)

from medtwin.cli import stream as _stream  # noqa: E402

app.command("mqtt")(_stream.mqtt_command)

from medtwin.cli.drug import app as drug_app  # noqa: E402

app.add_typer(drug_app, name="drug")

from medtwin.cli import security as _security  # noqa: E402

app.add_typer(_security.users_app, name="users")
app.add_typer(_security.audit_app, name="audit")
app.add_typer(_security.keys_app, name="keys")
app.add_typer(_security.consent_app, name="consent")
app.add_typer(_security.research_app, name="research")

from medtwin.cli.glucose import app as glucose_app  # noqa: E402

app.add_typer(glucose_app, name="glucose")

from medtwin.cli import report as _report  # noqa: E402

app.command("report")(_report.report_command)
