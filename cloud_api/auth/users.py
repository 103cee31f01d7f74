"""Creating people and logging them in, with lockout after repeated failures."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_api.auth.passwords import hash_password, needs_rehash, verify_password
from cloud_api.models import Role, Site, User, UserSite

GENERATED_PASSWORD_BYTES = 18
"""A generated password carries 144 bits: shown once, never stored in clear."""


class LoginError(Exception):
    """Wrong username or password (deliberately not saying which)."""


class LockedOutError(LoginError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    max_failures: int
    lockout_s: int


def create_user(
    session: Session,
    *,
    username: str,
    role: Role,
    password: str | None = None,
    sites: list[Site] | None = None,
) -> tuple[User, str]:
    """Create a person; returns the user and the password (generated if not given), once."""
    if not 1 <= len(username) <= 100:
        raise ValueError("username must be 1..100 characters")
    password = password if password is not None else secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    user = User(username=username, password_hash=hash_password(password), role=role.value)
    session.add(user)
    session.flush()
    for site in sites or []:
        session.add(UserSite(user_id=user.id, site_id=site.id))
    session.flush()
    return user, password


def site_ids_of(session: Session, user_id: int) -> frozenset[int]:
    rows = session.scalars(select(UserSite.site_id).where(UserSite.user_id == user_id))
    return frozenset(rows)


def authenticate(
    session: Session, *, username: str, password: str, now: datetime, policy: LoginPolicy
) -> User:
    """The user if the password is right; counts failures and locks the account.

    The row is locked for the update (FOR UPDATE on PostgreSQL) so two API
    processes cannot both let a guess through past the limit.
    """
    user = session.scalars(
        select(User).where(User.username == username).with_for_update()
    ).one_or_none()
    if user is not None and user.locked_until is not None and user.locked_until > now:
        raise LockedOutError(int((user.locked_until - now).total_seconds()) + 1)
    ok = verify_password(user.password_hash if user is not None else None, password)
    if user is None or user.disabled_at is not None:
        raise LoginError("wrong username or password")
    if not ok:
        user.failed_logins += 1
        if user.failed_logins >= policy.max_failures:
            user.locked_until = now + timedelta(seconds=policy.lockout_s)
            user.failed_logins = 0
        raise LoginError("wrong username or password")
    user.failed_logins = 0
    user.locked_until = None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user
