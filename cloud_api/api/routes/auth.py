"""``POST /api/v1/auth/token`` (OAuth2 password flow) and ``GET /api/v1/auth/me``."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.api.deps import ContextDep, PrincipalDep
from cloud_api.api.problems import problem_responses, rate_limited, unauthenticated
from cloud_api.auth.tokens import issue_token
from cloud_api.auth.users import LockedOutError, LoginError, LoginPolicy, authenticate

router = APIRouter(prefix="/auth", tags=["auth"])
log = logging.getLogger(__name__)


class TokenOut(BaseModel):
    """An OAuth2 bearer token (RFC 6749 section 5.1)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIs...",
                    "token_type": "bearer",
                    "expires_in": 900,
                }
            ]
        }
    )

    access_token: str = Field(description="Send as ``Authorization: Bearer <token>``.")
    token_type: str = "bearer"  # noqa: S105  (the OAuth2 token type, not a secret)
    expires_in: int = Field(description="Seconds until the token expires.")


class MeOut(BaseModel):
    """The caller as the service sees it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"username": "sue", "role": "supervisor", "site_ids": [1, 3]}]
        }
    )

    username: str
    role: str = Field(description="guard, technician, supervisor, customer or admin")
    site_ids: list[int] = Field(description="Sites in scope (admins: empty, they see all).")


@router.post(
    "/token",
    response_model=TokenOut,
    summary="Log in (OAuth2 password flow)",
    responses=problem_responses(401, 422, 429),
)
def login(ctx: ContextDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> TokenOut:
    """Exchange username and password for a short-lived bearer token.

    A wrong password and an unknown user get the same 401. After
    ``LOGIN_MAX_FAILURES`` failures in a row the account is locked for
    ``LOGIN_LOCKOUT_S`` seconds: 429 with Retry-After, across all API processes.
    """
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
        raise rate_limited(str(failure), retry_after_s=failure.retry_after_s)
    if failure is not None:
        log.info("failed login for %s", form.username)
        raise unauthenticated(str(failure))
    token, _ = issue_token(
        ctx.token_key,
        user_id=user_id,
        username=username,
        role=role,
        now=now,
        ttl_s=settings.access_token_ttl_s,
    )
    return TokenOut(access_token=token, expires_in=settings.access_token_ttl_s)


@router.get(
    "/me",
    response_model=MeOut,
    summary="Who am I",
    responses=problem_responses(401),
)
def me(principal: PrincipalDep) -> MeOut:
    """Who the token belongs to, and the sites it may see."""
    return MeOut(
        username=principal.username,
        role=principal.role.value,
        site_ids=sorted(principal.site_ids),
    )
