"""``medtwin audit checkpoint`` and ``medtwin audit verify --checkpoint`` as an operator runs them, and the
audit key rotation in the key ring file (issue 13, defect 7)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.security.crypto import KeyRing

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    key_file = tmp_path / "keyring.json"
    assert runner.invoke(app, ["keys", "init", "--out", str(key_file)]).exit_code == 0
    return {"MEDTWIN_DATA_DIR": str(tmp_path / "data"), "MEDTWIN_KEY_FILE": str(key_file), "COLUMNS": "200"}


def _records(env: dict[str, str], n: int) -> None:
    for i in range(n):  # each consent command appends one audit record
        result = runner.invoke(app, ["consent", "grant", f"p{i}"], env=env)
        assert result.exit_code == 0, result.output


def _db(env: dict[str, str]) -> sqlite3.Connection:
    return sqlite3.connect(Path(env["MEDTWIN_DATA_DIR"]) / "medtwin.db")


def test_checkpoint_then_truncation_is_reported(env: dict[str, str], tmp_path: Path) -> None:
    _records(env, 5)
    cp_file = tmp_path / "cp.json"
    result = runner.invoke(app, ["audit", "checkpoint", "--out", str(cp_file)], env=env)
    assert result.exit_code == 0, result.output
    cp = json.loads(cp_file.read_text())
    assert cp["seq"] == 5 and len(cp["mac"]) == 64
    _records(env, 2)  # 6 is the checkpoint's own audit record
    result = runner.invoke(app, ["audit", "verify", "--checkpoint", str(cp_file)], env=env)
    assert result.exit_code == 0, result.output
    assert "audit chain intact: 8 records" in result.output and "holds checkpoint record 5" in result.output
    with _db(env) as db:  # cut the tail to record 3 and rewind the head: the chain alone is intact
        db.execute("DELETE FROM audit_log WHERE seq > 3")
        db.execute("UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_log WHERE seq = 3)")
    db.close()
    assert runner.invoke(app, ["audit", "verify"], env=env).exit_code == 0
    result = runner.invoke(app, ["audit", "verify", "--checkpoint", str(cp_file)], env=env)
    assert result.exit_code == 1
    assert "truncated" in result.output and "record 4" in result.output


def test_forged_row_and_bad_checkpoint_file_fail(env: dict[str, str], tmp_path: Path) -> None:
    _records(env, 3)
    with _db(env) as db:  # append a row hashed the way anyone can (SHA-256), head moved along
        import hashlib

        prev = db.execute("SELECT hash FROM audit_head").fetchone()[0]
        fields = {"at": "2026-01-01T00:00:00.000000+00:00", "actor": "mallory", "role": "admin", "action": "read",
                  "resource_type": "Patient", "resource_id": None, "patient_id": None, "outcome": "success",
                  "status": 200, "client": None, "detail": None}
        digest = hashlib.sha256(prev.encode() + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
                                ).hexdigest()
        db.execute("INSERT INTO audit_log (seq, at, actor, role, action, resource_type, outcome, status, prev_hash, "
                   "hash) VALUES (4, ?, 'mallory', 'admin', 'read', 'Patient', 'success', 200, ?, ?)",
                   (fields["at"], prev, digest))
        db.execute("UPDATE audit_head SET seq = 4, hash = ?", (digest,))
    db.close()
    result = runner.invoke(app, ["audit", "verify"], env=env)
    assert result.exit_code == 1 and "record 4" in result.output and "inserted" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "seq": "x"}')
    result = runner.invoke(app, ["audit", "verify", "--checkpoint", str(bad)], env=env)
    assert result.exit_code == 1 and "seq" in result.output and str(bad) in result.output.replace("\n", "")


def test_audit_key_rotation_keeps_old_records_verifiable(env: dict[str, str]) -> None:
    _records(env, 2)
    before = KeyRing.load(Path(env["MEDTWIN_KEY_FILE"]))
    result = runner.invoke(app, ["keys", "rotate-audit"], env=env)
    assert result.exit_code == 0, result.output
    after = KeyRing.load(Path(env["MEDTWIN_KEY_FILE"]))
    assert after.audit_active != before.audit_active and set(before.audit_keys) < set(after.audit_keys)
    _records(env, 2)
    with _db(env) as db:
        key_ids = [r[0] for r in db.execute("SELECT key_id FROM audit_log ORDER BY seq")]
    db.close()
    assert key_ids[:2] == [before.audit_active] * 2 and key_ids[-2:] == [after.audit_active] * 2
    result = runner.invoke(app, ["audit", "verify"], env=env)
    assert result.exit_code == 0 and "5 records" in result.output, result.output


def test_users_unlock_clears_a_lockout(env: dict[str, str]) -> None:
    from medtwin.security import login_throttle
    from medtwin.security.accounts import utcnow

    ring = KeyRing.load(Path(env["MEDTWIN_KEY_FILE"]))
    assert runner.invoke(app, ["audit", "verify"], env=env).exit_code == 0  # creates the database
    key = login_throttle.account_key(ring.index_key, "alice")
    with _db(env) as db:
        db.execute("INSERT INTO login_throttle (account, failures, last_failure_at, locked) VALUES (?, 100, ?, 1)",
                   (key, utcnow().isoformat()))
    db.close()
    result = runner.invoke(app, ["users", "unlock", "alice"], env=env)
    assert result.exit_code == 0 and "unlocked alice" in result.output, result.output
    with _db(env) as db:
        assert db.execute("SELECT count(*) FROM login_throttle").fetchone()[0] == 0
    db.close()
    assert "no failed logins" in runner.invoke(app, ["users", "unlock", "alice"], env=env).output
