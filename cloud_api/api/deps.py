"""FastAPI dependencies as ``Annotated`` aliases: app context, sessions, credentials, roles.

Gateways send their API key as a bearer token (looked up by SHA-256). People send
the access token from ``POST /api/v1/auth/token``; the break-glass admin token from
settings (``PATROL_CLOUD_ADMIN_TOKEN``) acts as an admin. Authorisation is two
steps: :func:`require_roles` (role may do this at all, else 403), then
:func:`require_site` (the resource's site is one of the caller's, else 404, the
same answer as for a site that does not exist). The policy is in docs/api.md.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import Depends, Path, Request
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import Field
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.routing import BaseRoute

from cloud_api.api.problems import Problem, forbidden, not_found, unauthenticated
from cloud_api.auth.tokens import InvalidTokenError, read_token
from cloud_api.auth.users import site_ids_of
from cloud_api.crypto_store import SecretBox
from cloud_api.models import Gateway, Role, Site, User
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
    token_key: bytes
    """Signs people's access tokens (derived from the server key)."""


def get_context(request: Request) -> AppContext:
    """The app's context (set on ``app.state.ctx`` by the factory)."""
    return cast(AppContext, request.app.state.ctx)


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_session(ctx: ContextDep) -> Iterator[Session]:
    """A session per request; routes open their own transaction."""
    with ctx.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _unauthorized(detail: str) -> Problem:
    return unauthenticated(detail)


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


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a logged-in person, or the break-glass admin token."""

    user_id: int | None
    username: str
    role: Role
    site_ids: frozenset[int]

    def may_see(self, site_id: int) -> bool:
        return self.role is Role.ADMIN or site_id in self.site_ids

    @property
    def all_sites(self) -> bool:
        """True for admins, who are not limited to ``site_ids``."""
        return self.role is Role.ADMIN


def _is_admin_token(ctx: AppContext, token: str) -> bool:
    admin = ctx.settings.admin_token
    return admin is not None and hmac.compare_digest(
        token.encode(), admin.get_secret_value().encode()
    )


def current_principal(ctx: ContextDep, token: Annotated[str, Depends(bearer_token)]) -> Principal:
    """The person behind an access token (or the admin token from settings), else 401."""
    if _is_admin_token(ctx, token):
        return Principal(None, "admin-token", Role.ADMIN, frozenset())
    try:
        claims = read_token(ctx.token_key, token, now=ctx.clock())
    except InvalidTokenError as exc:
        raise _unauthorized(str(exc)) from exc
    with ctx.sessions() as session:
        user = session.get(User, claims.user_id)
        if user is None or user.disabled_at is not None:
            raise _unauthorized("this account no longer exists or is disabled")
        return Principal(user.id, user.username, Role(user.role), site_ids_of(session, user.id))


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency admitting only ``roles`` (admin always), else 403."""
    allowed = frozenset(roles) | {Role.ADMIN}

    def check(principal: PrincipalDep) -> Principal:  # marked for the OpenAPI, below
        if principal.role not in allowed:
            raise forbidden(
                f"role {principal.role.value} may not do this "
                f"(allowed: {', '.join(sorted(r.value for r in allowed))})"
            )
        return principal

    check.patrol_roles = allowed  # type: ignore[attr-defined]  # read by openapi_auth
    return check


def require_site(principal: Principal, site_id: int) -> None:
    """404 "no site N" unless the caller is scoped to ``site_id`` (admins see every site).

    404 rather than 403: a caller learns nothing about sites that are not theirs,
    and gets the same answer a missing site gets (check existence with the same
    message, e.g. :func:`visible_site`).
    """
    if not principal.may_see(site_id):
        raise not_found(f"no site {site_id}")


def visible_site(session: Session, principal: Principal, site_id: int) -> Site:
    """The site if it exists and the caller is scoped to it, else 404 "no site N"."""
    require_site(principal, site_id)
    site = session.get(Site, site_id)
    if site is None:
        raise not_found(f"no site {site_id}")
    return site


MAX_DB_ID = 2**63 - 1
"""Ids are signed 64-bit in both databases: a larger one is a 422, not a driver error."""
DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID)]
"""Any id parameter: ``post_id: Annotated[DbId, Path()]`` or in a body model."""
SiteIdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID, description="The site's id.", examples=[1])]
"""A site id in the path, bounded so the database never sees an out-of-range integer."""

AdminDep = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
"""Admins only (a logged-in admin or the admin token)."""
SupervisorDep = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR))]
"""Supervisors (scoped) and admins."""
TechnicianDep = Annotated[Principal, Depends(require_roles(Role.TECHNICIAN))]
"""Technicians (scoped) and admins."""
SiteReaderDep = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR, Role.CUSTOMER))]
"""Who reads a site's records: its supervisors and customers, and admins."""
EventReaderDep = Annotated[
    Principal, Depends(require_roles(Role.GUARD, Role.SUPERVISOR, Role.CUSTOMER))
]
"""Who lists events: guards (their own), supervisors and customers (their sites), admins."""
DeviceReaderDep = Annotated[Principal, Depends(require_roles(Role.TECHNICIAN, Role.SUPERVISOR))]
"""Who reads a device's health and sequence report: technicians, supervisors, admins."""


def _dependency_calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _dependency_calls(sub)


def openapi_auth(routes: Sequence[BaseRoute], schema: dict[str, Any]) -> None:
    """Document what the credential dependencies answer, on every route that uses them.

    A route depending on a bearer credential gets the ``bearer`` security
    requirement and its 401; one behind :func:`require_roles` also its 403 and a
    line naming the roles. Route-specific answers (404, 409) stay the route's to
    declare.
    """
    from cloud_api.api.problems import problem_responses

    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A person's access token (POST /api/v1/auth/token), the admin "
        "token, or, on gateway routes, the gateway's API key.",
    }
    for context in iter_route_contexts(routes):
        route = context.route
        if not isinstance(route, APIRoute):
            continue
        calls = list(_dependency_calls(route.dependant))
        if bearer_token not in calls:
            continue
        roles: set[Role] = set()
        for call in calls:
            roles |= getattr(call, "patrol_roles", set())
        for method in route.methods or ():
            operation = schema.get("paths", {}).get(context.path_format, {}).get(method.lower())
            if operation is None:
                continue
            operation["security"] = [{"bearer": []}]
            responses = operation.setdefault("responses", {})
            codes = (401, 403) if roles else (401,)
            for code, response in problem_responses(*codes).items():
                responses.setdefault(str(code), response)
            if roles:
                scoped = sorted(role.value for role in roles if role is not Role.ADMIN)
                note = (
                    f"Roles: {', '.join(scoped)} (within their sites) and admin."
                    if scoped
                    else "Roles: admin."
                )
                description = operation.get("description", "")
                if note not in description:
                    operation["description"] = f"{description}\n\n{note}".strip()
