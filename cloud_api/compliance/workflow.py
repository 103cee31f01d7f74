"""Supervision mechanism: deviations, rectification items, escalation, inspections, complaints.

A rule breach found by the scoring engine, a missed round, a failed spot check or
an upheld complaint becomes a **deviation** with a severity. Each deviation opens
one **rectification item** with an owner (a supervisor of the site) and a due
time that follows from the severity. The item moves

    open -> in_progress -> resolved (a note is required) -> verified

and a verifier who is not satisfied sends a resolved item back to in_progress
(``reopen``, with a note). Any other move is refused with
:class:`InvalidTransition`, naming the moves allowed from the current status.
Every step is written to ``rectification_events``.

Idempotency: a deviation is keyed by what caused it (``source_key``). Scoring a
shift again after late events re-finds the same keys and changes nothing; a
breach that disappeared (a late tap filled the missed checkpoint) withdraws its
deviation and closes its open item as ``withdrawn``; one that comes back is
restored.

Escalation: :func:`escalate_overdue` raises the level of every open or
in-progress item past its due time, then again every repeat interval up to a
maximum level. It claims rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several API processes (or :class:`EscalationWorker` threads in them) can run it
at once and every overdue step is taken exactly once; SQLite has one writer at a
time (``BEGIN IMMEDIATE``).

Inspections and complaints feed the score through :class:`WorkflowDeductions`,
the engine's :class:`~cloud_api.compliance.types.DeductionSource` hook.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.compliance.types import (
    Category,
    Deduction,
    RuleBreach,
    Severity,
    ShiftRef,
    ShiftScore,
)
from cloud_api.models import (
    Complaint,
    Deviation,
    Inspection,
    Post,
    RectificationEvent,
    RectificationItem,
    Role,
    Site,
    User,
    UserSite,
    utcnow,
)
from cloud_api.sink import outbox
from cloud_api.sink.compliance_lines import deviation_line, rectification_line

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 4_000
"""A resolution note, complaint or inspection text longer than this is refused, not cut."""

MAX_ESCALATION_BATCH = 200
"""Items one claim locks at most: a short transaction even with a large backlog."""

ESCALATION_INTERVAL_S = 60.0
"""How often each API process looks for overdue items (due times are hours apart)."""


# ---------------------------------------------------------------- enumerations


class Status(StrEnum):
    """Where a rectification item stands."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    VERIFIED = "verified"
    WITHDRAWN = "withdrawn"  # its deviation vanished when the shift was re-scored


class Action(StrEnum):
    """What a person (or the system) does to an item."""

    CREATE = "create"
    START = "start"
    RESOLVE = "resolve"
    VERIFY = "verify"
    REOPEN = "reopen"
    REASSIGN = "reassign"
    ESCALATE = "escalate"
    WITHDRAW = "withdraw"
    RESTORE = "restore"


class Source(StrEnum):
    """What raised a deviation."""

    RULE = "rule"  # a self-restraint rule breach
    ROUND = "round"  # a missed or partial round
    EQUIPMENT = "equipment"  # required equipment not ready for part of the shift
    INSPECTION = "inspection"
    COMPLAINT = "complaint"


class InspectionResult(StrEnum):
    PASS = "pass"  # noqa: S105 (a result, not a password)
    PARTIAL = "partial"  # minor findings
    FAIL = "fail"


class ComplaintChannel(StrEnum):
    """How a complaint arrived (the article asks for a published supervision telephone)."""

    PHONE = "phone"
    EMAIL = "email"
    WEB = "web"
    IN_PERSON = "in_person"
    LETTER = "letter"


class ComplaintStatus(StrEnum):
    RECEIVED = "received"
    INVESTIGATING = "investigating"
    UPHELD = "upheld"  # "if the investigation is true": a deviation and a deduction
    DISMISSED = "dismissed"


# Moves people may make: (from status, action) -> to status.
_MOVES: Mapping[tuple[Status, Action], Status] = MappingProxyType(
    {
        (Status.OPEN, Action.START): Status.IN_PROGRESS,
        (Status.IN_PROGRESS, Action.RESOLVE): Status.RESOLVED,
        (Status.RESOLVED, Action.VERIFY): Status.VERIFIED,
        (Status.RESOLVED, Action.REOPEN): Status.IN_PROGRESS,
    }
)
_NOTE_REQUIRED = frozenset({Action.RESOLVE, Action.REOPEN})
_ESCALATING = (Status.OPEN.value, Status.IN_PROGRESS.value)
"""Only items nobody has resolved yet escalate; a resolved item waits for its verifier."""

_COMPLAINT_MOVES: Mapping[ComplaintStatus, frozenset[ComplaintStatus]] = MappingProxyType(
    {
        ComplaintStatus.RECEIVED: frozenset({ComplaintStatus.INVESTIGATING}),
        ComplaintStatus.INVESTIGATING: frozenset(
            {ComplaintStatus.UPHELD, ComplaintStatus.DISMISSED}
        ),
        ComplaintStatus.UPHELD: frozenset(),
        ComplaintStatus.DISMISSED: frozenset(),
    }
)


# ---------------------------------------------------------------- errors


class WorkflowError(Exception):
    """Root of this module's errors; the message is meant for the person who asked."""


class NotFoundError(WorkflowError):
    """No such item, complaint, site or post (or not in the caller's site)."""


class InvalidTransition(WorkflowError):
    """A move the workflow does not allow from the item's current status."""

    def __init__(self, what: str, current: str, wanted: str, allowed: Iterable[str]) -> None:
        allowed_text = ", ".join(sorted(allowed)) or "nothing (final)"
        super().__init__(
            f"{what} is {current}: it cannot {wanted} (allowed from {current}: {allowed_text})"
        )
        self.current = current
        self.wanted = wanted


class InvalidInput(WorkflowError):
    """A value the workflow refuses (empty note, unknown result, text too long)."""


# ---------------------------------------------------------------- policy


def _hours(n: int) -> int:
    return n * 3_600


@dataclass(frozen=True, slots=True)
class WorkflowPolicy:
    """Severities, due times, escalation and the points inspections and complaints cost.

    The defaults follow the article's intent: a critical problem (tags collected in
    the guard room, a guard on two posts) is fixed within hours; "major or repeated
    problems" are escalated until a verifier closes them.
    """

    due_after_s: Mapping[Severity, int] = field(
        default_factory=lambda: {
            Severity.CRITICAL: _hours(4),
            Severity.MAJOR: _hours(24),
            Severity.MINOR: _hours(72),
        }
    )
    escalation_repeat_s: int = _hours(24)
    """After the first escalation at the due time, the next one this much later."""
    max_escalation_level: int = 3
    round_missed_severity: Severity = Severity.MAJOR
    round_partial_severity: Severity = Severity.MINOR
    equipment_ready_min_share: float = 0.9
    """An item carried and charged for less than this share of the shift is a deviation."""
    inspection_severity: Mapping[InspectionResult, Severity] = field(
        default_factory=lambda: {
            InspectionResult.PARTIAL: Severity.MINOR,
            InspectionResult.FAIL: Severity.MAJOR,
        }
    )
    complaint_severity: Severity = Severity.MAJOR
    inspection_points: Mapping[InspectionResult, float] = field(
        default_factory=lambda: {InspectionResult.PARTIAL: 5.0, InspectionResult.FAIL: 15.0}
    )
    complaint_points: float = 10.0
    """Deducted from the score of every shift at the complaint's post covering its time."""

    def due_at(self, severity: Severity, occurred_at: datetime) -> datetime:
        return occurred_at + timedelta(seconds=self.due_after_s[severity])


DEFAULT_POLICY = WorkflowPolicy()


# ---------------------------------------------------------------- deviations


@dataclass(frozen=True, slots=True)
class DeviationInput:
    """One deviation to record: what, where, who, when, how bad, and its stable key."""

    source: Source
    source_key: str
    rule: str
    severity: Severity
    site_id: int
    post_id: int | None
    guard_id: int | None
    occurred_at: datetime
    detail: str


def from_breach(breach: RuleBreach, *, site_id: int) -> DeviationInput:
    """A self-restraint rule breach as a deviation (its key survives re-scoring)."""
    return DeviationInput(
        source=Source.RULE,
        source_key=f"breach:{breach.key}",
        rule=breach.rule_id.value,
        severity=breach.severity,
        site_id=site_id,
        post_id=breach.post_id,
        guard_id=breach.guard_id,
        occurred_at=breach.start,
        detail=breach.detail,
    )


def from_shift_score(
    score: ShiftScore, shift: ShiftRef, policy: WorkflowPolicy = DEFAULT_POLICY
) -> list[DeviationInput]:
    """Every deviation a scored shift shows: rule breaches, missed/partial rounds, equipment."""
    return [from_breach(b, site_id=shift.site_id) for b in score.breaches] + service_deviations(
        score, shift, policy
    )


def service_deviations(
    score: ShiftScore, shift: ShiftRef, policy: WorkflowPolicy = DEFAULT_POLICY
) -> list[DeviationInput]:
    """The service a scored shift fell short of: missed/partial rounds, unready equipment."""
    out: list[DeviationInput] = []
    for outcome in score.rounds:
        status = outcome.status
        if status == "completed":
            continue
        missed = len(outcome.missed)
        total = missed + len(outcome.on_time) + len(outcome.late)
        out.append(
            DeviationInput(
                source=Source.ROUND,
                source_key=f"round:{shift.shift_id}:{outcome.plan_id}:{outcome.index}",
                rule=f"round_{status}",
                severity=(
                    policy.round_missed_severity
                    if status == "missed"
                    else policy.round_partial_severity
                ),
                site_id=shift.site_id,
                post_id=shift.post_id,
                guard_id=shift.guard_id,
                occurred_at=outcome.start,
                detail=f"round {outcome.index + 1} of plan {outcome.plan_id}: "
                f"{missed} of {total} checkpoints missed",
            )
        )
    for item, share in sorted(score.equipment_readiness.items()):
        if share < policy.equipment_ready_min_share:
            out.append(
                DeviationInput(
                    source=Source.EQUIPMENT,
                    source_key=f"equipment:{shift.shift_id}:{item}",
                    rule="equipment_not_ready",
                    severity=Severity.MAJOR,
                    site_id=shift.site_id,
                    post_id=shift.post_id,
                    guard_id=shift.guard_id,
                    occurred_at=shift.start,
                    detail=f"{item} ready for {share:.0%} of the shift "
                    f"(target {policy.equipment_ready_min_share:.0%})",
                )
            )
    return out


def shift_scope(shift_id: int) -> str:
    """The scope of every deviation one scored shift produces."""
    return f"shift:{shift_id}"


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What :func:`sync_deviations` changed (deviation ids)."""

    created: tuple[int, ...]
    withdrawn: tuple[int, ...]
    restored: tuple[int, ...]
    unchanged: int


_deviations = cast(Table, Deviation.__table__)


def _insert_ignore(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    stmt: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return stmt


def default_owner(session: Session, site_id: int) -> int | None:
    """The site's supervisor with the fewest unresolved items (lowest id on a tie), or None."""
    open_count = (
        select(func.count(RectificationItem.id))
        .where(
            RectificationItem.owner_id == User.id,
            RectificationItem.status.in_(_ESCALATING),
        )
        .scalar_subquery()
    )
    return session.execute(
        select(User.id)
        .join(UserSite, UserSite.user_id == User.id)
        .where(
            UserSite.site_id == site_id,
            User.role == Role.SUPERVISOR.value,
            User.disabled_at.is_(None),
        )
        .order_by(open_count, User.id)
        .limit(1)
    ).scalar_one_or_none()


_TRANSITION_OF = {
    Action.CREATE: "opened",
    Action.START: "started",
    Action.RESOLVE: "resolved",
    Action.VERIFY: "verified",
    Action.REOPEN: "reopened",
    Action.ESCALATE: "escalated",
    Action.WITHDRAW: "withdrawn",
    Action.RESTORE: "restored",
}
"""Actions that are workflow transitions on the dashboards (a reassignment is not)."""
_OPEN_DELTA = {"opened": 1, "reopened": 1, "restored": 1, "resolved": -1, "withdrawn": -1}
_LINES_KEY = "compliance_workflow_lines"


def pending_lines(session: Session) -> list[str]:
    """InfluxDB lines this session's workflow steps produced, not yet in the outbox."""
    lines: list[str] = session.info.setdefault(_LINES_KEY, [])
    return lines


def flush_lines(session: Session, *, now: datetime, enabled: bool) -> int:
    """Put the pending lines into the sink outbox (same transaction); how many.

    ``enabled`` is whether an InfluxDB sink is configured: without one the lines
    are dropped, as ingest drops its points (InfluxDB is a derived view).
    """
    lines = session.info.pop(_LINES_KEY, [])
    if not (enabled and lines):
        return 0
    outbox.enqueue(session, lines="\n".join(lines), n_points=len(lines), now=now)
    return len(lines)


def _event(
    session: Session,
    item: RectificationItem,
    *,
    action: Action,
    from_status: str | None,
    actor_id: int | None,
    now: datetime,
    note: str = "",
    overdue_delta: int = 0,
) -> None:
    session.add(
        RectificationEvent(
            item_id=item.id,
            at=now,
            actor_id=actor_id,
            action=action.value,
            from_status=from_status,
            to_status=item.status,
            escalation_level=item.escalation_level,
            note=note,
        )
    )
    transition_name = _TRANSITION_OF.get(action)
    if transition_name is None:
        return
    deviation = session.get(Deviation, item.deviation_id)
    assert deviation is not None
    pending_lines(session).append(
        rectification_line(
            site_id=item.site_id,
            post_id=deviation.post_id,
            item_id=item.id,
            severity=deviation.severity,
            transition=transition_name,
            at=now,
            open_delta=_OPEN_DELTA.get(transition_name, 0),
            overdue_delta=overdue_delta,
            age_s=max(0.0, (now - item.created_at).total_seconds()),
            deviation_id=deviation.id,
        )
    )


def _deviation_line(session: Session, deviation: Deviation, *, points: float = 0.0) -> None:
    pending_lines(session).append(
        deviation_line(
            site_id=deviation.site_id,
            post_id=deviation.post_id,
            guard_id=deviation.guard_id,
            deviation_id=deviation.id,
            rule=deviation.rule,
            severity=deviation.severity,
            occurred_at=deviation.occurred_at,
            active=deviation.withdrawn_at is None,
            deduction_points=points,
        )
    )


def _open_item(
    session: Session,
    deviation_id: int,
    spec: DeviationInput,
    *,
    now: datetime,
    policy: WorkflowPolicy,
    owner_id: int | None,
) -> RectificationItem:
    due = policy.due_at(spec.severity, max(spec.occurred_at, now))
    item = RectificationItem(
        deviation_id=deviation_id,
        site_id=spec.site_id,
        owner_id=owner_id if owner_id is not None else default_owner(session, spec.site_id),
        status=Status.OPEN.value,
        due_at=due,
        created_at=now,
        updated_at=now,
        escalation_level=0,
        next_escalation_at=due,
    )
    session.add(item)
    session.flush()
    _event(
        session,
        item,
        action=Action.CREATE,
        from_status=None,
        actor_id=None,
        now=now,
        note=f"{spec.severity.value} deviation: {spec.detail}",
    )
    return item


def record_deviation(
    session: Session,
    spec: DeviationInput,
    *,
    scope_key: str,
    now: datetime,
    policy: WorkflowPolicy = DEFAULT_POLICY,
    owner_id: int | None = None,
) -> tuple[int, bool]:
    """Insert the deviation unless its key exists; open its item. ``(id, created)``.

    ``INSERT ... ON CONFLICT DO NOTHING``: two processes scoring the same shift at
    once record it once.
    """
    inserted = session.execute(
        _insert_ignore(session, _deviations)
        .values(
            site_id=spec.site_id,
            post_id=spec.post_id,
            guard_id=spec.guard_id,
            source=spec.source.value,
            source_key=spec.source_key,
            scope_key=scope_key,
            rule=spec.rule,
            severity=spec.severity.value,
            occurred_at=spec.occurred_at,
            detected_at=now,
            detail=spec.detail,
        )
        .on_conflict_do_nothing(index_elements=["source_key"])
        .returning(_deviations.c.id)
    ).scalar_one_or_none()
    if inserted is None:
        existing = session.execute(
            select(Deviation.id).where(Deviation.source_key == spec.source_key)
        ).scalar_one()
        return existing, False
    deviation = session.get(Deviation, inserted)
    assert deviation is not None
    _deviation_line(session, deviation)
    _open_item(session, inserted, spec, now=now, policy=policy, owner_id=owner_id)
    return inserted, True


def sync_deviations(
    session: Session,
    *,
    scope_key: str,
    specs: Sequence[DeviationInput],
    now: datetime,
    policy: WorkflowPolicy = DEFAULT_POLICY,
) -> SyncResult:
    """Make the deviations of ``scope_key`` (one shift) match ``specs``, idempotently.

    New keys are recorded with an open item; keys no longer present are withdrawn
    (their item too, unless someone already resolved it); withdrawn keys that
    reappear are restored and their item reopened.
    """
    wanted = {s.source_key: s for s in specs}
    if len(wanted) != len(specs):
        raise InvalidInput(f"{scope_key}: two deviations share a key")
    existing = {
        d.source_key: d
        for d in session.scalars(
            select(Deviation).where(Deviation.scope_key == scope_key).with_for_update()
        )
    }
    created, withdrawn, restored, unchanged = [], [], [], 0
    for key, spec in wanted.items():
        found = existing.get(key)
        if found is None:
            dev_id, was_created = record_deviation(
                session, spec, scope_key=scope_key, now=now, policy=policy
            )
            if was_created:
                created.append(dev_id)
            else:
                unchanged += 1
        elif found.withdrawn_at is not None:
            found.withdrawn_at = None
            _deviation_line(session, found)
            _restore_item(session, found.id, now=now)
            restored.append(found.id)
        else:
            unchanged += 1
    for key, found in existing.items():
        if key not in wanted and found.withdrawn_at is None:
            found.withdrawn_at = now
            _deviation_line(session, found)
            _withdraw_item(session, found.id, now=now)
            withdrawn.append(found.id)
    session.flush()
    return SyncResult(tuple(created), tuple(withdrawn), tuple(restored), unchanged)


def _item_of(session: Session, deviation_id: int) -> RectificationItem | None:
    return session.execute(
        select(RectificationItem)
        .where(RectificationItem.deviation_id == deviation_id)
        .with_for_update()
    ).scalar_one_or_none()


def _withdraw_item(session: Session, deviation_id: int, *, now: datetime) -> None:
    item = _item_of(session, deviation_id)
    if item is None or item.status not in _ESCALATING:
        return  # someone already resolved it: their work stays on record
    before = item.status
    overdue_delta = -1 if item.overdue else 0
    item.status = Status.WITHDRAWN.value
    item.next_escalation_at = None
    item.overdue = False
    item.updated_at = now
    _event(
        session,
        item,
        action=Action.WITHDRAW,
        from_status=before,
        actor_id=None,
        now=now,
        note="the deviation is gone after re-scoring (late events arrived)",
        overdue_delta=overdue_delta,
    )


def _restore_item(session: Session, deviation_id: int, *, now: datetime) -> None:
    item = _item_of(session, deviation_id)
    if item is None or item.status != Status.WITHDRAWN.value:
        return
    item.status = Status.OPEN.value
    item.next_escalation_at = max(item.due_at, now) if item.escalation_level == 0 else now
    item.updated_at = now
    _event(
        session,
        item,
        action=Action.RESTORE,
        from_status=Status.WITHDRAWN.value,
        actor_id=None,
        now=now,
        note="the deviation is back after re-scoring",
    )


# ---------------------------------------------------------------- the workflow


def _checked_note(note: str | None, *, required: bool, what: str) -> str:
    text = (note or "").strip()
    if required and not text:
        raise InvalidInput(f"{what} needs a note saying what was done")
    if len(text) > MAX_NOTE_CHARS:
        raise InvalidInput(f"{what}: note of {len(text)} characters (at most {MAX_NOTE_CHARS})")
    return text


def lock_item(session: Session, item_id: int) -> RectificationItem:
    """The item, row-locked until the transaction ends, else :class:`NotFoundError`."""
    item = session.execute(
        select(RectificationItem).where(RectificationItem.id == item_id).with_for_update()
    ).scalar_one_or_none()
    if item is None:
        raise NotFoundError(f"no rectification item {item_id}")
    return item


def transition(
    session: Session,
    item_id: int,
    action: Action,
    *,
    actor_id: int | None,
    now: datetime,
    note: str | None = None,
) -> RectificationItem:
    """Move an item one step (start, resolve, verify, reopen); refuse any other move."""
    item = lock_item(session, item_id)
    current = Status(item.status)
    target = _MOVES.get((current, action))
    if target is None:
        allowed = [a.value for (s, a) in _MOVES if s is current]
        raise InvalidTransition(
            f"rectification item {item_id}", current.value, action.value, allowed
        )
    text = _checked_note(note, required=action in _NOTE_REQUIRED, what=f"{action.value}")
    overdue_delta = 0
    item.status = target.value
    item.updated_at = now
    if action is Action.RESOLVE:
        overdue_delta = -1 if item.overdue else 0
        item.overdue = False
        item.resolution_note = text
        item.resolved_at = now
        item.resolved_by = actor_id
        item.next_escalation_at = None
    elif action is Action.VERIFY:
        item.verified_at = now
        item.verified_by = actor_id
    elif action is Action.REOPEN:
        item.resolved_at = None
        item.resolved_by = None
        # The owner gets a fresh chance only if the original due time is still ahead.
        item.next_escalation_at = max(item.due_at, now) if item.escalation_level == 0 else now
    _event(
        session,
        item,
        action=action,
        from_status=current.value,
        actor_id=actor_id,
        now=now,
        note=text,
        overdue_delta=overdue_delta,
    )
    session.flush()
    return item


def reassign(
    session: Session, item_id: int, *, owner_id: int, actor_id: int | None, now: datetime
) -> RectificationItem:
    """Give an unfinished item to another supervisor of its site."""
    item = lock_item(session, item_id)
    if item.status not in _ESCALATING and item.status != Status.RESOLVED.value:
        raise InvalidTransition(f"rectification item {item_id}", item.status, "reassign", [])
    owner = session.get(User, owner_id)
    allowed_roles = (Role.SUPERVISOR.value, Role.ADMIN.value)
    if owner is None or owner.disabled_at is not None or owner.role not in allowed_roles:
        raise InvalidInput(f"user {owner_id} is not an active supervisor")
    if owner.role != Role.ADMIN.value and (
        session.execute(
            select(UserSite.id).where(
                UserSite.user_id == owner_id, UserSite.site_id == item.site_id
            )
        ).first()
        is None
    ):
        raise InvalidInput(f"user {owner_id} is not a supervisor of site {item.site_id}")
    previous = item.owner_id
    item.owner_id = owner_id
    item.updated_at = now
    _event(
        session,
        item,
        action=Action.REASSIGN,
        from_status=item.status,
        actor_id=actor_id,
        now=now,
        note=f"owner {previous} -> {owner_id}",
    )
    session.flush()
    return item


# ---------------------------------------------------------------- escalation


def escalate_overdue(
    session: Session,
    *,
    now: datetime,
    policy: WorkflowPolicy = DEFAULT_POLICY,
    limit: int = MAX_ESCALATION_BATCH,
) -> list[int]:
    """Escalate up to ``limit`` due items in the caller's transaction; their ids.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL): a concurrent
    caller skips them, and once this transaction commits their
    ``next_escalation_at`` has moved, so no step is ever taken twice.
    """
    items = session.scalars(
        select(RectificationItem)
        .where(
            RectificationItem.next_escalation_at <= now,
            RectificationItem.status.in_(_ESCALATING),
        )
        .order_by(RectificationItem.next_escalation_at, RectificationItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for item in items:
        overdue_delta = 0 if item.overdue else 1
        item.overdue = True
        item.escalation_level = min(item.escalation_level + 1, policy.max_escalation_level)
        item.escalated_at = now
        item.updated_at = now
        item.next_escalation_at = (
            now + timedelta(seconds=policy.escalation_repeat_s)
            if item.escalation_level < policy.max_escalation_level
            else None
        )
        overdue_s = int((now - item.due_at).total_seconds())
        _event(
            session,
            item,
            action=Action.ESCALATE,
            from_status=item.status,
            actor_id=None,
            now=now,
            note=f"overdue by {overdue_s // 3600} h {overdue_s % 3600 // 60} min; "
            f"level {item.escalation_level}",
            overdue_delta=overdue_delta,
        )
    session.flush()
    return [item.id for item in items]


def run_escalation(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    policy: WorkflowPolicy = DEFAULT_POLICY,
    batch: int = MAX_ESCALATION_BATCH,
    influx_enabled: bool = False,
) -> int:
    """Escalate everything due, one short transaction per batch; how many steps.

    With ``influx_enabled`` the batch's ``rectification`` points go into the sink
    outbox in the same transaction.
    """
    total = 0
    while True:
        with sessions() as session, session.begin():
            done = escalate_overdue(session, now=now, policy=policy, limit=batch)
            flush_lines(session, now=now, enabled=influx_enabled)
        total += len(done)
        if len(done) < batch:
            return total


class EscalationWorker:
    """A daemon thread running :func:`run_escalation` every ``interval_s`` in this process.

    Safe to run in every API process at once (see :func:`escalate_overdue`).
    Failures are logged once when they start and once on recovery, then retried
    at the next tick.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        interval_s: float,
        clock: Callable[[], datetime],
        policy: WorkflowPolicy = DEFAULT_POLICY,
        influx_enabled: bool = False,
    ) -> None:
        self._influx_enabled = influx_enabled
        self._sessions = sessions
        self._interval_s = interval_s
        self._clock = clock
        self._policy = policy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="escalation", daemon=True)
        self.escalated = 0
        self.failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def tick(self) -> int:
        """One pass; what the thread does every interval (tests call it directly)."""
        try:
            done = run_escalation(
                self._sessions,
                now=self._clock(),
                policy=self._policy,
                influx_enabled=self._influx_enabled,
            )
        except Exception:  # the outer loop: log once, keep trying
            if not self.failing:
                log.exception("escalation failed; retrying every %.0f s", self._interval_s)
            self.failing = True
            return 0
        if self.failing:
            log.info("escalation recovered")
        self.failing = False
        self.escalated += done
        return done

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.tick()


# ---------------------------------------------------------------- counts


@dataclass(frozen=True, slots=True)
class ItemCounts:
    """Rectification items of a site by status, and how many unfinished ones are overdue."""

    open: int
    in_progress: int
    resolved: int
    verified: int
    withdrawn: int
    overdue: int
    escalated: int


def item_counts(session: Session, site_id: int, *, now: datetime) -> ItemCounts:
    by_status: dict[str, int] = {
        status: n
        for status, n in session.execute(
            select(RectificationItem.status, func.count())
            .where(RectificationItem.site_id == site_id)
            .group_by(RectificationItem.status)
        )
    }
    unfinished = (
        RectificationItem.site_id == site_id,
        RectificationItem.status.in_(_ESCALATING),
    )
    overdue = session.execute(
        select(func.count()).where(*unfinished, RectificationItem.due_at < now)
    ).scalar_one()
    escalated = session.execute(
        select(func.count()).where(*unfinished, RectificationItem.escalation_level > 0)
    ).scalar_one()
    return ItemCounts(
        open=by_status.get(Status.OPEN.value, 0),
        in_progress=by_status.get(Status.IN_PROGRESS.value, 0),
        resolved=by_status.get(Status.RESOLVED.value, 0),
        verified=by_status.get(Status.VERIFIED.value, 0),
        withdrawn=by_status.get(Status.WITHDRAWN.value, 0),
        overdue=overdue,
        escalated=escalated,
    )


# ---------------------------------------------------------------- inspections


def _post_of_site(session: Session, site_id: int, post_id: int) -> Post:
    post = session.get(Post, post_id)
    if post is None or post.site_id != site_id:
        raise NotFoundError(f"no post {post_id} at site {site_id}")
    return post


def _site(session: Session, site_id: int) -> Site:
    site = session.get(Site, site_id)
    if site is None:
        raise NotFoundError(f"no site {site_id}")
    return site


def record_inspection(
    session: Session,
    *,
    site_id: int,
    post_id: int,
    guard_id: int | None,
    inspector_id: int | None,
    inspected_at: datetime,
    result: InspectionResult,
    notes: str,
    now: datetime,
    policy: WorkflowPolicy = DEFAULT_POLICY,
) -> Inspection:
    """Record a spot check; a partial or failed one opens a deviation and its item."""
    _site(session, site_id)
    post = _post_of_site(session, site_id, post_id)
    text = _checked_note(notes, required=result is not InspectionResult.PASS, what="inspection")
    inspection = Inspection(
        site_id=site_id,
        post_id=post_id,
        guard_id=guard_id,
        inspector_id=inspector_id,
        inspected_at=inspected_at,
        result=result.value,
        notes=text,
        recorded_at=now,
    )
    session.add(inspection)
    session.flush()
    if result is not InspectionResult.PASS:
        dev_id, _ = record_deviation(
            session,
            DeviationInput(
                source=Source.INSPECTION,
                source_key=f"inspection:{inspection.id}",
                rule=f"inspection_{result.value}",
                severity=policy.inspection_severity[result],
                site_id=site_id,
                post_id=post_id,
                guard_id=guard_id,
                occurred_at=inspected_at,
                detail=f"spot check at {post.name}: {text}",
            ),
            scope_key=f"inspection:{inspection.id}",
            now=now,
            policy=policy,
        )
        inspection.deviation_id = dev_id
    session.flush()
    return inspection


# ---------------------------------------------------------------- complaints


def file_complaint(
    session: Session,
    *,
    site_id: int,
    post_id: int | None,
    channel: ComplaintChannel,
    description: str,
    filed_by: int | None,
    received_at: datetime,
) -> Complaint:
    """Record a complaint as ``received``."""
    _site(session, site_id)
    if post_id is not None:
        _post_of_site(session, site_id, post_id)
    text = _checked_note(description, required=True, what="a complaint")
    complaint = Complaint(
        site_id=site_id,
        post_id=post_id,
        channel=channel.value,
        description=text,
        status=ComplaintStatus.RECEIVED.value,
        filed_by=filed_by,
        received_at=received_at,
    )
    session.add(complaint)
    session.flush()
    return complaint


def update_complaint(
    session: Session,
    complaint_id: int,
    status: ComplaintStatus,
    *,
    resolution: str | None,
    now: datetime,
    policy: WorkflowPolicy = DEFAULT_POLICY,
) -> Complaint:
    """received -> investigating -> upheld | dismissed; an upheld one opens a deviation."""
    complaint = session.execute(
        select(Complaint).where(Complaint.id == complaint_id).with_for_update()
    ).scalar_one_or_none()
    if complaint is None:
        raise NotFoundError(f"no complaint {complaint_id}")
    current = ComplaintStatus(complaint.status)
    if status not in _COMPLAINT_MOVES[current]:
        raise InvalidTransition(
            f"complaint {complaint_id}",
            current.value,
            f"become {status.value}",
            [s.value for s in _COMPLAINT_MOVES[current]],
        )
    final = status in (ComplaintStatus.UPHELD, ComplaintStatus.DISMISSED)
    text = _checked_note(resolution, required=final, what=f"a {status.value} complaint")
    complaint.status = status.value
    if final:
        complaint.closed_at = now
        complaint.resolution = text
    if status is ComplaintStatus.UPHELD:
        dev_id, _ = record_deviation(
            session,
            DeviationInput(
                source=Source.COMPLAINT,
                source_key=f"complaint:{complaint.id}",
                rule="complaint_upheld",
                severity=policy.complaint_severity,
                site_id=complaint.site_id,
                post_id=complaint.post_id,
                guard_id=None,
                occurred_at=complaint.received_at,
                detail=f"{complaint.channel} complaint upheld: {complaint.description}",
            ),
            scope_key=f"complaint:{complaint.id}",
            now=now,
            policy=policy,
        )
        complaint.deviation_id = dev_id
    session.flush()
    return complaint


# ---------------------------------------------------------------- the score hook


@dataclass(frozen=True, slots=True)
class WorkflowDeductions:
    """The engine's deduction hook: failed spot checks and upheld complaints in a shift.

    An inspection counts against the shift of its post whose time covers it (and of
    its guard, when the inspection names one); an upheld complaint about a post
    against every shift at that post covering the time it was received. Site-wide
    complaints (no post) appear in the monthly report, not in a shift's score.
    Deterministic for a given database state.
    """

    policy: WorkflowPolicy = DEFAULT_POLICY

    def deductions_for(self, session: Session, shift: ShiftRef) -> Sequence[Deduction]:
        out: list[Deduction] = []
        inspections = session.execute(
            select(Inspection.id, Inspection.result, Inspection.inspected_at, Inspection.notes)
            .where(
                Inspection.post_id == shift.post_id,
                Inspection.inspected_at >= shift.start,
                Inspection.inspected_at < shift.end,
                Inspection.result != InspectionResult.PASS.value,
                (Inspection.guard_id.is_(None)) | (Inspection.guard_id == shift.guard_id),
            )
            .order_by(Inspection.inspected_at, Inspection.id)
        )
        for row in inspections:
            result = InspectionResult(row.result)
            out.append(
                Deduction(
                    category=Category.INSPECTION,
                    code=f"inspection_{result.value}",
                    points=self.policy.inspection_points[result],
                    reason=f"supervisor spot check {result.value}: {row.notes}",
                    start=row.inspected_at,
                    end=row.inspected_at,
                    ref=f"inspection {row.id}",
                )
            )
        complaints = session.execute(
            select(Complaint.id, Complaint.received_at, Complaint.channel, Complaint.resolution)
            .where(
                Complaint.post_id == shift.post_id,
                Complaint.status == ComplaintStatus.UPHELD.value,
                Complaint.received_at >= shift.start,
                Complaint.received_at < shift.end,
            )
            .order_by(Complaint.received_at, Complaint.id)
        )
        for crow in complaints:
            out.append(
                Deduction(
                    category=Category.COMPLAINT,
                    code="complaint_upheld",
                    points=self.policy.complaint_points,
                    reason=f"{crow.channel} complaint upheld: {crow.resolution}",
                    start=crow.received_at,
                    end=crow.received_at,
                    ref=f"complaint {crow.id}",
                )
            )
        return out


@dataclass(frozen=True, slots=True)
class DeviationSink:
    """The engine's breach hook: after every (re)computation of a shift, sync its breaches.

    Called in the scoring transaction with the complete current list of rule
    breaches (scope ``shift:<id>``); idempotent, see :func:`sync_deviations`. The
    InfluxDB lines wait in the session (:func:`pending_lines`) until the caller,
    who knows whether a sink is configured, calls :func:`flush_lines`.
    """

    policy: WorkflowPolicy = DEFAULT_POLICY
    clock: Callable[[], datetime] = utcnow

    def breaches_found(
        self, session: Session, shift: ShiftRef, breaches: Sequence[RuleBreach]
    ) -> SyncResult:
        specs = [from_breach(b, site_id=shift.site_id) for b in breaches]
        return sync_deviations(
            session,
            scope_key=shift_scope(shift.shift_id),
            specs=specs,
            now=self.clock(),
            policy=self.policy,
        )


@dataclass(frozen=True, slots=True)
class ScoreDeviationSink:
    """The engine's score hook: missed and partial rounds and unready equipment as deviations.

    Scope ``shift:<id>:service``, apart from the breaches' scope, so the two hooks
    never withdraw each other's deviations.
    """

    policy: WorkflowPolicy = DEFAULT_POLICY
    clock: Callable[[], datetime] = utcnow

    def score_found(self, session: Session, shift: ShiftRef, score: ShiftScore) -> SyncResult:
        specs = service_deviations(score, shift, self.policy)
        return sync_deviations(
            session,
            scope_key=f"{shift_scope(shift.shift_id)}:service",
            specs=specs,
            now=self.clock(),
            policy=self.policy,
        )


__all__ = [
    "DEFAULT_POLICY",
    "ESCALATION_INTERVAL_S",
    "Action",
    "ComplaintChannel",
    "ComplaintStatus",
    "DeviationInput",
    "DeviationSink",
    "EscalationWorker",
    "InspectionResult",
    "InvalidInput",
    "InvalidTransition",
    "ItemCounts",
    "NotFoundError",
    "ScoreDeviationSink",
    "Source",
    "Status",
    "SyncResult",
    "WorkflowDeductions",
    "WorkflowError",
    "WorkflowPolicy",
    "escalate_overdue",
    "file_complaint",
    "flush_lines",
    "from_breach",
    "from_shift_score",
    "item_counts",
    "lock_item",
    "pending_lines",
    "reassign",
    "record_deviation",
    "record_inspection",
    "run_escalation",
    "service_deviations",
    "shift_scope",
    "sync_deviations",
    "transition",
    "update_complaint",
]
