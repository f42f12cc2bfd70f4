"""What every command shares: settings, opening the store, printing errors.

Light to import (every command module imports it): the settings, store and security modules are imported when
a helper is called, not here (see ``cli/main.py`` on start-up time)."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from medtwin.config import Settings
    from medtwin.store.database import Store

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    from medtwin.config import Settings

    return Settings()


def open_store(settings: Settings) -> Store:
    """The configured store (identifiers sealed with the configured key ring), migrated to the newest schema.
    Without a key ring (and outside demo mode) this stops with the message saying how to make one."""
    from medtwin.security.crypto import AesGcmCodec, CryptoError, load_keyring
    from medtwin.store.database import Store

    try:
        keyring = load_keyring(settings)
    except CryptoError as error:
        fail(str(error), 2)
    store = Store.from_settings(settings, AesGcmCodec(keyring))
    store.migrate()
    return store


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def fail_input(message: str) -> NoReturn:
    """Stop a command on bad input: ``error: <message>`` on stderr (plain text, never wrapped), exit status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def input_errors(where: str = "") -> Iterator[None]:
    """Bad input raised inside (any :class:`medtwin.errors.InputError`, or a pydantic ``ValidationError``) stops
    the command with exit status 2 and ``<where><field>: <message>``; ``where`` names the file (``"a.csv: "``)."""
    from pydantic import ValidationError

    from medtwin.errors import InputError

    try:
        yield
    except InputError as exc:
        fail_input(f"{where}{exc.field}: {exc.message}")
    except ValidationError as exc:
        first = exc.errors()[0]
        fail_input(f"{where}{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def cli_actor() -> str:
    """Who runs the command, for the audit trail."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # pragma: no cover - no login name in some containers
        return "cli:unknown"


def audit_cli(store: Store, action: str, resource: str, outcome: str = "success", patient_id: str | None = None,
              resource_id: str | None = None, detail: dict[str, object] | None = None) -> None:
    """Append an audit record for a CLI command that touched health data or accounts."""
    from medtwin.security import audit
    from medtwin.security.accounts import utcnow

    with store.begin() as connection:
        audit.append(connection, audit.AuditEntry(actor=cli_actor(), role="admin", action=action,
                                                  resource_type=resource, resource_id=resource_id,
                                                  patient_id=patient_id, outcome=outcome, client="cli",
                                                  detail=detail), utcnow)
