"""Root Typer app. Every command and sub-app is registered lazily: its module is imported when it runs.

Why: Typer builds every command (and resolves every parameter's type) to print even ``medtwin --help``, so
registering the modules directly imported the API app, SciPy, matplotlib and the PGx tables for any command:
4.5-7.5 s each, ``--help`` included. Here the root group holds a light placeholder per command (its name and
one-line help); running it, or asking for its own help, imports its module and hands over to the real
command. ``tests/cli/test_cli_startup.py`` checks that each placeholder's help is the real command's, and
``benchmarks/bench_cli.py`` measures the start-up.

To add a command: a function or a ``typer.Typer`` sub-app in its own module of this package, and one line in
``COMMANDS`` below (module, attribute, the first line of its help).
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

#: name -> (module, attribute: a command function or a Typer sub-app, one-line help shown by ``--help``)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "import": ("medtwin.cli.records", "import_command",
               "Import FHIR R4 data. Each file is imported all or nothing; re-importing is harmless."),
    "patients": ("medtwin.cli.records", "patients_command", "List the patients in the store."),
    "show": ("medtwin.cli.records", "show_command", "Show a patient's twin summary."),
    "export": ("medtwin.cli.records", "export_command", "Export a patient's complete record as one FHIR R4 Bundle."),
    "serve": ("medtwin.cli.server", "serve_command", "Run the HTTP API and dashboard."),
    "demo": ("medtwin.cli.server", "demo_command", "Create sample twins from medtwin's synthetic patients and serve them, with simulated devices "
             "streaming into them (CGM, pump, wearable, BP cuff; see ``medtwin.stream.fleet``)."),
    "fleet": ("medtwin.cli.fleet", "fleet_command", "Drive N simulated patients' devices against a running server (load tests, demos)."),
    "mqtt": ("medtwin.cli.stream", "mqtt_command", "Store device samples published to the MQTT broker until Ctrl-C or SIGTERM."),
    "drug": ("medtwin.cli.drug", "app", "Test drugs and doses on a patient's twin: PK/PD, pharmacogenomics, dose suggestions."),
    "users": ("medtwin.cli.security", "users_app", "User accounts, roles, care teams, tokens and device keys."),
    "audit": ("medtwin.cli.security", "audit_app", "The audit trail: verify the hash chain, export as FHIR AuditEvent."),
    "keys": ("medtwin.cli.security", "keys_app", "Encryption keys: create a key ring, rotate the data key."),
    "consent": ("medtwin.cli.security", "consent_app", "Patients' consent to research use."),
    "research": ("medtwin.cli.security", "research_app", "De-identified (Safe Harbor) exports for research."),
    "glucose": ("medtwin.cli.glucose", "app", "Type 1 diabetes twin (UVA/Padova 2008): simulate, fit, compare."),
    "twin": ("medtwin.cli.twins", "app", "Any registered twin kind (plug-ins): list kinds, simulate, fit, assimilate, compare."),
    "tumour": ("medtwin.cli.tumour", "app", "Tumour twin: fit growth laws to lesion measurements, forecast with intervals, compare treatments."),
    "report": ("medtwin.cli.report", "report_command", "Write a patient's one-page twin report (PDF: one A4 page; HTML: self-contained)."),
    "hospital": ("medtwin.cli.hospital", "app", "Hospital operations twin: simulate, forecast from a census, compare what-ifs."),
    "imaging": ("medtwin.cli.imaging", "app", "Images in the twin: import DICOM/NIfTI volumes (and segment, mesh, plan on them)."),
}


def load_command(name: str) -> TyperCommand | TyperGroup:
    """The real Click command behind ``name`` (imports its module)."""
    module, attribute, _ = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        return typer.main.get_group(target)  # a group even with one command, as add_typer made it
    single = typer.Typer(add_completion=False)
    single.command(name)(target)
    command = typer.main.get_command(single)
    assert isinstance(command, TyperCommand)
    return command


class LazyCommand(TyperCommand):
    """Stands in for a command in the root group until it is run: ``--help`` lists it by name and help; making
    its context (to run it or print its own help) loads the real command and hands over to it."""

    def __init__(self, name: str, help: str) -> None:  # noqa: A002 - Click's own parameter name
        super().__init__(name, help=help)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        assert self.name is not None
        return load_command(self.name).make_context(info_name, args, parent=parent, **extra)


class LazyGroup(TyperGroup):
    """The root group: the commands Typer built, plus a :class:`LazyCommand` for each of :data:`COMMANDS`."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_, _, text) in COMMANDS.items():
            self.commands.setdefault(name, LazyCommand(name, text))


app = typer.Typer(name="medtwin", help="Healthcare digital twins.", no_args_is_help=True, add_completion=False,
                  cls=LazyGroup)


@app.callback()
def _root() -> None:
    """Healthcare digital twins."""
