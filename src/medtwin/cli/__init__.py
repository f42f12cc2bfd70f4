"""The ``medtwin`` command line. Each domain adds its own Typer sub-app module here."""

from medtwin.cli.main import app

__all__ = ["app"]
