"""What every command shares: settings, opening the store, printing errors."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from medtwin.config import Settings
from medtwin.store.database import Store

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    return Settings()


def open_store(settings: Settings) -> Store:
    """The configured store, migrated to the newest schema."""
    store = Store.from_settings(settings)
    store.migrate()
    return store


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)
