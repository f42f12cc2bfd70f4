"""Root Typer app; sub-apps are registered at the bottom."""

from __future__ import annotations

import typer

app = typer.Typer(name="medtwin", help="Healthcare digital twins.", no_args_is_help=True, add_completion=False)
