"""Password guessing (per-account throttling with backoff and a hard lockout, NIST SP 800-63B 5.2.2), weak
passwords (zxcvbn), and logout taking effect at once (issue 13, defects 8 and 9); against the real app where
the defect was seen through HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.security.conftest import FakeClock

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.security import accounts, login_throttle
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.security.passwords import MIN_ZXCVBN_SCORE, PasswordPolicyError, check_password_policy
from medtwin.store.database import Store
from medtwin.store.security_tables import login_throttle as throttle_table

PW = "correct horse battery staple"
TOKEN = "/api/v1/auth/token"


@dataclass
class Site:
    store: Store
    ring: KeyRing
    clients: list[TestClient]  # one per client address

    def login(self, i: int, username: str, password: str) -> int:
        r = self.clients[i % len(self.clients)].post(TOKEN, data={"grant_type": "password", "username": username,
                                                                   "password": password})
        return r.status_code


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp_path / 'login.db'}", AesGcmCodec(ring))
    store.migrate()
    with store.begin() as conn:
        accounts.create_user(conn, "alice", PW, "clinician")
    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=1_000_000, login_attempts_per_minute=1_000_000)
    # The security clock stands still (at the wall clock's now): these tests count attempts, and on a loaded
    # machine 100 logins can outlast the first 1-2 s blocks, each expiry letting one more guess count.
    frozen = FakeClock()
    frozen.now = accounts.utcnow()
    app = create_app(settings, store=store, keyring=ring, security_clock=frozen)
    clients = [TestClient(app, client=(f"10.0.0.{i}", 40000 + i)) for i in range(11)]
    with clients[0]:
        yield Site(store, ring, clients)
    store.dispose()


# --- defect 8: per-account throttling -----------------------------------------------------------
def test_guessing_from_ten_addresses_is_throttled_per_account(site: Site) -> None:
    statuses = [site.login(i, "alice", f"wrong guess number {i}") for i in range(100)]  # 10 addresses
    assert statuses[:login_throttle.FREE_FAILURES] == [400] * login_throttle.FREE_FAILURES
    assert statuses.count(429) == 100 - login_throttle.FREE_FAILURES - 1, statuses  # the 6th counts, then blocks
    # the right password from an eleventh address is refused too while the account is blocked
    r = site.clients[10].post(TOKEN, data={"grant_type": "password", "username": "alice", "password": PW})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.headers["content-type"] == "application/problem+json"
    # an account name that does not exist is throttled the same way (no oracle of which accounts exist)
    unknown = [site.login(i, "nobody-here", f"guess {i}") for i in range(login_throttle.FREE_FAILURES + 2)]
    assert unknown[-1] == 429 and unknown[:login_throttle.FREE_FAILURES] == [400] * login_throttle.FREE_FAILURES
    with site.store.connect() as conn:
        rows = conn.execute(select(throttle_table.c.account)).all()
    assert len(rows) == 2 and not any("alice" in r[0] or "nobody" in r[0] for r in rows)  # blind index


def _fail(conn, key: str, clock: FakeClock) -> login_throttle.Refusal | None:  # type: ignore[no-untyped-def]
    refusal = login_throttle.check(conn, key, clock())
    if refusal is None:
        login_throttle.record_failure(conn, key, clock())
    return refusal


def test_backoff_doubles_and_locks_after_100_consecutive_failures(store: Store, keyring: KeyRing,
                                                                  clock: FakeClock) -> None:
    key = login_throttle.account_key(keyring.index_key, "alice")
    delays = []
    with store.begin() as conn:
        for n in range(1, login_throttle.LOCKOUT_FAILURES + 1):
            assert _fail(conn, key, clock) is None, n  # every attempt made after its block has passed counts
            refusal = login_throttle.check(conn, key, clock())
            if n < login_throttle.LOCKOUT_FAILURES:
                delays.append(0.0 if refusal is None else refusal.retry_after_s)
                clock.advance(seconds=delays[-1])
        locked = login_throttle.check(conn, key, clock())
    free = login_throttle.FREE_FAILURES
    assert delays[:free] == [0.0] * free
    assert delays[free:free + 4] == [1.0, 2.0, 4.0, 8.0]  # exponential
    assert max(delays) == login_throttle.MAX_DELAY_S and delays[-1] == login_throttle.MAX_DELAY_S
    assert locked is not None and locked.locked and "administrator" in locked.message
    clock.advance(days=30)  # a hard lockout does not expire
    with store.begin() as conn:
        assert login_throttle.check(conn, key, clock()) is not None
        assert login_throttle.unlock(conn, keyring.index_key, "alice")
        assert login_throttle.check(conn, key, clock()) is None


def test_success_resets_and_admin_unlocks_through_the_api_and_cli_path(site: Site) -> None:
    for i in range(login_throttle.FREE_FAILURES - 1):
        assert site.login(i, "alice", "not the password at all") == 400
    assert site.login(0, "alice", PW) == 200  # success clears the count
    with site.store.connect() as conn:
        assert conn.execute(select(throttle_table)).first() is None
    with site.store.begin() as conn:  # drive the account into the hard lockout
        key = login_throttle.account_key(site.ring.index_key, "alice")
        for _ in range(login_throttle.LOCKOUT_FAILURES):
            login_throttle.record_failure(conn, key, accounts.utcnow())
    r = site.clients[3].post(TOKEN, data={"grant_type": "password", "username": "alice", "password": PW})
    assert r.status_code == 400 and "locked" in r.json()["detail"]
    with site.store.begin() as conn:
        assert login_throttle.unlock(conn, site.ring.index_key, "alice")
    assert site.login(3, "alice", PW) == 200


# --- defect 8: weak passwords ------------------------------------------------------------------
@pytest.mark.parametrize("password", ["password1234", "Password123!", "qwertyuiopas", "aaaaaaaaaaaaaaaa",
                                      "alice-clinician-2026"])
def test_common_and_guessable_passwords_are_refused(password: str) -> None:
    with pytest.raises(PasswordPolicyError, match=f"score .* need {MIN_ZXCVBN_SCORE}"):
        check_password_policy(password, user_inputs=["alice-clinician"])


@pytest.mark.parametrize("password", [PW, "a long enough password", "vT9#qLm2!xRw8zPe"])
def test_strong_passwords_pass(password: str) -> None:
    check_password_policy(password, user_inputs=["alice"])


# --- defect 9: logout ----------------------------------------------------------------------------
def test_access_token_is_refused_at_once_after_logout(site: Site) -> None:
    c = site.clients[0]
    pair = c.post(TOKEN, data={"grant_type": "password", "username": "alice", "password": PW}).json()
    other = c.post(TOKEN, data={"grant_type": "password", "username": "alice", "password": PW}).json()
    auth = {"Authorization": f"Bearer {pair['access_token']}"}
    assert c.get("/api/v1/auth/me", headers=auth).status_code == 200
    assert c.get("/api/v1/auth/me", headers=auth).status_code == 200  # (now in the guard's cache)
    assert c.post("/api/v1/auth/revoke", data={"token": pair["refresh_token"]}).status_code == 200
    r = c.get("/api/v1/auth/me", headers=auth)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    # the refresh token of that session is dead too; another session of the same user is not
    assert c.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
                  ).status_code == 400
    assert c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {other['access_token']}"}).status_code == 200
    # revoking an access token itself (RFC 7009 accepts either kind) also takes effect at once
    assert c.post("/api/v1/auth/revoke", data={"token": other["access_token"]}).status_code == 200
    assert c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {other['access_token']}"}).status_code == 401
