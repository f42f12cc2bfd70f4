"""Password policy, hashing (Argon2id) and generation. There is no default password anywhere in medtwin.

Policy (NIST SP 800-63B 5.1.1.2): at least 12 characters, no surrounding white space, and not guessable:
the zxcvbn estimator (PyPI ``zxcvbn``, a port of Dropbox's; its frequency lists hold the commonest passwords
of public breaches, English words, names, keyboard patterns, dates and repeats) must score it at least
:data:`MIN_ZXCVBN_SCORE` of 4 ("safely unguessable: moderate protection from an offline slow-hash scenario",
about 10^8 guesses or more), with the user name and role counted as known to the attacker. Only the first
:data:`ZXCVBN_MAX_CHARS` characters are scored (zxcvbn's run time grows with the length; a longer password
scores at least as well as its prefix).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

MIN_PASSWORD_LENGTH = 12
MIN_ZXCVBN_SCORE = 3
ZXCVBN_MAX_CHARS = 100
_HASHER = PasswordHasher()  # immutable parameters object (RFC 9106 low-memory profile), not state
# A hash of a random password, verified against when the user does not exist so that a failed login
# takes the same time whether or not the user name is known.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class PasswordPolicyError(ValueError):
    """The password does not meet the policy."""


def check_password_policy(password: str, user_inputs: Sequence[str] = ()) -> None:
    """Raise :class:`PasswordPolicyError` naming what is wrong; ``user_inputs`` (user name, role ...) are
    words the attacker is assumed to know."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"password: must be at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        raise PasswordPolicyError("password: must not start or end with white space")
    result = zxcvbn(password[:ZXCVBN_MAX_CHARS], user_inputs=[u for u in user_inputs if u])
    score = int(result["score"])
    if score < MIN_ZXCVBN_SCORE:
        feedback = result.get("feedback") or {}
        hint = " ".join(filter(None, [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]))
        raise PasswordPolicyError(f"password: too easy to guess (zxcvbn score {score} of 4, need "
                                  f"{MIN_ZXCVBN_SCORE})" + (f": {hint}" if hint else ""))


def hash_password(password: str, user_inputs: Sequence[str] = ()) -> str:
    check_password_policy(password, user_inputs)
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; constant work when ``password_hash`` is None (unknown user)."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A random password (about 128 bits) for demo users and resets."""
    return secrets.token_urlsafe(16)
