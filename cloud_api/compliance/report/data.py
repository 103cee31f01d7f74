"""Everything the monthly site report shows, read once from the store into plain values.

:func:`collect` gathers one :class:`SiteMonthReport`; the renderers
(:mod:`.pdf`, :mod:`.csv`) are pure functions of it, so the PDF and the CSV of a
month always agree. The month is the site's calendar month in its own IANA
time zone (:mod:`.period`): a shift belongs to the month in which it starts,
deviations to the month in which they happened, complaints and surveys to the
month in which they were received.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from statistics import median

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from cloud_api import chain
from cloud_api.compliance import store
from cloud_api.compliance.report.period import Month, site_zone
from cloud_api.compliance.surveys import SurveySummary, site_summary
from cloud_api.models import (
    Complaint,
    Deviation,
    Event,
    Gateway,
    Guard,
    Inspection,
    Post,
    RectificationItem,
    Site,
    User,
)
from patrol_protocol.frames import Kind


class ReportError(ValueError):
    """A report that cannot be made (no such site, a site with a bad time zone)."""


@dataclass(frozen=True, slots=True)
class DayScore:
    day: date
    shifts: int
    mean_score: float | None


@dataclass(frozen=True, slots=True)
class PostLine:
    """One post's month: shifts, mean score, rounds and equipment readiness."""

    post_id: int
    name: str
    shifts: int
    mean_score: float | None
    rounds_expected: int
    rounds_completed: int
    rounds_partial: int
    rounds_missed: int
    checkpoints_on_time: int
    checkpoints_late: int
    checkpoints_missed: int
    equipment: tuple[tuple[str, float], ...]
    """(item, mean share of its shifts the item was near the guard and charged), by name."""


@dataclass(frozen=True, slots=True)
class DeviationLine:
    deviation_id: int
    occurred_at: datetime
    post: str
    guard: str
    rule: str
    severity: str
    detail: str
    status: str
    owner: str
    due_at: datetime
    resolved_at: datetime | None
    verified_at: datetime | None
    escalation_level: int

    @property
    def on_time(self) -> bool | None:
        """Resolved by the due time (None while unresolved)."""
        return None if self.resolved_at is None else self.resolved_at <= self.due_at


@dataclass(frozen=True, slots=True)
class Rectification:
    """How the month's deviations were rectified (withdrawn ones are left out)."""

    opened: int
    resolved_on_time: int
    resolved_late: int
    verified: int
    unresolved: int
    overdue_now: int
    median_hours_to_resolve: float | None


@dataclass(frozen=True, slots=True)
class InspectionLine:
    inspected_at: datetime
    post: str
    result: str
    notes: str


@dataclass(frozen=True, slots=True)
class ComplaintLine:
    complaint_id: int
    received_at: datetime
    channel: str
    post: str
    status: str
    description: str
    resolution: str


@dataclass(frozen=True, slots=True)
class Emergencies:
    """SOS presses at the site's gateways and how fast they were acknowledged."""

    sos_events: int
    acknowledged: int
    unacknowledged: int
    untracked: int
    median_response_s: float | None
    max_response_s: float | None


@dataclass(frozen=True, slots=True)
class SiteMonthReport:
    site_id: int
    site_name: str
    timezone: str
    month: Month
    start: datetime
    end: datetime
    generated_at: datetime
    shifts: int
    mean_score: float | None
    days: tuple[DayScore, ...]
    posts: tuple[PostLine, ...]
    deviations: tuple[DeviationLine, ...]
    rectification: Rectification
    inspections: tuple[InspectionLine, ...]
    complaints: tuple[ComplaintLine, ...]
    emergencies: Emergencies
    surveys: SurveySummary
    chain_length: int
    chain_head: str
    """Hex SHA-256 of the last entry of the site's chain when the report was made."""

    @property
    def rounds_expected(self) -> int:
        return sum(p.rounds_expected for p in self.posts)

    @property
    def rounds_completed(self) -> int:
        return sum(p.rounds_completed for p in self.posts)

    @property
    def deviations_by_severity(self) -> dict[str, int]:
        counts = {"critical": 0, "major": 0, "minor": 0}
        for d in self.deviations:
            counts[d.severity] = counts.get(d.severity, 0) + 1
        return counts


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _posts(names: Mapping[int, str], scores: Sequence[store.CurrentScore]) -> tuple[PostLine, ...]:
    by_post: dict[int, list[store.CurrentScore]] = defaultdict(list)
    for s in scores:
        by_post[s.post_id].append(s)
    lines = []
    for post_id, name in sorted(names.items(), key=lambda kv: (kv[1], kv[0])):
        rows = by_post.get(post_id, [])
        items: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            for item, share in r.equipment_readiness.items():
                items[item].append(share)
        lines.append(
            PostLine(
                post_id=post_id,
                name=name,
                shifts=len(rows),
                mean_score=_mean([r.score for r in rows]),
                rounds_expected=sum(r.rounds_expected for r in rows),
                rounds_completed=sum(r.rounds_completed for r in rows),
                rounds_partial=sum(r.rounds_partial for r in rows),
                rounds_missed=sum(r.rounds_missed for r in rows),
                checkpoints_on_time=sum(r.checkpoints_on_time for r in rows),
                checkpoints_late=sum(r.checkpoints_late for r in rows),
                checkpoints_missed=sum(r.checkpoints_missed for r in rows),
                equipment=tuple(
                    (item, round(sum(v) / len(v), 4)) for item, v in sorted(items.items())
                ),
            )
        )
    return tuple(lines)


def _days(
    month: Month, zone_name: str, scores: Sequence[store.CurrentScore]
) -> tuple[DayScore, ...]:
    zone = site_zone(zone_name)
    by_day: dict[date, list[float]] = defaultdict(list)
    for s in scores:
        by_day[s.start.astimezone(zone).date()].append(s.score)
    return tuple(DayScore(d, len(by_day[d]), _mean(by_day[d])) for d in month.days())


def _deviations(
    session: Session, site_id: int, start: datetime, end: datetime, posts: Mapping[int, str]
) -> tuple[DeviationLine, ...]:
    owner = aliased(User)
    rows = session.execute(
        select(Deviation, RectificationItem, owner.username, Guard.name)
        .join(RectificationItem, RectificationItem.deviation_id == Deviation.id)
        .outerjoin(owner, owner.id == RectificationItem.owner_id)
        .outerjoin(Guard, Guard.id == Deviation.guard_id)
        .where(
            Deviation.site_id == site_id,
            Deviation.withdrawn_at.is_(None),
            Deviation.occurred_at >= start,
            Deviation.occurred_at < end,
        )
        .order_by(Deviation.occurred_at, Deviation.id)
    ).all()
    return tuple(
        DeviationLine(
            deviation_id=d.id,
            occurred_at=d.occurred_at,
            post=posts.get(d.post_id, "") if d.post_id is not None else "(site)",
            guard=guard_name or "",
            rule=d.rule,
            severity=d.severity,
            detail=d.detail,
            status=item.status,
            owner=owner_name or "(unassigned)",
            due_at=item.due_at,
            resolved_at=item.resolved_at,
            verified_at=item.verified_at,
            escalation_level=item.escalation_level,
        )
        for d, item, owner_name, guard_name in rows
    )


def _rectification(lines: Sequence[DeviationLine], now: datetime) -> Rectification:
    resolved = [d for d in lines if d.resolved_at is not None]
    hours = [
        (d.resolved_at - d.occurred_at).total_seconds() / 3600
        for d in resolved
        if d.resolved_at is not None
    ]
    unresolved = [d for d in lines if d.resolved_at is None]
    return Rectification(
        opened=len(lines),
        resolved_on_time=sum(1 for d in resolved if d.on_time),
        resolved_late=sum(1 for d in resolved if not d.on_time),
        verified=sum(1 for d in lines if d.verified_at is not None),
        unresolved=len(unresolved),
        overdue_now=sum(1 for d in unresolved if d.due_at < now),
        median_hours_to_resolve=round(median(hours), 1) if hours else None,
    )


def _emergencies(session: Session, site_id: int, start: datetime, end: datetime) -> Emergencies:
    rows = session.execute(
        select(Event.id, Event.device_time)
        .join(Gateway, Gateway.id == Event.gateway_pk)
        .where(
            Gateway.site_id == site_id,
            Event.kind == Kind.SOS.value,
            Event.device_time >= start,
            Event.device_time < end,
        )
        .order_by(Event.device_time, Event.id)
    ).all()
    pressed = {r.id: r.device_time for r in rows}
    acks: dict[int, datetime | None] = {}
    for source in store.default_hooks().sos_sources:
        acks.update(source.acknowledgements(session, list(pressed)))
    responses = [
        max(0.0, (ack - pressed[event_id]).total_seconds())
        for event_id, ack in acks.items()
        if ack is not None and event_id in pressed
    ]
    tracked = [e for e in pressed if e in acks]
    return Emergencies(
        sos_events=len(pressed),
        acknowledged=len(responses),
        unacknowledged=sum(1 for e in tracked if acks[e] is None),
        untracked=len(pressed) - len(tracked),
        median_response_s=round(median(responses), 1) if responses else None,
        max_response_s=round(max(responses), 1) if responses else None,
    )


def collect(
    session: Session,
    *,
    site_id: int,
    month: Month,
    now: datetime,
    scores_of: Callable[..., list[store.CurrentScore]] = store.current_scores,
) -> SiteMonthReport:
    """Read everything the report of ``site_id`` for ``month`` shows."""
    site = session.get(Site, site_id)
    if site is None:
        raise ReportError(f"no site {site_id}")
    start, end = month.bounds(site_zone(site.timezone))
    posts = {
        post_id: name
        for post_id, name in session.execute(
            select(Post.id, Post.name).where(Post.site_id == site_id)
        )
    }
    scores = scores_of(session, site_id=site_id, start=start, end=end)
    deviations = _deviations(session, site_id, start, end, posts)
    inspections = session.execute(
        select(Inspection)
        .where(
            Inspection.site_id == site_id,
            Inspection.inspected_at >= start,
            Inspection.inspected_at < end,
        )
        .order_by(Inspection.inspected_at, Inspection.id)
    ).scalars()
    complaints = session.execute(
        select(Complaint)
        .where(
            Complaint.site_id == site_id,
            Complaint.received_at >= start,
            Complaint.received_at < end,
        )
        .order_by(Complaint.received_at, Complaint.id)
    ).scalars()
    head = chain.read_head(session, site_id)
    return SiteMonthReport(
        site_id=site.id,
        site_name=site.name,
        timezone=site.timezone,
        month=month,
        start=start,
        end=end,
        generated_at=now,
        shifts=len(scores),
        mean_score=_mean([s.score for s in scores]),
        days=_days(month, site.timezone, scores),
        posts=_posts(posts, scores),
        deviations=deviations,
        rectification=_rectification(deviations, now),
        inspections=tuple(
            InspectionLine(i.inspected_at, posts.get(i.post_id, ""), i.result, i.notes)
            for i in inspections
        ),
        complaints=tuple(
            ComplaintLine(
                c.id,
                c.received_at,
                c.channel,
                posts.get(c.post_id, "") if c.post_id is not None else "(site)",
                c.status,
                c.description,
                c.resolution,
            )
            for c in complaints
        ),
        emergencies=_emergencies(session, site_id, start, end),
        surveys=site_summary(session, site_id, start, end),
        chain_length=head.length,
        chain_head=head.hash.hex(),
    )
