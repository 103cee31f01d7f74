"""Password hashing with argon2id (argon2-cffi's recommended parameters)."""

from __future__ import annotations

import logging
import os

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_CHARS = 12
"""Shorter passwords are refused at creation: guessable offline despite argon2."""

CHEAP_HASHES_ENV = "PATROL_TEST_CHEAP_PASSWORD_HASHES"
"""Set to 1 by the test suite only: argon2-cffi's CHEAPEST profile, which exists
for tests. The suite creates thousands of accounts and logs them in; at the
recommended cost (about 0.17 s per hash or verification here) that alone took
minutes. Never set it in a deployment: it makes stolen hashes cheap to crack."""


def _make_hasher() -> PasswordHasher:
    if os.environ.get(CHEAP_HASHES_ENV) == "1":
        logging.getLogger(__name__).warning(
            "%s=1: password hashes use the cheapest argon2 profile (tests only)", CHEAP_HASHES_ENV
        )
        return PasswordHasher.from_parameters(profiles.CHEAPEST)
    return PasswordHasher()


_hasher = _make_hasher()

# Verifying against this keeps a login for an unknown user as slow as one for a
# known user, so response time does not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("not a real password, only for timing")


class WeakPasswordError(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise WeakPasswordError(f"passwords need at least {MIN_PASSWORD_CHARS} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; a missing hash still costs one verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
