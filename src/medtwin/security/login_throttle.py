"""Per-account throttling of password guessing (NIST SP 800-63B section 5.2.2), whatever the source address.

The first :data:`FREE_FAILURES` consecutive failed logins of an account name cost nothing; each further one
blocks the name for a doubling delay (1 s, 2 s, 4 s, ... up to :data:`MAX_DELAY_S`), during which no password
is even checked; after :data:`LOCKOUT_FAILURES` consecutive failures (the NIST ceiling is 100) the name is
locked until an administrator unlocks it (``medtwin users unlock NAME``). A successful login clears the count.
With these numbers an online guesser gets at most 100 guesses per account, and needs about 20 hours to
spend them. The per-address limit of the rate limiter stays as a second, independent line.

State is kept per *name*, under a blind index (``HMAC-SHA256(index key, "login:" + name)``), for names that
exist and names that do not alike: the answers (400, then 429 with ``Retry-After``, then "locked") never tell
which accounts exist, and the table holds no user name in clear.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from medtwin.store.security_tables import login_throttle

FREE_FAILURES = 5
BASE_DELAY_S = 1.0
MAX_DELAY_S = 900.0  # 15 minutes
LOCKOUT_FAILURES = 100  # NIST SP 800-63B 5.2.2: no more than 100 consecutive failed attempts


@dataclass(frozen=True)
class Refusal:
    """Why a login is not even checked: blocked for ``retry_after_s`` seconds, or locked."""

    locked: bool
    retry_after_s: float
    message: str


def account_key(index_key: bytes, username: str) -> str:
    return hmac.new(index_key, f"login:{username}".encode(), hashlib.sha256).hexdigest()


def delay_after(failures: int) -> float:
    """Seconds the account is blocked after ``failures`` consecutive failures (0 for the free ones)."""
    if failures <= FREE_FAILURES:
        return 0.0
    return min(BASE_DELAY_S * 2.0 ** (failures - FREE_FAILURES - 1), MAX_DELAY_S)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def check(conn: Connection, key: str, now: datetime) -> Refusal | None:
    """None when a login attempt for this account may be checked now."""
    row = conn.execute(select(login_throttle.c.locked, login_throttle.c.blocked_until)
                       .where(login_throttle.c.account == key)).first()
    if row is None:
        return None
    if row.locked:
        return Refusal(True, 0.0, f"account locked after {LOCKOUT_FAILURES} consecutive failed logins; an "
                                  "administrator must unlock it (medtwin users unlock)")
    if row.blocked_until is not None and _aware(row.blocked_until) > now:
        wait = (_aware(row.blocked_until) - now).total_seconds()
        return Refusal(False, wait, f"too many failed logins for this account; retry in {wait:.0f} s")
    return None


def record_failure(conn: Connection, key: str, now: datetime) -> int:
    """Count one failure (inside the caller's transaction, which must commit); returns the new count."""
    bumped = conn.execute(update(login_throttle).where(login_throttle.c.account == key)
                          .values(failures=login_throttle.c.failures + 1, last_failure_at=now))
    if bumped.rowcount == 0:
        try:
            with conn.begin_nested():
                conn.execute(insert(login_throttle).values(account=key, failures=1, last_failure_at=now,
                                                           blocked_until=None, locked=False))
        except IntegrityError:  # a concurrent first failure: count on its row
            conn.execute(update(login_throttle).where(login_throttle.c.account == key)
                         .values(failures=login_throttle.c.failures + 1, last_failure_at=now))
    failures = int(conn.execute(select(login_throttle.c.failures)
                                .where(login_throttle.c.account == key)).scalar_one())
    delay = delay_after(failures)
    conn.execute(update(login_throttle).where(login_throttle.c.account == key).values(
        locked=failures >= LOCKOUT_FAILURES, blocked_until=now + timedelta(seconds=delay) if delay else None))
    return failures


def record_success(conn: Connection, key: str) -> None:
    conn.execute(delete(login_throttle).where(login_throttle.c.account == key))


def unlock(conn: Connection, index_key: bytes, username: str) -> bool:
    """Clear the failures and any lockout of ``username``; True when there was something to clear."""
    result = conn.execute(delete(login_throttle).where(login_throttle.c.account == account_key(index_key, username)))
    return bool(result.rowcount)
