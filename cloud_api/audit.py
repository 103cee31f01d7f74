"""The audit log: who did what, when, to which object (table ``audit_log``).

Every provisioning function in :mod:`cloud_api.provisioning` calls :func:`record`
in the same transaction as the change it describes, so an action and its audit
row commit or roll back together. ``detail`` holds ids and facts, never a secret:
:func:`record` refuses keys whose name says they hold one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_api.models import AuditLog, utcnow


def _looks_secret(name: str) -> bool:
    """A detail field named like a secret is refused (belt and braces)."""
    lowered = name.lower()
    return (
        lowered in {"key", "token", "api_key"}
        or lowered.endswith(("_key", "_b64", "_token"))
        or "password" in lowered
        or "secret" in lowered
    )


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a person (``user_id``), the admin token, a gateway, or the system."""

    name: str
    role: str
    user_id: int | None = None


SYSTEM = Actor("system", "system")
"""Scripts, the demo and tests that provision directly through the functions."""


def record(
    session: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | int,
    *,
    site_id: int | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditLog:
    """Add one audit row (flushed with the caller's transaction)."""
    detail = dict(detail or {})
    for name in detail:
        if _looks_secret(name):
            raise ValueError(f"audit detail {name!r} looks like a secret; log ids and facts only")
    row = AuditLog(
        at=at if at is not None else utcnow(),
        actor=actor.name,
        actor_user_id=actor.user_id,
        actor_role=actor.role,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        site_id=site_id,
        detail=detail,
    )
    session.add(row)
    return row


def entries(
    session: Session, *, site_id: int | None = None, limit: int = 100, before_id: int | None = None
) -> list[AuditLog]:
    """Newest first; ``site_id`` filters, ``before_id`` pages."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if site_id is not None:
        query = query.where(AuditLog.site_id == site_id)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    return list(session.scalars(query))
