"""The I/O side of scoring: targets and shifts from the store, versioned scores back.

Reading: a shift's evidence is the accepted events of its wearable (visits,
heartbeats, SOS) from ``EVIDENCE_MARGIN_S`` before to after the shift, plus the
wearable's presence adverts heard by a gateway of the shift's site.

Writing (:func:`score_shift_row`): the shift row is locked (``FOR UPDATE`` on
PostgreSQL, so two API processes rescoring the same shift take turns), the
engine scores it, and

- while the shift is live, its current (not final) row is updated in place;
- once the shift is over, a result equal to the current one (same digest)
  changes nothing (idempotent); a different one (late events after an edge
  outage) adds version n + 1 and clears ``current`` on the old row, which
  stays as history.

The hooks (workflow deductions, deviation sink, score sink, SOS responses) run
in the same transaction; InfluxDB lines go through the sink's outbox.
"""

from __future__ import annotations

import importlib
import logging
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from cloud_api.compliance import explain
from cloud_api.compliance.engine import ShiftInput, score_shift
from cloud_api.compliance.rules import OtherShift
from cloud_api.compliance.shifts import Sample, Shift, SosCase, Visit
from cloud_api.compliance.targets import (
    ActiveWindow,
    EquipmentRequirement,
    PatrolPlan,
    PostTargets,
    Schedule,
    ScheduleKind,
    Weights,
)
from cloud_api.compliance.types import (
    BreachSink,
    Category,
    Deduction,
    DeductionSource,
    ScoreSink,
    ShiftRef,
    ShiftScore,
    SosResponseSource,
)
from cloud_api.models import (
    AdvertObservation,
    ComplianceContractWeights,
    CompliancePlan,
    ComplianceScore,
    ComplianceShift,
    ComplianceTargets,
    Device,
    DeviceKind,
    Event,
    Gateway,
    Guard,
    Post,
    Site,
)
from patrol_protocol.frames import HEARTBEAT_IN_ZONE, Kind, SosTrigger

log = logging.getLogger(__name__)

EVIDENCE_MARGIN_S = 2 * 3600  # events this long before/after a shift tell its first/last event
RESCORE_HORIZON_S = 14 * 24 * 3600  # late events older than this no longer change scores
VISIT_KINDS = (int(Kind.NFC_SCAN), int(Kind.BLE_VISIT))
EVIDENCE_KINDS = (*VISIT_KINDS, int(Kind.HEARTBEAT), int(Kind.SOS))


class ComplianceError(ValueError):
    """Targets, plans or shifts that cannot be scored (bad input, unknown ids)."""


# --- hooks ---------------------------------------------------------------------


@dataclass
class Hooks:
    deduction_sources: list[DeductionSource] = field(default_factory=list)
    breach_sinks: list[BreachSink] = field(default_factory=list)
    score_sinks: list[ScoreSink] = field(default_factory=list)
    sos_sources: list[SosResponseSource] = field(default_factory=list)


_registered = Hooks()
_defaults_loaded = False


def register_deduction_source(source: DeductionSource) -> None:
    _registered.deduction_sources.append(source)


def register_breach_sink(sink: BreachSink) -> None:
    _registered.breach_sinks.append(sink)


def register_score_sink(sink: ScoreSink) -> None:
    _registered.score_sinks.append(sink)


def register_sos_source(source: SosResponseSource) -> None:
    _registered.sos_sources.append(source)


def default_hooks() -> Hooks:
    """The registered hooks, plus the workflow's own when its module is present.

    The workflow module must not import this one (a cycle), so its hooks are
    picked up here by name, once.
    """
    global _defaults_loaded
    if not _defaults_loaded:
        _defaults_loaded = True
        try:
            workflow = importlib.import_module("cloud_api.compliance.workflow")
        except ImportError:
            workflow = None
        if workflow is not None:
            for name, register in (
                ("WorkflowDeductions", register_deduction_source),
                ("DeviationSink", register_breach_sink),
                ("ScoreDeviationSink", register_score_sink),
            ):
                factory = getattr(workflow, name, None)
                if factory is not None:
                    register(factory())
    return _registered


# --- targets -----------------------------------------------------------------------


def _hhmm(text: str) -> time:
    try:
        return time.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise ComplianceError(f"not a local time HH:MM: {text!r}") from exc


def plan_from_row(row: CompliancePlan) -> PatrolPlan:
    """The engine's plan from its row (raises ComplianceError for bad stored values)."""
    try:
        return PatrolPlan(
            plan_id=row.id,
            name=row.name,
            checkpoints=tuple(int(c) for c in row.checkpoints),
            ordered=row.ordered,
            schedule=Schedule(
                ScheduleKind(row.schedule_kind),
                interval_s=row.interval_s,
                fixed_times=tuple(_hhmm(t) for t in row.fixed_times),
                rounds_per_window=row.rounds_per_window,
            ),
            round_duration_s=row.round_duration_s,
            grace_s=row.grace_s,
            windows=tuple(
                ActiveWindow(frozenset(w["weekdays"]), _hhmm(w["start"]), _hhmm(w["end"]))
                for w in row.windows
            ),
            min_dwell_s=row.min_dwell_s,
            walk_s={frozenset((int(a), int(b))): int(s) for a, b, s in row.walk_s},
            default_walk_s=row.default_walk_s,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ComplianceError(f"plan {row.id} ({row.name!r}): {exc}") from exc


def weights_from(raw: dict[str, Any] | None) -> dict[Category, float]:
    if not raw:
        return {}
    try:
        return {Category(k): float(v) for k, v in raw.items()}
    except ValueError as exc:
        raise ComplianceError(f"bad weights {raw!r}: {exc}") from exc


def targets_for_post(session: Session, post_id: int, *, at: datetime | None = None) -> PostTargets:
    """A post's targets: its row (or defaults), live plans, customer or post weights."""
    post = session.get(Post, post_id)
    if post is None:
        raise ComplianceError(f"no post {post_id}")
    site = session.get(Site, post.site_id)
    assert site is not None
    row = session.get(ComplianceTargets, post_id)
    plans_q = select(CompliancePlan).where(CompliancePlan.post_id == post_id)
    if at is not None:
        plans_q = plans_q.where(
            or_(CompliancePlan.retired_at.is_(None), CompliancePlan.retired_at > at)
        )
    else:
        plans_q = plans_q.where(CompliancePlan.retired_at.is_(None))
    plans = tuple(plan_from_row(p) for p in session.scalars(plans_q.order_by(CompliancePlan.id)))
    weights: dict[Category, float] = {}
    customer_id = getattr(site, "customer_id", None)
    if customer_id is not None:
        contract = session.get(ComplianceContractWeights, customer_id)
        if contract is not None:
            weights.update(weights_from(contract.weights))
    if row is not None:
        weights.update(weights_from(row.weights))
    try:
        return PostTargets(
            post_id=post_id,
            site_id=post.site_id,
            timezone=site.timezone,
            plans=plans,
            equipment=tuple(
                EquipmentRequirement(
                    str(e["name"]),
                    frozenset(int(t) for t in e["tag_ids"]),
                    int(e.get("min_battery_pct", 20)),
                )
                for e in (row.equipment if row is not None else [])
            ),
            **(
                {
                    "max_absence_s": row.max_absence_s,
                    "max_inactivity_s": row.max_inactivity_s,
                    "sos_ack_target_s": row.sos_ack_target_s,
                    "rectification_target_h": row.rectification_target_h,
                }
                if row is not None
                else {}
            ),
            weights=Weights(weights),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ComplianceError(f"targets of post {post_id}: {exc}") from exc


# --- shifts and evidence -------------------------------------------------------------


def shift_value(row: ComplianceShift) -> Shift:
    return Shift(row.id, row.guard_id, row.post_id, row.device_id, row.start_at, row.end_at)


def shift_ref(row: ComplianceShift) -> ShiftRef:
    return ShiftRef(row.id, row.site_id, row.post_id, row.guard_id, row.start_at, row.end_at)


def _visits_and_samples(
    session: Session, device_id: int, start: datetime, end: datetime
) -> tuple[list[Visit], list[Sample], list[SosCase]]:
    rows = session.execute(
        select(
            Event.id,
            Event.kind,
            Event.device_time,
            Event.checkpoint_id,
            Event.assurance,
            Event.flags,
            Event.body,
        ).where(
            Event.device_id == device_id,
            Event.kind.in_(EVIDENCE_KINDS),
            Event.device_time >= start,
            Event.device_time < end,
        )
    )
    return evidence_from_rows(device_id, rows)


def evidence_from_rows(
    device_id: int, rows: Any
) -> tuple[list[Visit], list[Sample], list[SosCase]]:
    """Turn (id, kind, device_time, checkpoint_id, assurance, flags, body) rows into values."""
    visits: list[Visit] = []
    samples: list[Sample] = []
    sos: list[SosCase] = []
    nfc, ble, hb = int(Kind.NFC_SCAN), int(Kind.BLE_VISIT), int(Kind.HEARTBEAT)
    test = int(SosTrigger.TEST)
    for row in rows:
        event_id, kind, at, checkpoint_id, assurance, flags, body = row[-7:]
        if kind in (nfc, ble):
            if checkpoint_id is None:
                continue  # an unknown tag or beacon proves no checkpoint visit
            visits.append(
                Visit(
                    event_id,
                    device_id,
                    checkpoint_id,
                    at,
                    dwell_s=int(body.get("dwell_s", 0)) if kind == ble else None,
                    assurance=assurance,
                    flags=tuple(flags or ()),
                )
            )
        elif kind == hb:
            items = tuple((int(i["tag_id"]), int(i["battery_pct"])) for i in body.get("items", ()))
            in_zone = bool(int(body.get("status", 0)) & HEARTBEAT_IN_ZONE)
            samples.append(Sample(event_id, device_id, at, in_zone, items))
        else:
            sos.append(SosCase(event_id, device_id, at, test=int(body.get("trigger", 0)) == test))
    return visits, samples, sos


def _presence_adverts(
    session: Session, site_id: int, device_id: int, start: datetime, end: datetime
) -> list[Sample]:
    rows = session.execute(
        select(AdvertObservation.id, AdvertObservation.received_at)
        .join(Device, Device.id == AdvertObservation.device_pk)
        .join(Gateway, Gateway.id == AdvertObservation.gateway_pk)
        .where(
            Device.kind == DeviceKind.PRESENCE.value,
            Device.device_id == device_id,
            Gateway.site_id == site_id,
            AdvertObservation.received_at >= start,
            AdvertObservation.received_at < end,
        )
    )
    # Advert ids live in another table: negative ids keep them apart from event ids.
    return [Sample(-adv_id, device_id, at, True, advert=True) for adv_id, at in rows]


def _others(session: Session, row: ComplianceShift) -> list[OtherShift]:
    overlapping = session.scalars(
        select(ComplianceShift).where(
            ComplianceShift.guard_id == row.guard_id,
            ComplianceShift.id != row.id,
            ComplianceShift.post_id != row.post_id,
            ComplianceShift.cancelled_at.is_(None),
            ComplianceShift.start_at < row.end_at,
            ComplianceShift.end_at > row.start_at,
        )
    ).all()
    out = []
    for other in overlapping:
        start, end = max(row.start_at, other.start_at), min(row.end_at, other.end_at)
        evidence = session.scalars(
            select(Event.id)
            .where(
                Event.device_id == other.device_id,
                Event.kind.in_(EVIDENCE_KINDS),
                Event.device_time >= start,
                Event.device_time < end,
            )
            .order_by(Event.device_time, Event.id)
            .limit(1)
        ).all()
        out.append(OtherShift(shift_value(other), tuple(evidence)))
    return out


def load_input(
    session: Session, row: ComplianceShift, hooks: Hooks, *, targets: PostTargets | None = None
) -> ShiftInput:
    """Everything the engine needs for one shift, read from the store."""
    margin = timedelta(seconds=EVIDENCE_MARGIN_S)
    start, end = row.start_at - margin, row.end_at + margin
    visits, samples, sos = _visits_and_samples(session, row.device_id, start, end)
    samples += _presence_adverts(session, row.site_id, row.device_id, start, end)
    if sos and hooks.sos_sources:
        acks: dict[int, datetime | None] = {}
        for source in hooks.sos_sources:
            acks.update(source.acknowledgements(session, [s.event_id for s in sos]))
        sos = [
            SosCase(s.event_id, s.device_id, s.at, s.test, acks[s.event_id], True)
            if s.event_id in acks
            else s
            for s in sos
        ]
    ref = shift_ref(row)
    extra: list[Deduction] = []
    for dsource in hooks.deduction_sources:
        extra.extend(dsource.deductions_for(session, ref))
    return ShiftInput(
        shift=shift_value(row),
        targets=targets
        if targets is not None
        else targets_for_post(session, row.post_id, at=row.start_at),
        visits=visits,
        samples=samples,
        sos=sos,
        others=_others(session, row),
        extra=extra,
    )


# --- scores -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredScore:
    row: ComplianceScore
    score: ShiftScore
    result: dict[str, Any]
    changed: bool  # False: the same result was already stored (idempotent recompute)


def _lock_shift(session: Session, shift_id: int) -> ComplianceShift:
    row = session.scalars(
        select(ComplianceShift).where(ComplianceShift.id == shift_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise ComplianceError(f"no shift {shift_id}")
    return row


def score_shift_row(
    session: Session,
    shift_id: int,
    *,
    now: datetime,
    hooks: Hooks | None = None,
    sink: bool = False,
    targets: PostTargets | None = None,
) -> StoredScore:
    """(Re)compute a shift's score at ``now`` and store it (see the module doc)."""
    hooks = default_hooks() if hooks is None else hooks
    row = _lock_shift(session, shift_id)
    data = load_input(session, row, hooks, targets=targets)
    current = session.scalars(
        select(ComplianceScore).where(
            ComplianceScore.shift_id == shift_id, ComplianceScore.current.is_(True)
        )
    ).one_or_none()
    return _store_result(
        session,
        row,
        data,
        score_shift(data, as_of=now),
        now=now,
        hooks=hooks,
        sink=sink,
        current=current,
    )


def _store_result(
    session: Session,
    row: ComplianceShift,
    data: ShiftInput,
    score: ShiftScore,
    *,
    now: datetime,
    hooks: Hooks,
    sink: bool,
    current: ComplianceScore | None,
) -> StoredScore:
    """Keep ``score`` as the shift's current version unless it equals the stored one."""
    result = explain.score_dict(score)
    result["components"] = explain.components(score, dict(data.targets.weights.budget))
    digest = explain.digest({k: v for k, v in result.items() if k != "as_of"})
    final = score.as_of is None
    if current is not None and current.digest == digest and current.final == final:
        return StoredScore(current, score, result, changed=False)
    values = _columns(score, result, digest, final, now)
    if current is not None and not current.final:
        for key, value in values.items():
            setattr(current, key, value)
        stored = current
    else:
        version = 1
        if current is not None:
            version = current.version + 1
            session.execute(
                update(ComplianceScore)
                .where(ComplianceScore.id == current.id)
                .values(current=False)
            )
        stored = ComplianceScore(shift_id=row.id, version=version, current=True, **values)
        session.add(stored)
    session.flush()
    ref = shift_ref(row)
    for bsink in hooks.breach_sinks:
        bsink.breaches_found(session, ref, score.breaches)
    for ssink in hooks.score_sinks:
        ssink.score_found(session, ref, score)
    if sink:
        _enqueue_lines(session, row, data, score, result, now)
    return StoredScore(stored, score, result, changed=True)


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What :func:`score_window` did."""

    shifts: int
    rows_read: int
    changed: int
    scores: dict[int, float]  # shift id -> score


EVIDENCE_COLUMNS = (
    Event.id,
    Event.kind,
    Event.device_time,
    Event.checkpoint_id,
    Event.assurance,
    Event.flags,
    Event.body,
)
DEVICES_PER_QUERY = 64  # wearables whose evidence one streamed query reads (bounded memory)


def score_window(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    site_id: int | None = None,
    hooks: Hooks | None = None,
    persist: bool = True,
    sink: bool = False,
) -> WindowResult:
    """Score every shift starting in [start, end) in bulk (a month, a company).

    One streamed query per ``DEVICES_PER_QUERY`` wearables reads their
    evidence in (device, seq) order; each wearable's events are turned into
    values once and every shift of that wearable takes its slice. Targets are
    read once per post (plans live at ``start``). The result is the same as
    :func:`score_shift_row` for each shift (tested), only cheaper.
    """
    hooks = default_hooks() if hooks is None else hooks
    q = select(ComplianceShift).where(
        ComplianceShift.cancelled_at.is_(None),
        ComplianceShift.start_at >= start,
        ComplianceShift.start_at < end,
        ComplianceShift.start_at <= now,
    )
    if site_id is not None:
        q = q.where(ComplianceShift.site_id == site_id)
    shifts = session.scalars(q.order_by(ComplianceShift.id)).all()
    if not shifts:
        return WindowResult(0, 0, 0, {})
    by_device: dict[int, list[ComplianceShift]] = {}
    for sh in shifts:
        by_device.setdefault(sh.device_id, []).append(sh)
    targets: dict[int, PostTargets] = {}
    for post_id in sorted({sh.post_id for sh in shifts}):
        targets[post_id] = targets_for_post(session, post_id, at=start)
    margin = timedelta(seconds=EVIDENCE_MARGIN_S)
    lo = min(sh.start_at for sh in shifts) - margin
    hi = max(sh.end_at for sh in shifts) + margin
    current: dict[int, ComplianceScore] = {}
    if persist:
        ids = [sh.id for sh in shifts]
        for i in range(0, len(ids), 500):
            for sc in session.scalars(
                select(ComplianceScore).where(
                    ComplianceScore.shift_id.in_(ids[i : i + 500]),
                    ComplianceScore.current.is_(True),
                )
            ):
                current[sc.shift_id] = sc
    # The same guard planned at two posts at once: those shifts read the other
    # wearable's evidence with the one-shift query (rare).
    guards: dict[int, list[ComplianceShift]] = {}
    for sh in shifts:
        guards.setdefault(sh.guard_id, []).append(sh)
    with_others = {
        sh.id
        for group in guards.values()
        for sh in group
        for other in group
        if other.post_id != sh.post_id and other.start_at < sh.end_at and other.end_at > sh.start_at
    }
    devices = sorted(by_device)
    rows_read = changed = 0
    scores: dict[int, float] = {}
    for i in range(0, len(devices), DEVICES_PER_QUERY):
        chunk = devices[i : i + DEVICES_PER_QUERY]
        adverts: dict[int, list[tuple[int, datetime, int]]] = {}  # device -> (id, at, site)
        for adv_id, dev, at, gw_site in session.execute(
            select(
                AdvertObservation.id,
                Device.device_id,
                AdvertObservation.received_at,
                Gateway.site_id,
            )
            .join(Device, Device.id == AdvertObservation.device_pk)
            .join(Gateway, Gateway.id == AdvertObservation.gateway_pk)
            .where(
                Device.kind == DeviceKind.PRESENCE.value,
                Device.device_id.in_(chunk),
                AdvertObservation.received_at >= lo,
                AdvertObservation.received_at < hi,
            )
        ):
            adverts.setdefault(dev, []).append((adv_id, at, gw_site))
        # Core rows straight from the connection: no ORM processing per row.
        stream = session.connection().execute(
            select(Event.device_id, *EVIDENCE_COLUMNS)
            .where(
                Event.device_id.in_(chunk),
                Event.kind.in_(EVIDENCE_KINDS),
                Event.device_time >= lo,
                Event.device_time < hi,
            )
            .order_by(Event.device_id, Event.seq)
            .execution_options(yield_per=5000)
        )
        for device, group in groupby(stream, key=itemgetter(0)):
            pending = list(group)
            rows_read += len(pending)
            changed += _score_device(
                session,
                device,
                pending,
                adverts,
                by_device[device],
                targets,
                current,
                with_others,
                scores,
                now=now,
                hooks=hooks,
                persist=persist,
                sink=sink,
            )
        for dev in chunk:  # wearables without any evidence still get their (empty) scores
            if by_device[dev][0].id not in scores:
                changed += _score_device(
                    session,
                    dev,
                    [],
                    adverts,
                    by_device[dev],
                    targets,
                    current,
                    with_others,
                    scores,
                    now=now,
                    hooks=hooks,
                    persist=persist,
                    sink=sink,
                )
    return WindowResult(len(shifts), rows_read, changed, scores)


def _score_device(
    session: Session,
    device_id: int,
    rows: list[Any],
    adverts: dict[int, list[tuple[int, datetime, int]]],
    shifts: list[ComplianceShift],
    targets: dict[int, PostTargets],
    current: dict[int, ComplianceScore],
    with_others: set[int],
    scores: dict[int, float],
    *,
    now: datetime,
    hooks: Hooks,
    persist: bool,
    sink: bool,
) -> int:
    """Score every shift of one wearable from its events; returns how many changed."""
    visits, samples, sos = evidence_from_rows(device_id, rows)
    visits.sort(key=lambda v: v.at)
    samples.sort(key=lambda v: v.at)
    v_times = [v.at for v in visits]
    s_times = [v.at for v in samples]
    margin = timedelta(seconds=EVIDENCE_MARGIN_S)
    changed = 0
    for sh in shifts:
        lo, hi = sh.start_at - margin, sh.end_at + margin
        # Advert ids live in another table: negative ids keep them apart from event ids.
        own_adverts = [
            Sample(-adv_id, device_id, at, True, advert=True)
            for adv_id, at, site in adverts.get(device_id, ())
            if site == sh.site_id and lo <= at < hi
        ]
        sh_sos = [c for c in sos if lo <= c.at < hi]
        if sh_sos and hooks.sos_sources:
            acks: dict[int, datetime | None] = {}
            for source in hooks.sos_sources:
                acks.update(source.acknowledgements(session, [c.event_id for c in sh_sos]))
            sh_sos = [
                SosCase(c.event_id, c.device_id, c.at, c.test, acks[c.event_id], True)
                if c.event_id in acks
                else c
                for c in sh_sos
            ]
        ref = shift_ref(sh)
        extra: list[Deduction] = []
        for dsource in hooks.deduction_sources:
            extra.extend(dsource.deductions_for(session, ref))
        data = ShiftInput(
            shift=shift_value(sh),
            targets=targets[sh.post_id],
            visits=visits[bisect_left(v_times, lo) : bisect_left(v_times, hi)],
            samples=samples[bisect_left(s_times, lo) : bisect_left(s_times, hi)] + own_adverts,
            sos=sh_sos,
            others=_others(session, sh) if sh.id in with_others else (),
            extra=extra,
        )
        score = score_shift(data, as_of=now)
        scores[sh.id] = score.score
        if persist:
            stored = _store_result(
                session,
                sh,
                data,
                score,
                now=now,
                hooks=hooks,
                sink=sink,
                current=current.get(sh.id),
            )
            changed += stored.changed
    return changed


def _columns(
    score: ShiftScore, result: dict[str, Any], digest: str, final: bool, now: datetime
) -> dict[str, Any]:
    return {
        "final": final,
        "as_of": score.as_of,
        "computed_at": now,
        "digest": digest,
        "score": score.score,
        "rounds_expected": score.rounds_expected,
        "rounds_completed": result["rounds_completed"],
        "rounds_partial": result["rounds_partial"],
        "rounds_missed": result["rounds_missed"],
        "checkpoints_on_time": score.checkpoints_on_time,
        "checkpoints_late": score.checkpoints_late,
        "checkpoints_missed": score.checkpoints_missed,
        "order_violations": score.order_violations,
        "flagged_events": score.flagged_events,
        "sos_events": score.sos_events,
        "breaches": len(score.breaches),
        "presence_share": score.presence_share,
        "equipment_readiness": result["equipment_readiness"],
        "first_event_at": score.first_event_at,
        "last_event_at": score.last_event_at,
        "result": result,
    }


_OUTCOME = {"completed": "complete", "partial": "partial", "missed": "missed"}


def _enqueue_lines(
    session: Session,
    row: ComplianceShift,
    data: ShiftInput,
    score: ShiftScore,
    result: dict[str, Any],
    now: datetime,
) -> None:
    """The score and its rounds as InfluxDB lines, into the outbox in this transaction."""
    from cloud_api.sink import compliance_lines as cl
    from cloud_api.sink.outbox import enqueue

    last = max(
        (s for s in data.samples if not s.advert and s.at < (score.as_of or row.end_at)),
        key=lambda s: (s.at, s.event_id),
        default=None,
    )
    missing = [
        req
        for req in data.targets.equipment
        if last is None
        or not any(t in req.tag_ids and b >= req.min_battery_pct for t, b in last.equipment)
    ]
    lines = [
        cl.compliance_line(
            site_id=row.site_id,
            post_id=row.post_id,
            guard_id=row.guard_id,
            period="shift",
            period_start=row.start_at,
            key_id=row.id,
            score=score.score,
            components=result["components"],
            deductions=len(score.deductions),
            deduction_points=round(sum(d.points for d in score.deductions), 4),
            rounds_expected=score.rounds_expected,
            rounds_completed=result["rounds_completed"],
            rounds_partial=result["rounds_partial"],
            rounds_missed=result["rounds_missed"],
            checkpoints_on_time=score.checkpoints_on_time,
            checkpoints_late=score.checkpoints_late,
            checkpoints_missed=score.checkpoints_missed,
            order_violations=score.order_violations,
            flagged_events=score.flagged_events,
            equipment_missing=len(missing),
            equipment_missing_ids=tuple(
                f"{min(req.tag_ids):08x}" for req in sorted(missing, key=lambda r: r.name)
            ),
            on_duty=score.as_of is not None,
        )
    ]
    for r in score.rounds:
        lines.append(
            cl.round_line(
                site_id=row.site_id,
                post_id=row.post_id,
                guard_id=row.guard_id,
                shift_id=row.id,
                round_index=r.index + 1000 * _plan_rank(data, r.plan_id),
                window_start=r.start,
                outcome=_OUTCOME[r.status],
                checkpoints_expected=len(r.on_time) + len(r.late) + len(r.missed),
                checkpoints_on_time=len(r.on_time),
                checkpoints_late=len(r.late),
                checkpoints_missed=len(r.missed),
                order_violations=r.order_violations,
                missed_ids=r.missed,
                late_ids=r.late,
            )
        )
    enqueue(session, lines="\n".join(lines), n_points=len(lines), now=now)


def _plan_rank(data: ShiftInput, plan_id: int) -> int:
    """A plan's position among the post's plans (round indexes stay unique per shift)."""
    ids = sorted(p.plan_id for p in data.targets.plans)
    return ids.index(plan_id)


# --- what needs (re)scoring -------------------------------------------------------------------


def due_for_scoring(session: Session, *, now: datetime) -> list[int]:
    """Shifts whose score is missing or older than evidence that arrived since.

    Live shifts (started, not ended) are always due; finished shifts within
    ``RESCORE_HORIZON_S`` are due when they have no final score, or when an
    event of their wearable inside the shift (plus margin) was ingested after
    the current score was computed (late events after an edge outage).
    """
    horizon = now - timedelta(seconds=RESCORE_HORIZON_S)
    margin = timedelta(seconds=EVIDENCE_MARGIN_S)
    shifts = session.execute(
        select(ComplianceShift.id, ComplianceScore.final, ComplianceScore.computed_at)
        .outerjoin(
            ComplianceScore,
            and_(ComplianceScore.shift_id == ComplianceShift.id, ComplianceScore.current.is_(True)),
        )
        .where(
            ComplianceShift.cancelled_at.is_(None),
            ComplianceShift.start_at <= now,
            ComplianceShift.end_at >= horizon,
        )
        .order_by(ComplianceShift.id)
    ).all()
    due = []
    for shift_id, final, computed_at in shifts:
        if computed_at is None or not final:
            due.append(shift_id)
            continue
        row = session.get(ComplianceShift, shift_id)
        assert row is not None
        newer = session.scalar(
            select(func.count())
            .select_from(Event)
            .where(
                Event.device_id == row.device_id,
                Event.device_time >= row.start_at - margin,
                Event.device_time < row.end_at + margin,
                Event.ingested_at > computed_at,
            )
        )
        if newer:
            due.append(shift_id)
    return due


@dataclass(frozen=True, slots=True)
class CurrentScore:
    """A shift with its current score, for rankings and reports."""

    shift_id: int
    site_id: int
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
    checkpoints_on_time: int
    checkpoints_late: int
    checkpoints_missed: int
    presence_share: float
    equipment_readiness: dict[str, float]
    breaches: int
    sos_events: int


def current_scores(
    session: Session, *, site_id: int, start: datetime, end: datetime
) -> list[CurrentScore]:
    """Current scores of a site's shifts starting in [start, end), by start then id."""
    rows = session.execute(
        select(ComplianceShift, ComplianceScore)
        .join(ComplianceScore, ComplianceScore.shift_id == ComplianceShift.id)
        .where(
            ComplianceShift.site_id == site_id,
            ComplianceShift.cancelled_at.is_(None),
            ComplianceShift.start_at >= start,
            ComplianceShift.start_at < end,
            ComplianceScore.current.is_(True),
        )
        .order_by(ComplianceShift.start_at, ComplianceShift.id)
    ).all()
    return [
        CurrentScore(
            shift_id=sh.id,
            site_id=sh.site_id,
            post_id=sh.post_id,
            guard_id=sh.guard_id,
            start=sh.start_at,
            end=sh.end_at,
            version=sc.version,
            final=sc.final,
            score=sc.score,
            rounds_expected=sc.rounds_expected,
            rounds_completed=sc.rounds_completed,
            rounds_partial=sc.rounds_partial,
            rounds_missed=sc.rounds_missed,
            checkpoints_on_time=sc.checkpoints_on_time,
            checkpoints_late=sc.checkpoints_late,
            checkpoints_missed=sc.checkpoints_missed,
            presence_share=sc.presence_share,
            equipment_readiness={k: float(v) for k, v in sc.equipment_readiness.items()},
            breaches=sc.breaches,
            sos_events=sc.sos_events,
        )
        for sh, sc in rows
    ]


def create_shift(
    session: Session,
    *,
    post_id: int,
    guard_id: int,
    device_id: int,
    start: datetime,
    end: datetime,
) -> ComplianceShift:
    """A planned shift (validated: the post and an active guard exist, end after start)."""
    post = session.get(Post, post_id)
    if post is None:
        raise ComplianceError(f"no post {post_id}")
    guard = session.get(Guard, guard_id)
    if guard is None or guard.disabled_at is not None:
        raise ComplianceError(f"no guard {guard_id}")
    try:
        Shift(0, guard_id, post_id, device_id, start, end)
    except ValueError as exc:
        raise ComplianceError(str(exc)) from exc
    if (end - start) > timedelta(hours=48):
        raise ComplianceError("a shift lasts at most 48 hours")
    row = ComplianceShift(
        site_id=post.site_id,
        post_id=post_id,
        guard_id=guard_id,
        device_id=device_id,
        start_at=start,
        end_at=end,
    )
    session.add(row)
    session.flush()
    return row


def history(session: Session, shift_id: int) -> Sequence[ComplianceScore]:
    """Every stored version of a shift's score, oldest first."""
    return session.scalars(
        select(ComplianceScore)
        .where(ComplianceScore.shift_id == shift_id)
        .order_by(ComplianceScore.version)
    ).all()
