"""FastAPI dependencies as ``Annotated`` aliases: app context, sessions, credentials.

Credentials for the walking skeleton: gateways send their API key as a bearer
token (looked up by SHA-256); read endpoints take the admin token from settings
(``PATROL_CLOUD_ADMIN_TOKEN``) until people log in (issue 5).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.crypto_store import SecretBox
from cloud_api.models import Gateway
from cloud_api.provisioning import hash_api_key
from cloud_api.settings import Settings
from cloud_api.verify import VerifyPolicy


@dataclass(frozen=True, slots=True)
class AppContext:
    """Everything a request needs, built once by :func:`cloud_api.app.create_app`."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    policy: VerifyPolicy
    clock: Callable[[], datetime]
    """Server time (timezone-aware UTC); tests inject a fixed clock."""


def get_context(request: Request) -> AppContext:
    """The app's context (set on ``app.state.ctx`` by the factory)."""
    return cast(AppContext, request.app.state.ctx)


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_session(ctx: ContextDep) -> Iterator[Session]:
    """A session per request; routes open their own transaction."""
    with ctx.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def bearer_token(request: Request) -> str:
    """The token of an ``Authorization: Bearer ...`` header, else 401."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer token")
    return token.strip()


def current_gateway(ctx: ContextDep, token: Annotated[str, Depends(bearer_token)]) -> Gateway:
    """The gateway whose API key was presented (not revoked), else 401."""
    with ctx.sessions() as session:
        gateway = session.execute(
            select(Gateway).where(
                Gateway.api_key_sha256 == hash_api_key(token), Gateway.revoked_at.is_(None)
            )
        ).scalar_one_or_none()
    if gateway is None:
        raise _unauthorized("unknown or revoked gateway API key")
    return gateway


GatewayDep = Annotated[Gateway, Depends(current_gateway)]


def require_admin(ctx: ContextDep, token: Annotated[str, Depends(bearer_token)]) -> None:
    """Accept only the admin token from settings (constant-time compare), else 401."""
    admin = ctx.settings.admin_token
    if admin is None:
        raise _unauthorized("no admin token is configured (PATROL_CLOUD_ADMIN_TOKEN)")
    if not hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        raise _unauthorized("wrong admin token")


AdminDep = Annotated[None, Depends(require_admin)]
