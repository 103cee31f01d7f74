"""``POST /api/v1/auth/token`` (OAuth2 password flow) and ``GET /api/v1/auth/me``."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from cloud_api.api.deps import ContextDep, PrincipalDep
from cloud_api.auth.tokens import issue_token
from cloud_api.auth.users import LockedOutError, LoginError, LoginPolicy, authenticate

router = APIRouter(prefix="/auth", tags=["auth"])
log = logging.getLogger(__name__)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105  (the OAuth2 token type, not a secret)
    expires_in: int
    """Seconds until the token expires."""


class MeOut(BaseModel):
    username: str
    role: str
    site_ids: list[int]


@router.post("/token", response_model=TokenOut)
def login(ctx: ContextDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> TokenOut:
    """Exchange username and password for a short-lived bearer token."""
    settings = ctx.settings
    policy = LoginPolicy(settings.login_max_failures, settings.login_lockout_s)
    now = ctx.clock()
    failure: LoginError | None = None
    with ctx.sessions() as session, session.begin():
        try:
            user = authenticate(
                session, username=form.username, password=form.password, now=now, policy=policy
            )
            user_id, username, role = user.id, user.username, user.role
        except LoginError as exc:
            failure = exc  # commit the failure count before answering
    if isinstance(failure, LockedOutError):
        log.warning("login refused for a locked account: %s", form.username)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=str(failure),
            headers={"Retry-After": str(failure.retry_after_s)},
        )
    if failure is not None:
        log.info("failed login for %s", form.username)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=str(failure),
            headers={"WWW-Authenticate": "Bearer"},
        )
    token, _ = issue_token(
        ctx.token_key,
        user_id=user_id,
        username=username,
        role=role,
        now=now,
        ttl_s=settings.access_token_ttl_s,
    )
    return TokenOut(access_token=token, expires_in=settings.access_token_ttl_s)


@router.get("/me", response_model=MeOut)
def me(principal: PrincipalDep) -> MeOut:
    """Who the token belongs to, and the sites it may see."""
    return MeOut(
        username=principal.username,
        role=principal.role.value,
        site_ids=sorted(principal.site_ids),
    )
