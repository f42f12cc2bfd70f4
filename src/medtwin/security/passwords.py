"""Password hashing (Argon2id) and generation. There is no default password anywhere in medtwin."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 12
_HASHER = PasswordHasher()  # immutable parameters object (RFC 9106 low-memory profile), not state
# A hash of a random password, verified against when the user does not exist so that a failed login
# takes the same time whether or not the user name is known.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class PasswordPolicyError(ValueError):
    """The password does not meet the policy."""


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"password: must be at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        raise PasswordPolicyError("password: must not start or end with white space")


def hash_password(password: str) -> str:
    check_password_policy(password)
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
