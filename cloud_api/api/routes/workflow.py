"""Supervision routes (issue 6, item 5): deviations, rectification items, inspections, complaints.

- deviations and rectification items: read by the site's supervisors and
  customers; moved through the workflow and reassigned by its supervisors;
- inspections (spot checks): recorded by supervisors, read by supervisors and customers;
- complaints: filed by customers and supervisors (a supervisor records a phone
  call), read by both; the verdict (investigating, upheld, dismissed) is the
  supervisors'.

Routes validate, call :mod:`cloud_api.compliance.workflow` in one transaction and
shape the answer. A move the workflow refuses is 409 with the allowed moves in
the detail; an item, complaint or post outside the caller's sites is 404 like a
missing one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_api.api.deps import (
    ContextDep,
    Principal,
    SessionDep,
    SiteReaderDep,
    SupervisorDep,
    require_roles,
    visible_site,
)
from cloud_api.api.problems import conflict, invalid, not_found, problem_responses
from cloud_api.compliance import workflow as wf
from cloud_api.compliance.report.period import Month, PeriodError, site_zone
from cloud_api.models import (
    Complaint,
    Deviation,
    Inspection,
    RectificationEvent,
    RectificationItem,
    Role,
    Site,
)

router = APIRouter(tags=["supervision"])

MAX_LIST_ROWS = 1_000
"""A listing answers at most this many rows (a month of a large site), newest first."""

ComplaintFilerDep = Annotated[Principal, Depends(require_roles(Role.CUSTOMER, Role.SUPERVISOR))]
MonthQuery = Annotated[
    str | None, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM, the site's calendar month")
]


# --- schemas ---------------------------------------------------------------------------


class HistoryOut(BaseModel):
    at: datetime
    actor_id: int | None
    action: str
    from_status: str | None
    to_status: str
    escalation_level: int
    note: str


class ItemOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "deviation_id": 12,
                    "site_id": 1,
                    "post_id": 3,
                    "guard_id": 5,
                    "rule": "too_fast",
                    "severity": "critical",
                    "detail": "North door -> Roof in 40 s; walking takes 180 s",
                    "status": "open",
                    "owner_id": 4,
                    "due_at": "2026-11-25T02:30:00Z",
                    "overdue": False,
                    "escalation_level": 0,
                    "resolution_note": None,
                }
            ]
        }
    )

    id: int
    deviation_id: int
    site_id: int
    post_id: int | None
    guard_id: int | None = Field(description="guards.id")
    rule: str
    severity: Literal["minor", "major", "critical"]
    detail: str
    occurred_at: datetime
    status: Literal["open", "in_progress", "resolved", "verified", "withdrawn"]
    owner_id: int | None
    due_at: datetime
    overdue: bool = Field(description="Escalated since it was last opened.")
    escalation_level: int
    resolution_note: str | None
    resolved_at: datetime | None
    verified_at: datetime | None
    history: list[HistoryOut] = Field(default_factory=list)


class TransitionIn(BaseModel):
    action: Literal["start", "resolve", "verify", "reopen"]
    note: str = Field(default="", max_length=wf.MAX_NOTE_CHARS)


class OwnerIn(BaseModel):
    owner_id: int = Field(ge=1, description="A supervisor of the item's site (users.id).")


class CountsOut(BaseModel):
    open: int
    in_progress: int
    resolved: int
    verified: int
    withdrawn: int
    overdue: int
    escalated: int


class InspectionIn(BaseModel):
    post_id: int = Field(ge=1)
    guard_id: int | None = Field(default=None, ge=1, description="guards.id, if one guard")
    inspected_at: AwareDatetime
    result: Literal["pass", "partial", "fail"]
    notes: str = Field(default="", max_length=wf.MAX_NOTE_CHARS)


class InspectionOut(BaseModel):
    id: int
    site_id: int
    post_id: int
    guard_id: int | None
    inspector_id: int | None
    inspected_at: datetime
    result: str
    notes: str
    deviation_id: int | None


class ComplaintIn(BaseModel):
    post_id: int | None = Field(default=None, ge=1)
    channel: Literal["phone", "email", "web", "in_person", "letter"]
    description: str = Field(min_length=1, max_length=wf.MAX_NOTE_CHARS)
    received_at: AwareDatetime | None = Field(default=None, description="default: now")


class ComplaintStatusIn(BaseModel):
    status: Literal["investigating", "upheld", "dismissed"]
    resolution: str = Field(default="", max_length=wf.MAX_NOTE_CHARS)


class ComplaintOut(BaseModel):
    id: int
    site_id: int
    post_id: int | None
    channel: str
    description: str
    status: str
    filed_by: int | None
    received_at: datetime
    closed_at: datetime | None
    resolution: str
    deviation_id: int | None


# --- helpers ---------------------------------------------------------------------------


def _month_bounds(site: Site, month: str | None, now: datetime) -> tuple[datetime, datetime]:
    zone = site_zone(site.timezone)
    try:
        chosen = Month.parse(month) if month else Month.containing(now, zone)
    except PeriodError as exc:
        raise invalid(str(exc), field="month") from exc
    return chosen.bounds(zone)


def _item_out(session: Session, item: RectificationItem, *, history: bool) -> ItemOut:
    dev = session.get(Deviation, item.deviation_id)
    assert dev is not None
    events: list[HistoryOut] = []
    if history:
        events = [
            HistoryOut(
                at=e.at,
                actor_id=e.actor_id,
                action=e.action,
                from_status=e.from_status,
                to_status=e.to_status,
                escalation_level=e.escalation_level,
                note=e.note,
            )
            for e in session.scalars(
                select(RectificationEvent)
                .where(RectificationEvent.item_id == item.id)
                .order_by(RectificationEvent.id)
            )
        ]
    return ItemOut(
        id=item.id,
        deviation_id=dev.id,
        site_id=item.site_id,
        post_id=dev.post_id,
        guard_id=dev.guard_id,
        rule=dev.rule,
        severity=dev.severity,  # type: ignore[arg-type]
        detail=dev.detail,
        occurred_at=dev.occurred_at,
        status=item.status,  # type: ignore[arg-type]
        owner_id=item.owner_id,
        due_at=item.due_at,
        overdue=item.overdue,
        escalation_level=item.escalation_level,
        resolution_note=item.resolution_note,
        resolved_at=item.resolved_at,
        verified_at=item.verified_at,
        history=events,
    )


def _visible_item(session: Session, principal: Principal, item_id: int) -> RectificationItem:
    item = session.get(RectificationItem, item_id)
    if item is None or not principal.may_see(item.site_id):
        raise not_found(f"no rectification item {item_id}")
    return item


def _inspection_out(i: Inspection) -> InspectionOut:
    return InspectionOut(
        id=i.id,
        site_id=i.site_id,
        post_id=i.post_id,
        guard_id=i.guard_id,
        inspector_id=i.inspector_id,
        inspected_at=i.inspected_at,
        result=i.result,
        notes=i.notes,
        deviation_id=i.deviation_id,
    )


def _complaint_out(c: Complaint) -> ComplaintOut:
    return ComplaintOut(
        id=c.id,
        site_id=c.site_id,
        post_id=c.post_id,
        channel=c.channel,
        description=c.description,
        status=c.status,
        filed_by=c.filed_by,
        received_at=c.received_at,
        closed_at=c.closed_at,
        resolution=c.resolution,
        deviation_id=c.deviation_id,
    )


def _problem(exc: wf.WorkflowError) -> Exception:
    """The problem for a refused workflow call: 409 a refused move, 404, else 422."""
    if isinstance(exc, wf.InvalidTransition):
        return conflict(str(exc))
    if isinstance(exc, wf.NotFoundError):
        return not_found(str(exc))
    return invalid(str(exc), location="body")


# --- rectification -----------------------------------------------------------------------


@router.get(
    "/sites/{site_id}/rectification-items",
    response_model=list[ItemOut],
    summary="A site's rectification items, most urgent first",
    responses=problem_responses(401, 403, 404, 422),
)
def list_items(
    site_id: int,
    principal: SiteReaderDep,
    session: SessionDep,
    ctx: ContextDep,
    status: Annotated[
        Literal["open", "in_progress", "resolved", "verified", "withdrawn"] | None, Query()
    ] = None,
    month: MonthQuery = None,
) -> list[ItemOut]:
    site = visible_site(session, principal, site_id)
    query = (
        select(RectificationItem)
        .join(Deviation, Deviation.id == RectificationItem.deviation_id)
        .where(RectificationItem.site_id == site.id)
    )
    if status is not None:
        query = query.where(RectificationItem.status == status)
    if month is not None:
        start, end = _month_bounds(site, month, ctx.clock())
        query = query.where(Deviation.occurred_at >= start, Deviation.occurred_at < end)
    items = session.scalars(
        query.order_by(RectificationItem.due_at, RectificationItem.id).limit(MAX_LIST_ROWS)
    ).all()
    return [_item_out(session, item, history=False) for item in items]


@router.get(
    "/sites/{site_id}/rectification-counts",
    response_model=CountsOut,
    summary="How many items of a site are open, in progress, resolved, overdue",
    responses=problem_responses(401, 403, 404),
)
def item_counts(
    site_id: int, principal: SiteReaderDep, session: SessionDep, ctx: ContextDep
) -> CountsOut:
    site = visible_site(session, principal, site_id)
    counts = wf.item_counts(session, site.id, now=ctx.clock())
    return CountsOut(**{f: getattr(counts, f) for f in CountsOut.model_fields})


@router.get(
    "/rectification-items/{item_id}",
    response_model=ItemOut,
    summary="One rectification item with its history",
    responses=problem_responses(401, 403, 404),
)
def get_item(item_id: int, principal: SiteReaderDep, session: SessionDep) -> ItemOut:
    return _item_out(session, _visible_item(session, principal, item_id), history=True)


@router.post(
    "/rectification-items/{item_id}/transitions",
    response_model=ItemOut,
    summary="Move an item: start, resolve (note), verify, reopen (note)",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def move_item(
    item_id: int,
    body: TransitionIn,
    principal: SupervisorDep,
    session: SessionDep,
    ctx: ContextDep,
) -> ItemOut:
    now = ctx.clock()
    with session.begin():
        _visible_item(session, principal, item_id)
        try:
            item = wf.transition(
                session,
                item_id,
                wf.Action(body.action),
                actor_id=principal.user_id,
                now=now,
                note=body.note,
            )
        except wf.WorkflowError as exc:
            raise _problem(exc) from exc
        wf.flush_lines(session, now=now, enabled=ctx.settings.influx_enabled)
        out = _item_out(session, item, history=True)
    return out


@router.post(
    "/rectification-items/{item_id}/owner",
    response_model=ItemOut,
    summary="Give an unfinished item to another supervisor of its site",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def reassign_item(
    item_id: int, body: OwnerIn, principal: SupervisorDep, session: SessionDep, ctx: ContextDep
) -> ItemOut:
    with session.begin():
        _visible_item(session, principal, item_id)
        try:
            item = wf.reassign(
                session,
                item_id,
                owner_id=body.owner_id,
                actor_id=principal.user_id,
                now=ctx.clock(),
            )
        except wf.WorkflowError as exc:
            raise _problem(exc) from exc
        out = _item_out(session, item, history=True)
    return out


# --- inspections ------------------------------------------------------------------------


@router.post(
    "/sites/{site_id}/inspections",
    response_model=InspectionOut,
    status_code=201,
    summary="Record a supervisor's spot check; partial or fail opens a deviation",
    responses=problem_responses(401, 403, 404, 422),
)
def record_inspection(
    site_id: int,
    body: InspectionIn,
    principal: SupervisorDep,
    session: SessionDep,
    ctx: ContextDep,
) -> InspectionOut:
    now = ctx.clock()
    with session.begin():
        site = visible_site(session, principal, site_id)
        try:
            inspection = wf.record_inspection(
                session,
                site_id=site.id,
                post_id=body.post_id,
                guard_id=body.guard_id,
                inspector_id=principal.user_id,
                inspected_at=body.inspected_at,
                result=wf.InspectionResult(body.result),
                notes=body.notes,
                now=now,
            )
        except wf.WorkflowError as exc:
            raise _problem(exc) from exc
        wf.flush_lines(session, now=now, enabled=ctx.settings.influx_enabled)
        out = _inspection_out(inspection)
    return out


@router.get(
    "/sites/{site_id}/inspections",
    response_model=list[InspectionOut],
    summary="A site's spot checks in a month (default: this month)",
    responses=problem_responses(401, 403, 404, 422),
)
def list_inspections(
    site_id: int,
    principal: SiteReaderDep,
    session: SessionDep,
    ctx: ContextDep,
    month: MonthQuery = None,
) -> list[InspectionOut]:
    site = visible_site(session, principal, site_id)
    start, end = _month_bounds(site, month, ctx.clock())
    rows = session.scalars(
        select(Inspection)
        .where(
            Inspection.site_id == site.id,
            Inspection.inspected_at >= start,
            Inspection.inspected_at < end,
        )
        .order_by(Inspection.inspected_at.desc(), Inspection.id.desc())
        .limit(MAX_LIST_ROWS)
    )
    return [_inspection_out(i) for i in rows]


# --- complaints -------------------------------------------------------------------------


@router.post(
    "/sites/{site_id}/complaints",
    response_model=ComplaintOut,
    status_code=201,
    summary="File a complaint (customers; supervisors record calls to the supervision line)",
    responses=problem_responses(401, 403, 404, 422),
)
def file_complaint(
    site_id: int,
    body: ComplaintIn,
    principal: ComplaintFilerDep,
    session: SessionDep,
    ctx: ContextDep,
) -> ComplaintOut:
    now = ctx.clock()
    with session.begin():
        site = visible_site(session, principal, site_id)
        try:
            complaint = wf.file_complaint(
                session,
                site_id=site.id,
                post_id=body.post_id,
                channel=wf.ComplaintChannel(body.channel),
                description=body.description,
                filed_by=principal.user_id,
                received_at=body.received_at or now,
            )
        except wf.WorkflowError as exc:
            raise _problem(exc) from exc
        out = _complaint_out(complaint)
    return out


@router.get(
    "/sites/{site_id}/complaints",
    response_model=list[ComplaintOut],
    summary="A site's complaints received in a month (default: this month)",
    responses=problem_responses(401, 403, 404, 422),
)
def list_complaints(
    site_id: int,
    principal: SiteReaderDep,
    session: SessionDep,
    ctx: ContextDep,
    month: MonthQuery = None,
) -> list[ComplaintOut]:
    site = visible_site(session, principal, site_id)
    start, end = _month_bounds(site, month, ctx.clock())
    rows = session.scalars(
        select(Complaint)
        .where(
            Complaint.site_id == site.id,
            Complaint.received_at >= start,
            Complaint.received_at < end,
        )
        .order_by(Complaint.received_at.desc(), Complaint.id.desc())
        .limit(MAX_LIST_ROWS)
    )
    return [_complaint_out(c) for c in rows]


@router.post(
    "/complaints/{complaint_id}/status",
    response_model=ComplaintOut,
    summary="received -> investigating -> upheld | dismissed (a verdict needs a resolution)",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def set_complaint_status(
    complaint_id: int,
    body: ComplaintStatusIn,
    principal: SupervisorDep,
    session: SessionDep,
    ctx: ContextDep,
) -> ComplaintOut:
    now = ctx.clock()
    with session.begin():
        found = session.get(Complaint, complaint_id)
        if found is None or not principal.may_see(found.site_id):
            raise not_found(f"no complaint {complaint_id}")
        try:
            complaint = wf.update_complaint(
                session,
                complaint_id,
                wf.ComplaintStatus(body.status),
                resolution=body.resolution,
                now=now,
            )
        except wf.WorkflowError as exc:
            raise _problem(exc) from exc
        wf.flush_lines(session, now=now, enabled=ctx.settings.influx_enabled)
        out = _complaint_out(complaint)
    return out
