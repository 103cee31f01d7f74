"""Alert routes (issue 7): list, read, acknowledge, resolve, and the live SSE stream.

Who: supervisors of the alert's site and admins (an alert of another site is 404
like a missing one). Acknowledge and resolve carry the person (the caller) and a
note; a transition the alert's state does not allow is 409 (acknowledging or
resolving a resolved alert, acknowledging twice).

``GET /api/v1/alerts/stream`` is Server-Sent Events: one ``event: alert`` per step
(``id`` = the step's ``alert_log`` id, ``data`` = the alert snapshot as JSON), a
``: ping`` comment every ``sse_ping_s``. ``Last-Event-ID`` replays the steps after
it (a reconnecting console misses nothing). Credential: ``Authorization: Bearer``
or the ``patrol_access`` cookie holding the same access token (for browsers'
``EventSource``, which cannot set headers). The router's lifespan runs the alert
worker (escalation, webhooks) in every API process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from cloud_api.alerts import hub as alert_hub
from cloud_api.alerts import service
from cloud_api.alerts.settings import get_alert_settings
from cloud_api.alerts.worker import AlertWorker
from cloud_api.api.deps import (
    AppContext,
    ContextDep,
    Principal,
    SessionDep,
    SupervisorDep,
    current_principal,
)
from cloud_api.api.problems import (
    conflict,
    forbidden,
    not_found,
    problem_responses,
    unauthenticated,
)
from cloud_api.models import Alert, AlertLog, Role

ACCESS_COOKIE = "patrol_access"
"""Cookie the console sets to the person's access token (HttpOnly, SameSite=Strict)."""
MAX_LIST_ROWS = 500
LISTEN_WAIT_S = 10.0
"""A stream waits this long for the PostgreSQL listener (Last-Event-ID covers the rest)."""
AlertId = Annotated[int, Path(ge=1, le=2**62, description="alert id")]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the alert worker in this process while the app runs (if configured)."""
    ctx: AppContext = app.state.ctx
    settings = get_alert_settings()
    worker = (
        AlertWorker(
            ctx.sessions,
            box=ctx.box,
            settings=settings,
            influx=ctx.settings.influx_enabled,
            clock=ctx.clock,
        )
        if settings.run_worker
        else None
    )
    if worker is not None:
        worker.start()
    try:
        yield
    finally:
        if worker is not None:
            await run_in_threadpool(worker.stop)


router = APIRouter(tags=["alerts"], lifespan=lifespan)


class AlertOut(BaseModel):
    """An alert as subscribers, webhooks and this API show it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "log_id": 7,
                    "action": "acknowledged",
                    "id": 3,
                    "site_id": 1,
                    "device": "0000a001",
                    "seq": 42,
                    "trigger": "man_down",
                    "state": "acknowledged",
                    "level": 0,
                    "repeats": 0,
                    "device_time": "2026-11-25T04:00:00+00:00",
                    "created_at": "2026-11-25T04:00:01+00:00",
                    "acknowledged_at": "2026-11-25T04:00:40+00:00",
                    "acknowledged_by": "sam",
                    "ack_note": "on my way",
                    "resolved_at": None,
                    "resolved_by": None,
                    "resolve_note": None,
                }
            ]
        }
    )

    log_id: int = Field(description="the latest step's alert_log id (the SSE event id)")
    action: str = Field(description="that step: created|repeated|acknowledged|escalated|resolved")
    id: int
    site_id: int
    device: str = Field(description="wearable id, 8 lowercase hex digits")
    seq: int
    trigger: Literal["button", "man_down", "test"]
    state: Literal["open", "acknowledged", "resolved"]
    level: int = Field(description="escalation level reached (0 = site supervisor)")
    repeats: int = Field(description="further SOS frames of the wearable while live")
    device_time: datetime | None
    created_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_note: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolve_note: str | None


class AlertStepOut(BaseModel):
    """One step of an alert's history."""

    id: int
    at: datetime
    action: str
    actor: str | None
    note: str | None
    level: int


class AlertDetailOut(AlertOut):
    """An alert and its history, oldest step first."""

    log: list[AlertStepOut]


class NoteIn(BaseModel):
    """What the person says when acknowledging or resolving."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "on my way, ETA 3 min"}]}
    )

    note: str | None = Field(default=None, max_length=service.MAX_NOTE_CHARS)


def _scope(principal: Principal) -> frozenset[int] | None:
    return None if principal.all_sites else principal.site_ids


def _latest_log(session: SessionDep, alert: Alert) -> AlertLog:
    entry = session.execute(
        select(AlertLog).where(AlertLog.alert_id == alert.id).order_by(AlertLog.id.desc()).limit(1)
    ).scalar_one()
    return entry


def _out(session: SessionDep, alert: Alert) -> AlertOut:
    entry = _latest_log(session, alert)
    return AlertOut.model_validate(service.snapshot(alert, action=entry.action, log_id=entry.id))


@router.get(
    "/alerts",
    response_model=list[AlertOut],
    summary="List alerts of the caller's sites, newest first",
    responses=problem_responses(401, 403, 404, 422),
)
def list_alerts(
    principal: SupervisorDep,
    session: SessionDep,
    site_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    state: Annotated[Literal["open", "acknowledged", "resolved", "live"] | None, Query()] = None,
) -> list[AlertOut]:
    """``state=live``: open or acknowledged. At most 500 rows."""
    query = select(Alert).order_by(Alert.id.desc()).limit(MAX_LIST_ROWS)
    if site_id is not None:
        if not principal.may_see(site_id):
            raise not_found(f"no site {site_id}")
        query = query.where(Alert.site_id == site_id)
    elif not principal.all_sites:
        query = query.where(Alert.site_id.in_(sorted(principal.site_ids)))
    if state == "live":
        query = query.where(Alert.state != service.RESOLVED)
    elif state is not None:
        query = query.where(Alert.state == state)
    return [_out(session, alert) for alert in session.execute(query).scalars()]


async def stream_principal(request: Request, ctx: ContextDep) -> Principal:
    """Bearer header or ``patrol_access`` cookie; supervisors and admins only."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if not token:
        token = request.cookies.get(ACCESS_COOKIE, "").strip()
    if not token:
        raise unauthenticated("missing bearer token or patrol_access cookie")
    principal = await run_in_threadpool(current_principal, ctx, token)
    if principal.role not in (Role.SUPERVISOR, Role.ADMIN):
        raise forbidden(f"role {principal.role.value} may not do this (allowed: admin, supervisor)")
    return principal


def _sse(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    return f"id: {payload['log_id']}\nevent: alert\ndata: {data}\n\n".encode()


@router.get(
    "/alerts/stream",
    summary="Live alerts as Server-Sent Events",
    response_class=StreamingResponse,
    # An endless stream: kept out of the OpenAPI document (generated clients and
    # schemathesis cannot consume it); described in docs/alerts.md.
    include_in_schema=False,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **problem_responses(401, 403, 404, 422),
    },
)
async def stream_alerts(
    request: Request,
    ctx: ContextDep,
    principal: Annotated[Principal, Depends(stream_principal)],
    site_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    max_s: Annotated[
        float | None,
        Query(ge=0, le=86_400, description="close the stream after this long (tests, proxies)"),
    ] = None,
    last_event_id: Annotated[
        str | None, Header(pattern=r"^\d{1,18}$", description="replay the steps after this id")
    ] = None,
) -> StreamingResponse:
    """Roles: supervisor (within their sites) and admin. Credential: bearer or cookie."""
    if site_id is not None and not principal.may_see(site_id):
        raise not_found(f"no site {site_id}")
    settings = get_alert_settings()
    hub = alert_hub.hub_for(alert_hub.hub_key(ctx.engine.url))
    conninfo = alert_hub.conninfo_of(ctx.engine.url)
    hub.ensure_listener(conninfo)
    if conninfo is not None:  # LISTEN in place before "connected": nothing slips past
        await run_in_threadpool(hub.listening.wait, LISTEN_WAIT_S)
    sub = hub.subscribe(asyncio.get_running_loop())  # before the replay: nothing slips between
    scope = _scope(principal)

    def wanted(payload: dict[str, Any]) -> bool:
        sid = int(payload.get("site_id", 0))
        return principal.may_see(sid) and (site_id is None or sid == site_id)

    def replay() -> list[dict[str, Any]]:
        if last_event_id is None:
            return []
        with ctx.sessions() as session:
            return service.log_since(session, int(last_event_id), site_ids=scope)

    backlog = await run_in_threadpool(replay)

    async def events() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = None if max_s is None else loop.time() + max_s
        sent = 0
        try:
            yield b": connected\n\n"
            for payload in backlog:
                if wanted(payload):
                    sent = max(sent, int(payload["log_id"]))
                    yield _sse(payload)
            while not sub.dropped:
                timeout = settings.sse_ping_s
                if deadline is not None:
                    timeout = min(timeout, deadline - loop.time())
                    if timeout <= 0:
                        return
                try:
                    payload = await asyncio.wait_for(sub.queue.get(), timeout)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                if wanted(payload) and int(payload["log_id"]) > sent:
                    yield _sse(payload)
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/alerts/{alert_id}",
    response_model=AlertDetailOut,
    summary="An alert and its history",
    responses=problem_responses(401, 403, 404, 422),
)
def get_alert(
    alert_id: AlertId,
    principal: SupervisorDep,
    session: SessionDep,
) -> AlertDetailOut:
    alert = session.get(Alert, alert_id)
    if alert is None or not principal.may_see(alert.site_id):
        raise not_found(f"no alert {alert_id}")
    steps = session.execute(
        select(AlertLog).where(AlertLog.alert_id == alert.id).order_by(AlertLog.id)
    ).scalars()
    log = [
        AlertStepOut(id=s.id, at=s.at, action=s.action, actor=s.actor, note=s.note, level=s.level)
        for s in steps
    ]
    base = _out(session, alert)
    return AlertDetailOut(**base.model_dump(), log=log)


def _transition(
    ctx: AppContext,
    principal: Principal,
    alert_id: int,
    note: str | None,
    action: Literal["acknowledge", "resolve"],
) -> AlertOut:
    with ctx.sessions() as session, session.begin():
        try:
            alert = service.get_alert(session, alert_id, site_ids=_scope(principal))
            move = service.acknowledge if action == "acknowledge" else service.resolve
            payload = move(
                session,
                alert,
                person=principal.username,
                note=note,
                now=ctx.clock(),
                influx=ctx.settings.influx_enabled,
            )
        except service.AlertNotFound as exc:
            raise not_found(str(exc)) from exc
        except service.AlertConflict as exc:
            raise conflict(str(exc)) from exc
    return AlertOut.model_validate(payload)


@router.post(
    "/alerts/{alert_id}/acknowledge",
    response_model=AlertOut,
    summary="Acknowledge an open alert (stops its escalation)",
    responses=problem_responses(400, 401, 403, 404, 409, 422),
)
def acknowledge_alert(
    alert_id: AlertId, body: NoteIn, principal: SupervisorDep, ctx: ContextDep
) -> AlertOut:
    """409 when the alert is already acknowledged or resolved."""
    return _transition(ctx, principal, alert_id, body.note, "acknowledge")


@router.post(
    "/alerts/{alert_id}/resolve",
    response_model=AlertOut,
    summary="Resolve an open or acknowledged alert",
    responses=problem_responses(400, 401, 403, 404, 409, 422),
)
def resolve_alert(
    alert_id: AlertId, body: NoteIn, principal: SupervisorDep, ctx: ContextDep
) -> AlertOut:
    """409 when the alert is already resolved."""
    return _transition(ctx, principal, alert_id, body.note, "resolve")
