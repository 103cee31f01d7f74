"""Compliance targets, shifts and scores (issue 6, items 1-3 and 8).

- post targets and patrol plans: read by the site's supervisors and customers,
  written by its supervisors;
- contract weights per customer: admins;
- shifts: planned by supervisors, listed by supervisors and customers;
- scores: read by supervisors and customers of the site, and by the guard
  whose shift it is (``guards.user_id``); recomputed on demand by supervisors.

Routes only validate, call :mod:`cloud_api.compliance.store` and shape the
answer; a post or shift outside the caller's sites is 404 like a missing one.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_api.api.deps import (
    AdminDep,
    ContextDep,
    Principal,
    SessionDep,
    SiteReaderDep,
    SupervisorDep,
    require_roles,
    visible_site,
)
from cloud_api.api.problems import invalid, not_found, problem_responses
from cloud_api.compliance import explain, store
from cloud_api.compliance.types import Category
from cloud_api.models import (
    Checkpoint,
    ComplianceContractWeights,
    CompliancePlan,
    ComplianceScore,
    ComplianceShift,
    ComplianceTargets,
    Post,
    Role,
)
from patrol_protocol.ids import parse_device_id

router = APIRouter(tags=["compliance"])

MAX_LIST_DAYS = 62  # a shift / score listing covers at most two months
ScoreReaderDep = Annotated[
    Principal, Depends(require_roles(Role.SUPERVISOR, Role.CUSTOMER, Role.GUARD))
]


# --- schemas ---------------------------------------------------------------------------


class WindowIn(BaseModel):
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(min_length=1, max_length=7)
    start: time
    end: time


class PlanIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "night rounds",
                    "checkpoints": [1, 2, 3],
                    "ordered": True,
                    "schedule": "interval",
                    "interval_s": 3600,
                    "round_duration_s": 1200,
                    "grace_s": 300,
                    "windows": [{"weekdays": [0, 1, 2, 3, 4], "start": "22:00", "end": "06:00"}],
                    "walk_s": [[1, 2, 90]],
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=200)
    checkpoints: list[int] = Field(min_length=1, max_length=200)
    ordered: bool = False
    schedule: Literal["interval", "fixed", "random"]
    interval_s: int = Field(default=0, ge=0, le=86_400)
    fixed_times: list[time] = Field(default_factory=list, max_length=96)
    rounds_per_window: int = Field(default=0, ge=0, le=96)
    round_duration_s: int = Field(gt=0, le=86_400)
    grace_s: int = Field(default=0, ge=0, le=86_400)
    windows: list[WindowIn] = Field(min_length=1, max_length=50)
    min_dwell_s: int = Field(default=0, ge=0, le=3600)
    walk_s: list[tuple[int, int, Annotated[int, Field(ge=0, le=86_400)]]] = Field(
        default_factory=list, max_length=1000
    )
    default_walk_s: int = Field(default=0, ge=0, le=86_400)

    def to_row(self, post_id: int) -> CompliancePlan:
        """The plan as stored (times as ``HH:MM:SS`` text), for the API and the CLI alike."""
        return CompliancePlan(
            post_id=post_id,
            name=self.name,
            checkpoints=list(self.checkpoints),
            ordered=self.ordered,
            schedule_kind=self.schedule,
            interval_s=self.interval_s,
            fixed_times=[t.strftime("%H:%M:%S") for t in self.fixed_times],
            rounds_per_window=self.rounds_per_window,
            round_duration_s=self.round_duration_s,
            grace_s=self.grace_s,
            windows=[
                {
                    "weekdays": sorted(set(w.weekdays)),
                    "start": w.start.strftime("%H:%M:%S"),
                    "end": w.end.strftime("%H:%M:%S"),
                }
                for w in self.windows
            ],
            min_dwell_s=self.min_dwell_s,
            walk_s=[list(w) for w in self.walk_s],
            default_walk_s=self.default_walk_s,
        )


class PlanOut(PlanIn):
    id: int
    post_id: int
    retired_at: datetime | None = None


class EquipmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    tag_ids: list[str] = Field(min_length=1, max_length=50, description="8-hex tag ids")
    min_battery_pct: int = Field(default=20, ge=0, le=100)


class TargetsIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "max_absence_s": 900,
                    "max_inactivity_s": 5400,
                    "sos_ack_target_s": 60,
                    "rectification_target_h": 72,
                    "equipment": [{"name": "radio", "tag_ids": ["0000e001"]}],
                    "weights": {"rounds": 50, "equipment": 10},
                }
            ]
        }
    )

    max_absence_s: int = Field(default=900, gt=0, le=86_400)
    max_inactivity_s: int = Field(default=5400, gt=0, le=86_400)
    sos_ack_target_s: int = Field(default=60, gt=0, le=86_400)
    rectification_target_h: int = Field(default=72, gt=0, le=24 * 90)
    equipment: list[EquipmentIn] = Field(default_factory=list, max_length=20)
    weights: dict[Category, Annotated[float, Field(ge=0, le=1000)]] | None = None


class TargetsOut(TargetsIn):
    post_id: int
    timezone: str
    plans: list[PlanOut]


class WeightsIn(BaseModel):
    weights: dict[Category, Annotated[float, Field(ge=0, le=1000)]]


class WeightsOut(WeightsIn):
    customer_id: int
    normalised: dict[str, float]


class ShiftIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "post_id": 1,
                    "guard_id": 7,
                    "device_id": "0000a001",
                    "start": "2026-11-24T21:00:00Z",
                    "end": "2026-11-25T05:00:00Z",
                }
            ]
        }
    )

    post_id: int
    guard_id: int = Field(ge=1)
    device_id: str = Field(description="the wearable the guard carries, 8 hex digits")
    start: AwareDatetime
    end: AwareDatetime


class ShiftOut(BaseModel):
    id: int
    site_id: int
    post_id: int
    guard_id: int
    device_id: str
    start: datetime
    end: datetime


class ScoreOut(BaseModel):
    shift: ShiftOut
    version: int
    final: bool
    computed_at: datetime
    score: float
    explanation: str
    result: dict[str, Any]


class ScoreSummary(BaseModel):
    shift_id: int
    post_id: int
    guard_id: int
    start: datetime
    end: datetime
    version: int
    final: bool
    score: float
    rounds_expected: int
    rounds_completed: int
    rounds_partial: int
    rounds_missed: int
    presence_share: float
    equipment_readiness: dict[str, float]
    breaches: int


# --- helpers ------------------------------------------------------------------------------


def _post(session: Session, principal: Principal, post_id: int) -> Post:
    post = session.get(Post, post_id)
    if post is None or not principal.may_see(post.site_id):
        raise not_found(f"no post {post_id}")
    return post


def _shift(session: Session, principal: Principal, shift_id: int) -> ComplianceShift:
    row = session.get(ComplianceShift, shift_id)
    if row is None or not principal.may_see(row.site_id):
        raise not_found(f"no shift {shift_id}")
    if principal.role is Role.GUARD and not _is_own(session, principal, row.guard_id):
        raise not_found(f"no shift {shift_id}")
    return row


def _is_own(session: Session, principal: Principal, guard_id: int) -> bool:
    """Whether ``guard_id`` (``guards.id``) is the calling guard's own record."""
    from cloud_api import models

    guard_model = getattr(models, "Guard", None)
    if guard_model is None or principal.user_id is None:
        return False
    guard = session.get(guard_model, guard_id)
    return guard is not None and guard.user_id == principal.user_id


def _plan_out(row: CompliancePlan) -> PlanOut:
    return PlanOut(
        id=row.id,
        post_id=row.post_id,
        retired_at=row.retired_at,
        name=row.name,
        checkpoints=row.checkpoints,
        ordered=row.ordered,
        schedule=row.schedule_kind,  # type: ignore[arg-type]
        interval_s=row.interval_s,
        fixed_times=[time.fromisoformat(t) for t in row.fixed_times],
        rounds_per_window=row.rounds_per_window,
        round_duration_s=row.round_duration_s,
        grace_s=row.grace_s,
        windows=[WindowIn(**w) for w in row.windows],
        min_dwell_s=row.min_dwell_s,
        walk_s=[tuple(w) for w in row.walk_s],
        default_walk_s=row.default_walk_s,
    )


def _targets_out(session: Session, post: Post) -> TargetsOut:
    from cloud_api.models import Site

    site = session.get(Site, post.site_id)
    assert site is not None
    row = session.get(ComplianceTargets, post.id)
    plans = session.scalars(
        select(CompliancePlan)
        .where(CompliancePlan.post_id == post.id, CompliancePlan.retired_at.is_(None))
        .order_by(CompliancePlan.id)
    ).all()
    base = (
        TargetsIn()
        if row is None
        else TargetsIn(
            max_absence_s=row.max_absence_s,
            max_inactivity_s=row.max_inactivity_s,
            sos_ack_target_s=row.sos_ack_target_s,
            rectification_target_h=row.rectification_target_h,
            equipment=[
                EquipmentIn(
                    name=e["name"],
                    tag_ids=[f"{t:08x}" for t in e["tag_ids"]],
                    min_battery_pct=e.get("min_battery_pct", 20),
                )
                for e in row.equipment
            ],
            weights=store.weights_from(row.weights) or None,
        )
    )
    return TargetsOut(
        **base.model_dump(),
        post_id=post.id,
        timezone=site.timezone,
        plans=[_plan_out(p) for p in plans],
    )


def _shift_out(row: ComplianceShift) -> ShiftOut:
    return ShiftOut(
        id=row.id,
        site_id=row.site_id,
        post_id=row.post_id,
        guard_id=row.guard_id,
        device_id=f"{row.device_id:08x}",
        start=row.start_at,
        end=row.end_at,
    )


def _score_out(shift: ComplianceShift, row: ComplianceScore) -> ScoreOut:
    return ScoreOut(
        shift=_shift_out(shift),
        version=row.version,
        final=row.final,
        computed_at=row.computed_at,
        score=row.score,
        explanation=explain.explanation_text(row.result),
        result=row.result,
    )


def _span(start: datetime, end: datetime) -> None:
    if end <= start:
        raise invalid("end must be later than start", field="end")
    if end - start > timedelta(days=MAX_LIST_DAYS):
        raise invalid(f"at most {MAX_LIST_DAYS} days per request", field="end")


# --- targets and plans ------------------------------------------------------------------------


@router.get(
    "/posts/{post_id}/targets",
    summary="A post's targets and live patrol plans",
    responses=problem_responses(401, 403, 404),
)
def get_targets(post_id: int, principal: SiteReaderDep, session: SessionDep) -> TargetsOut:
    return _targets_out(session, _post(session, principal, post_id))


@router.put(
    "/posts/{post_id}/targets",
    summary="Set a post's targets (absence, inactivity, SOS, equipment, weights)",
    responses=problem_responses(401, 403, 404, 422),
)
def put_targets(
    post_id: int, body: TargetsIn, principal: SupervisorDep, session: SessionDep, ctx: ContextDep
) -> TargetsOut:
    with session.begin():
        post = _post(session, principal, post_id)
        equipment = []
        for e in body.equipment:
            try:
                equipment.append(
                    {
                        "name": e.name,
                        "tag_ids": sorted(parse_device_id(t) for t in e.tag_ids),
                        "min_battery_pct": e.min_battery_pct,
                    }
                )
            except ValueError as exc:
                raise invalid(str(exc), field="equipment") from exc
        weights = {k.value: v for k, v in body.weights.items()} if body.weights else None
        row = session.get(ComplianceTargets, post_id) or ComplianceTargets(post_id=post_id)
        row.max_absence_s = body.max_absence_s
        row.max_inactivity_s = body.max_inactivity_s
        row.sos_ack_target_s = body.sos_ack_target_s
        row.rectification_target_h = body.rectification_target_h
        row.equipment = equipment
        row.weights = weights
        row.updated_at = ctx.clock()
        session.add(row)
        session.flush()
        try:
            store.targets_for_post(session, post_id)
        except store.ComplianceError as exc:
            raise invalid(str(exc), field="weights") from exc
        return _targets_out(session, post)


@router.post(
    "/posts/{post_id}/plans",
    status_code=201,
    summary="Add a patrol plan to a post",
    responses=problem_responses(401, 403, 404, 422),
)
def post_plan(post_id: int, body: PlanIn, principal: SupervisorDep, session: SessionDep) -> PlanOut:
    with session.begin():
        post = _post(session, principal, post_id)
        own = set(session.scalars(select(Checkpoint.id).where(Checkpoint.post_id == post.id)).all())
        foreign = sorted(set(body.checkpoints) - own)
        if foreign:
            raise invalid(
                f"checkpoints {foreign} do not belong to post {post_id}", field="checkpoints"
            )
        row = body.to_row(post.id)
        session.add(row)
        session.flush()
        try:
            store.plan_from_row(row)
        except store.ComplianceError as exc:
            raise invalid(str(exc).split(": ", 1)[-1], field="schedule") from exc
        return _plan_out(row)


@router.delete(
    "/plans/{plan_id}",
    status_code=204,
    summary="Retire a patrol plan (shifts starting later no longer expect it)",
    responses=problem_responses(401, 403, 404),
)
def retire_plan(
    plan_id: int, principal: SupervisorDep, session: SessionDep, ctx: ContextDep
) -> Response:
    with session.begin():
        row = session.get(CompliancePlan, plan_id)
        post = session.get(Post, row.post_id) if row is not None else None
        if row is None or post is None or not principal.may_see(post.site_id):
            raise not_found(f"no plan {plan_id}")
        if row.retired_at is None:
            row.retired_at = ctx.clock()
    return Response(status_code=204)


@router.put(
    "/customers/{customer_id}/weights",
    summary="Set a customer's contract weights (category -> weight)",
    responses=problem_responses(401, 403, 422),
)
def put_weights(
    customer_id: int, body: WeightsIn, _admin: AdminDep, session: SessionDep, ctx: ContextDep
) -> WeightsOut:
    from cloud_api.compliance.targets import Weights

    try:
        normalised = Weights(dict(body.weights))
    except ValueError as exc:
        raise invalid(str(exc), field="weights") from exc
    with session.begin():
        row = session.get(ComplianceContractWeights, customer_id)
        if row is None:
            row = ComplianceContractWeights(customer_id=customer_id, weights={})
            session.add(row)
        row.weights = {k.value: v for k, v in body.weights.items()}
        row.updated_at = ctx.clock()
    return WeightsOut(
        customer_id=customer_id,
        weights=body.weights,
        normalised={k.value: round(v, 4) for k, v in normalised.budget.items()},
    )


# --- shifts and scores ----------------------------------------------------------------------


@router.post(
    "/shifts",
    status_code=201,
    summary="Plan a shift: guard, post, wearable, start, end",
    responses=problem_responses(401, 403, 404, 422),
)
def post_shift(body: ShiftIn, principal: SupervisorDep, session: SessionDep) -> ShiftOut:
    try:
        device_id = parse_device_id(body.device_id)
    except ValueError as exc:
        raise invalid(str(exc), field="device_id") from exc
    with session.begin():
        _post(session, principal, body.post_id)
        try:
            row = store.create_shift(
                session,
                post_id=body.post_id,
                guard_id=body.guard_id,
                device_id=device_id,
                start=body.start,
                end=body.end,
            )
        except store.ComplianceError as exc:
            raise invalid(str(exc), field="end") from exc
        return _shift_out(row)


@router.get(
    "/sites/{site_id}/shifts",
    summary="A site's shifts starting in [start, end)",
    responses=problem_responses(401, 403, 404, 422),
)
def list_shifts(
    site_id: int,
    principal: SiteReaderDep,
    session: SessionDep,
    start: Annotated[AwareDatetime, Query()],
    end: Annotated[AwareDatetime, Query()],
) -> list[ShiftOut]:
    visible_site(session, principal, site_id)
    _span(start, end)
    rows = session.scalars(
        select(ComplianceShift)
        .where(
            ComplianceShift.site_id == site_id,
            ComplianceShift.cancelled_at.is_(None),
            ComplianceShift.start_at >= start,
            ComplianceShift.start_at < end,
        )
        .order_by(ComplianceShift.start_at, ComplianceShift.id)
    ).all()
    return [_shift_out(r) for r in rows]


@router.get(
    "/shifts/{shift_id}/score",
    summary="A shift's current score with its explanation",
    responses=problem_responses(401, 403, 404),
)
def get_score(
    shift_id: int, principal: ScoreReaderDep, session: SessionDep, ctx: ContextDep
) -> ScoreOut:
    shift = _shift(session, principal, shift_id)
    row = session.scalars(
        select(ComplianceScore).where(
            ComplianceScore.shift_id == shift_id, ComplianceScore.current.is_(True)
        )
    ).one_or_none()
    if row is None:
        raise not_found(f"shift {shift_id} has no score yet")
    return _score_out(shift, row)


@router.get(
    "/shifts/{shift_id}/score/history",
    summary="Every stored version of a shift's score, oldest first",
    responses=problem_responses(401, 403, 404),
)
def get_score_history(
    shift_id: int, principal: SupervisorDep, session: SessionDep
) -> list[ScoreOut]:
    shift = _shift(session, principal, shift_id)
    return [_score_out(shift, r) for r in store.history(session, shift_id)]


@router.post(
    "/shifts/{shift_id}/score",
    summary="(Re)compute a shift's score now; idempotent when nothing changed",
    responses=problem_responses(401, 403, 404, 422),
)
def rescore(
    shift_id: int, principal: SupervisorDep, session: SessionDep, ctx: ContextDep
) -> ScoreOut:
    with session.begin():
        shift = _shift(session, principal, shift_id)
        try:
            stored = store.score_shift_row(
                session, shift_id, now=ctx.clock(), sink=ctx.settings.influx_enabled
            )
        except store.ComplianceError as exc:
            raise invalid(str(exc), field="targets") from exc
        return _score_out(shift, stored.row)


@router.get(
    "/sites/{site_id}/scores",
    summary="Current scores of a site's shifts starting in [start, end)",
    responses=problem_responses(401, 403, 404, 422),
)
def list_scores(
    site_id: int,
    principal: SiteReaderDep,
    session: SessionDep,
    start: Annotated[AwareDatetime, Query()],
    end: Annotated[AwareDatetime, Query()],
) -> list[ScoreSummary]:
    visible_site(session, principal, site_id)
    _span(start, end)
    return [
        ScoreSummary(
            shift_id=c.shift_id,
            post_id=c.post_id,
            guard_id=c.guard_id,
            start=c.start,
            end=c.end,
            version=c.version,
            final=c.final,
            score=c.score,
            rounds_expected=c.rounds_expected,
            rounds_completed=c.rounds_completed,
            rounds_partial=c.rounds_partial,
            rounds_missed=c.rounds_missed,
            presence_share=c.presence_share,
            equipment_readiness=c.equipment_readiness,
            breaches=c.breaches,
        )
        for c in store.current_scores(session, site_id=site_id, start=start, end=end)
    ]
