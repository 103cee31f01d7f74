"""Liveness and database reachability for load balancers."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from cloud_api.api.deps import ContextDep
from cloud_api.api.problems import problem_responses, unavailable

router = APIRouter(tags=["health"])

HEALTH_RETRY_AFTER_S = 5
"""How long a load balancer is asked to wait before probing an unhealthy process again."""


class Health(BaseModel):
    """A healthy process."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok", "database": "ok"}]})

    status: Literal["ok"]
    database: Literal["ok"]


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness and database reachability",
    responses=problem_responses(503),
)
def healthz(ctx: ContextDep) -> Health:
    """200 when the database answers ``SELECT 1``; else a 503 problem with
    ``checks: {"database": "unreachable"}``. No credential needed.
    """
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise unavailable(
            "the database does not answer",
            retry_after_s=HEALTH_RETRY_AFTER_S,
            checks={"database": "unreachable"},
        ) from exc
    return Health(status="ok", database="ok")
