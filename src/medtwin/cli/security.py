"""CLI sub-apps: ``users``, ``audit``, ``keys``, ``consent``, ``research``. Every command that touches
health data or accounts appends an audit record (actor ``cli:<login>``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medtwin.cli.common import audit_cli as _audit
from medtwin.cli.common import cli_actor as _actor
from medtwin.cli.common import console, fail, load_settings
from medtwin.config import Settings
from medtwin.security import accounts, audit, consent, login_throttle
from medtwin.security.accounts import AccountError, NotFoundError, utcnow
from medtwin.security.consent import ConsentError
from medtwin.security.crypto import AesGcmCodec, CryptoError, KeyRing, keyring_path, load_keyring, rotate_keys
from medtwin.security.deid import Deidentifier, DeidError, export_research
from medtwin.security.passwords import PasswordPolicyError, generate_password
from medtwin.store.database import Store

users_app = typer.Typer(help="User accounts, roles, care teams, tokens and device keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail: verify the hash chain, export as FHIR AuditEvent.",
                        no_args_is_help=True)
keys_app = typer.Typer(help="Encryption keys: create a key ring, rotate the data key.", no_args_is_help=True)
consent_app = typer.Typer(help="Patients' consent to research use.", no_args_is_help=True)
research_app = typer.Typer(help="De-identified (Safe Harbor) exports for research.", no_args_is_help=True)


@contextmanager
def _store(settings: Settings) -> Iterator[tuple[Store, KeyRing]]:
    try:
        ring = load_keyring(settings)
    except CryptoError as exc:
        fail(str(exc))
    store = Store.from_settings(settings, AesGcmCodec(ring))
    store.migrate()
    audit.bind(store.engine, ring)
    try:
        yield store, ring
    finally:
        store.dispose()


# --- users ---------------------------------------------------------------------------------------
@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="admin | clinician | patient | researcher | integration")],
    patient_id: Annotated[str | None, typer.Option(help="For role patient: their patient id")] = None,
    generate: Annotated[bool, typer.Option("--generate", help="Generate a random password and print it")] = False,
) -> None:
    """Create a user (the first admin is created this way: there is no default account)."""
    password = generate_password() if generate else typer.prompt("password", hide_input=True,
                                                                 confirmation_prompt=True)
    with _store(load_settings()) as (store, _ring):
        try:
            with store.begin() as connection:
                user = accounts.create_user(connection, username, password, role, patient_id)
        except (AccountError, PasswordPolicyError) as exc:
            fail(str(exc))
        _audit(store, "admin", "User", resource_id=user.id, detail={"op": "create", "role": role})
    console.print(f"created {role} [bold]{username}[/]" + (f"  password: {password}" if generate else ""))


@users_app.command("list")
def users_list() -> None:
    with _store(load_settings()) as (store, _ring), store.connect() as connection:
        table = Table("username", "role", "patient", "active")
        for u in accounts.list_users(connection):
            table.add_row(u.username, u.role, u.patient_id or "", "yes" if u.active else "no")
    console.print(table)


def _user_op(op: str, username: str, func: object, *args: object) -> None:
    with _store(load_settings()) as (store, _ring):
        try:
            with store.begin() as connection:
                func(connection, username, *args)  # type: ignore[operator]
        except (AccountError, NotFoundError, PasswordPolicyError) as exc:
            fail(str(exc))
        _audit(store, "admin", "User", detail={"op": op, "username": username})
    console.print(f"{op}: {username}")


@users_app.command("set-role")
def users_set_role(username: str, role: str,
                   patient_id: Annotated[str | None, typer.Option(help="For role patient")] = None) -> None:
    """Change a user's role (their existing tokens are revoked)."""
    _user_op("set-role", username, accounts.set_role, role, patient_id)


@users_app.command("revoke-tokens")
def users_revoke_tokens(username: str) -> None:
    """Invalidate every access and refresh token of the user."""
    _user_op("revoke-tokens", username, accounts.revoke_all_tokens)


@users_app.command("disable")
def users_disable(username: str) -> None:
    _user_op("disable", username, accounts.set_active, False)


@users_app.command("enable")
def users_enable(username: str) -> None:
    _user_op("enable", username, accounts.set_active, True)


@users_app.command("unlock")
def users_unlock(username: str) -> None:
    """Clear the failed-login count and any lockout of an account name (see docs/security.md)."""
    with _store(load_settings()) as (store, ring):
        with store.begin() as connection:
            cleared = login_throttle.unlock(connection, ring.index_key, username)
        _audit(store, "admin", "User", detail={"op": "unlock"})
    console.print(f"unlocked {username}" if cleared else f"{username}: no failed logins recorded")


@users_app.command("care-team-add")
def users_care_team_add(username: str, patient_id: str) -> None:
    """Put a clinician on a patient's care team."""
    _user_op("care-team-add", username, accounts.add_to_care_team, patient_id)


@users_app.command("care-team-remove")
def users_care_team_remove(username: str, patient_id: str) -> None:
    _user_op("care-team-remove", username, accounts.remove_from_care_team, patient_id)


@users_app.command("device-key")
def users_device_key(name: str, patient_id: Annotated[str, typer.Option(help="The patient this device writes for")]
                     ) -> None:
    """Create a device API key bound to one patient (may only write samples). Printed once."""
    with _store(load_settings()) as (store, ring):
        try:
            with store.begin() as connection:
                key, secret = accounts.create_api_key(connection, name, patient_id, _actor(), ring.index_key)
        except AccountError as exc:
            fail(str(exc))
        _audit(store, "admin", "ApiKey", resource_id=key.id, patient_id=patient_id, detail={"op": "create"})
    console.print(f"device key {key.id} for patient {patient_id}: {secret}")


@users_app.command("revoke-key")
def users_revoke_key(key_id: str) -> None:
    with _store(load_settings()) as (store, _ring):
        try:
            with store.begin() as connection:
                accounts.revoke_api_key(connection, key_id)
        except NotFoundError as exc:
            fail(str(exc))
        _audit(store, "admin", "ApiKey", resource_id=key_id, detail={"op": "revoke"})
    console.print(f"revoked device key {key_id}")


# --- audit ---------------------------------------------------------------------------------------
def _read_checkpoint(path: Path) -> audit.Checkpoint:
    try:
        return audit.Checkpoint.from_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"checkpoint: cannot read {path}: {exc.strerror}")
    except audit.AuditKeyError as exc:
        fail(f"checkpoint {path}: {exc}")


@audit_app.command("verify")
def audit_verify(checkpoint: Annotated[Path | None, typer.Option(
        help="A checkpoint file from `medtwin audit checkpoint`: also detect truncation and re-chaining")] = None
                 ) -> None:
    """Check the keyed chain (and a checkpoint); exits 1 naming the first bad record and the kind of tampering."""
    cp = _read_checkpoint(checkpoint) if checkpoint is not None else None
    with _store(load_settings()) as (store, _ring), store.connect() as connection:
        result = audit.verify(connection) if cp is None else audit.verify_checkpoint(connection, cp)
    if not result.ok:
        fail(f"audit chain broken at record {result.first_bad_seq} ({result.problem}): {result.message}")
    legacy = f" ({result.unkeyed} from before the chain was keyed)" if result.unkeyed else ""
    held = f"; holds checkpoint record {cp.seq} of {cp.at}" if cp is not None else ""
    console.print(f"audit chain intact: {result.count} records{legacy}; head {result.head_seq} "
                  f"{result.head_hash}{held}")


@audit_app.command("checkpoint")
def audit_checkpoint(out: Annotated[Path, typer.Option(help="Where to write the sealed checkpoint (JSON); keep "
                                                       "it outside the database server")]) -> None:
    """Verify the chain, then export its head sealed with the audit key (for `audit verify --checkpoint`)."""
    with _store(load_settings()) as (store, _ring):
        with store.connect() as connection:
            result = audit.verify(connection)
            if not result.ok:
                fail(f"no checkpoint of a broken chain: record {result.first_bad_seq} ({result.problem}): "
                     f"{result.message}")
            cp = audit.checkpoint(connection, utcnow)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(cp.to_json() + "\n", encoding="utf-8")
        tmp.replace(out)
        _audit(store, "admin", "AuditEvent", detail={"op": "checkpoint", "seq": cp.seq})
    console.print(f"checkpoint of record {cp.seq} ({cp.hash}) written to {out}")


@audit_app.command("export")
def audit_export(out: Annotated[Path, typer.Option(help="ndjson file of FHIR AuditEvent resources")],
                 patient_id: Annotated[str | None, typer.Option(help="Only this patient's records")] = None
                 ) -> None:
    with _store(load_settings()) as (store, _ring):
        tmp = out.with_name(out.name + ".tmp")
        n = 0
        with store.connect() as connection, tmp.open("w", encoding="utf-8") as handle:
            for rec in audit.records(connection, patient_id=patient_id):
                handle.write(json.dumps(audit.to_audit_event(rec)) + "\n")
                n += 1
        tmp.replace(out)
        _audit(store, "export", "AuditEvent", patient_id=patient_id, detail={"records": n})
    console.print(f"wrote {n} AuditEvent resources to {out}")


# --- keys ----------------------------------------------------------------------------------------
@keys_app.command("init")
def keys_init(out: Annotated[Path, typer.Option(help="Where to write the new key ring (mode 0600)")]) -> None:
    """Create a new key ring file; point MEDTWIN_KEY_FILE at it."""
    if out.exists():
        fail(f"out: {out} already exists; refusing to overwrite a key ring")
    KeyRing.generate().save(out)
    console.print(f"wrote key ring {out}; set MEDTWIN_KEY_FILE={out.resolve()} and back it up safely")


@keys_app.command("rotate")
def keys_rotate(keep_old: Annotated[bool, typer.Option(help="Keep retired keys in the file")] = False) -> None:
    """New active data key; re-encrypt every sealed blob with it (one transaction)."""
    settings = load_settings()
    if settings.keyring is not None:
        fail("keys rotate needs MEDTWIN_KEY_FILE (a key given inline in MEDTWIN_KEYRING cannot be rewritten)")
    path = keyring_path(settings)
    with _store(settings) as (store, _ring):
        try:
            report = rotate_keys(store, path, retire_old=not keep_old)
        except CryptoError as exc:
            fail(f"rotation failed, nothing re-encrypted: {exc}")
        _audit(store, "admin", "KeyRing", detail={"op": "rotate", "key_id": report.new_key_id,
                                                  "blobs": sum(report.blobs_rewritten.values())})
    console.print(f"active key {report.new_key_id}; re-encrypted {report.blobs_rewritten}")


@keys_app.command("rotate-audit")
def keys_rotate_audit() -> None:
    """New active audit key for sealing new audit records; the old ones stay to verify older records."""
    settings = load_settings()
    if settings.keyring is not None:
        fail("keys rotate-audit needs MEDTWIN_KEY_FILE (a key given inline in MEDTWIN_KEYRING cannot be rewritten)")
    path = keyring_path(settings)
    try:
        ring = KeyRing.load(path).with_new_audit_key()
    except CryptoError as exc:
        fail(f"{path}: {exc}")
    ring.save(path)
    with _store(settings) as (store, _ring):
        _audit(store, "admin", "KeyRing", detail={"op": "rotate-audit", "key_id": ring.audit_active})
    console.print(f"active audit key {ring.audit_active}; {len(ring.audit_keys)} audit keys in {path}")


# --- consent -------------------------------------------------------------------------------------
def _consent(patient_id: str, decision: str) -> None:
    with _store(load_settings()) as (store, _ring):
        try:
            with store.begin() as connection:
                record = consent.record_consent(connection, patient_id, decision, _actor(), utcnow)
        except ConsentError as exc:
            fail(str(exc))
        _audit(store, "consent", "Consent", patient_id=patient_id, detail={"decision": decision})
    console.print(f"research consent of {patient_id}: {decision} (recorded {record.recorded_at.isoformat()})")


@consent_app.command("grant")
def consent_grant(patient_id: str) -> None:
    _consent(patient_id, "permit")


@consent_app.command("withdraw")
def consent_withdraw(patient_id: str) -> None:
    _consent(patient_id, "deny")


@consent_app.command("show")
def consent_show(patient_id: str) -> None:
    with _store(load_settings()) as (store, _ring), store.connect() as connection:
        rows = consent.history(connection, patient_id)
    table = Table("recorded at", "decision", "by")
    for r in rows:
        table.add_row(r.recorded_at.isoformat(), r.decision, r.recorded_by)
    console.print(table if rows else f"no consent recorded for {patient_id} (not in research exports)")


# --- research ------------------------------------------------------------------------------------
@research_app.command("export")
def research_export(
    out: Annotated[Path, typer.Argument(help="New folder for the FHIR ndjson files")],
    date_mode: Annotated[str | None, typer.Option(help="year (Safe Harbor) | shift")] = None,
) -> None:
    """De-identified FHIR ndjson of the consenting patients."""
    settings = load_settings()
    with _store(settings) as (store, ring):
        try:
            deid = Deidentifier(ring.pseudonym_key, date_mode or settings.deid_date_mode)
            with store.connect() as connection:
                report = export_research(connection, store.codec, deid, out)
        except DeidError as exc:
            fail(str(exc))
        _audit(store, "research", "cohort", detail={"patients": report.patients,
                                                    "excluded": report.excluded_without_consent})
    console.print(f"wrote {sum(report.resources.values())} resources of {report.patients} consenting patients to "
                  f"{out} ({report.excluded_without_consent} without consent left out)")
