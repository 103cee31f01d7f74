"""The scoring engine: one shift's evidence against its post's targets -> explained score.

Pure: values in, a :class:`ShiftScore` out; no clock, no database. Everything
is ordered by (time, event id) first, so the result does not depend on the
order in which events arrived, and scoring the same inputs twice gives the
same score (recomputation after late events is just scoring again).

The deduction table (docs/scoring.md): each category can cost at most its
contract weight (default: rounds 45, order 5, equipment 15, presence 15,
conduct 10, flags 5, SOS 5; sum 100). Within a category:

- rounds: every expected checkpoint visit is worth ``v = W_rounds / E`` (E =
  expected checkpoint visits of the shift); missed costs ``v``, late ``v / 2``;
- order (ordered plans): each visit that has to be dropped to make a round's
  sequence follow the plan (visits minus the longest in-order subsequence)
  costs ``W_order / E`` (at most ``v / 2``, so a late out-of-order visit still
  earns more than it costs);
- equipment: ``W_equipment / n_items * (1 - readiness)`` per required item,
  readiness being the share of the shift with a charged listed tag near the guard;
- presence: ``W_presence * (1 - share in the post zone)``;
- conduct: per rule breach 2 (minor), 5 (major), 10 (critical) points scaled
  by ``W_conduct / 10``, capped at ``W_conduct``; inactivity instead costs
  2 points per allowance length beyond the allowance (proportional, so that a
  visit splitting a gap never costs more than the gap);
- flags: per credited visit that carries review flags or low assurance,
  1 point scaled by ``W_flags / 5``, capped at ``W_flags``;
- SOS (when acknowledgements are tracked): unacknowledged ``W_sos``, late
  ``W_sos / 2`` per case, capped at ``W_sos``;
- inspection / complaint: points given by the workflow's deduction sources.

Score = max(0, 100 - sum of deductions), rounded to 2 decimals.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from cloud_api.compliance import rules
from cloud_api.compliance.shifts import (
    Sample,
    Segment,
    Shift,
    SosCase,
    Visit,
    complement,
    coverage,
    merge_spans,
)
from cloud_api.compliance.targets import PatrolPlan, PostTargets, RoundSlot, expected_rounds
from cloud_api.compliance.types import (
    Category,
    Deduction,
    RoundOutcome,
    RuleBreach,
    RuleId,
    Severity,
    ShiftScore,
)

SEVERITY_POINTS = {Severity.MINOR: 2.0, Severity.MAJOR: 5.0, Severity.CRITICAL: 10.0}
"""Conduct points per breach at the default conduct weight (10)."""
FLAG_POINTS = 1.0  # per flagged or low-assurance credited visit at the default flags weight (5)
LISTED_SPANS = 5  # an equipment / presence line names at most this many gaps, then "..."
PRECISION = 4  # deduction points are rounded to this many decimals before summing


@dataclass(frozen=True, slots=True)
class ShiftInput:
    """Everything the engine needs for one shift (the store fills it)."""

    shift: Shift
    targets: PostTargets
    visits: Sequence[Visit] = ()
    samples: Sequence[Sample] = ()
    sos: Sequence[SosCase] = ()
    others: Sequence[rules.OtherShift] = ()
    extra: Sequence[Deduction] = ()  # from the workflow's deduction sources
    checkpoint_names: dict[int, str] = field(default_factory=dict)


def _pts(x: float) -> float:
    return round(x, PRECISION)


def _fmt(t: datetime, zone_name: str) -> str:
    return t.astimezone(ZoneInfo(zone_name)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _lis_length(seq: Sequence[int]) -> int:
    """Length of the longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    for x in seq:
        i = bisect.bisect_left(tails, x)
        if i == len(tails):
            tails.append(x)
        else:
            tails[i] = x
    return len(tails)


def match_rounds(
    plan: PatrolPlan, slots: Sequence[RoundSlot], visits: Sequence[Visit]
) -> tuple[list[RoundOutcome], dict[tuple[int, int], Visit]]:
    """Assign each checkpoint of each round its earliest credited visit in the round window.

    Returns the outcomes and, per (round index, checkpoint), the visit used.
    """
    by_cp: dict[int, list[Visit]] = {c: [] for c in plan.checkpoints}
    for v in visits:
        if v.checkpoint_id in by_cp:
            by_cp[v.checkpoint_id].append(v)
    times = {c: [v.at for v in vs] for c, vs in by_cp.items()}
    outcomes = []
    used: dict[tuple[int, int], Visit] = {}
    for slot in slots:
        on_time: list[int] = []
        late: list[int] = []
        missed: list[int] = []
        matched: list[tuple[datetime, int, int]] = []  # (time, event id, plan position)
        for pos, cp in enumerate(plan.checkpoints):
            i = bisect.bisect_left(times[cp], slot.start)
            if i < len(times[cp]) and times[cp][i] < slot.closes:
                visit = by_cp[cp][i]
                used[(slot.index, cp)] = visit
                (on_time if visit.at < slot.due else late).append(cp)
                matched.append((visit.at, visit.event_id, pos))
            else:
                missed.append(cp)
        violations = 0
        if plan.ordered and matched:
            seq = [pos for _, _, pos in sorted(matched)]
            violations = len(seq) - _lis_length(seq)
        outcomes.append(
            RoundOutcome(
                plan_id=plan.plan_id,
                index=slot.index,
                start=slot.start,
                due=slot.due,
                closes=slot.closes,
                on_time=tuple(on_time),
                late=tuple(late),
                missed=tuple(missed),
                order_violations=violations,
            )
        )
    return outcomes, used


def _conduct_points(breach: RuleBreach, targets: PostTargets) -> float:
    """Points of a breach at the default conduct weight.

    Inactivity costs in proportion to the time beyond the allowance (2 points
    per allowance length), so that a visit splitting a long gap in two never
    costs more than the gap did; the other rules cost by severity.
    """
    if breach.rule_id is RuleId.INACTIVE:
        excess_s = (breach.end - breach.start).total_seconds() - targets.max_inactivity_s
        return SEVERITY_POINTS[Severity.MINOR] * excess_s / targets.max_inactivity_s
    return SEVERITY_POINTS[breach.severity]


def _spans_text(spans: Sequence[tuple[datetime, datetime]], zone: str) -> str:
    parts = [f"{_fmt(s, zone)} - {_fmt(e, zone)}" for s, e in spans[:LISTED_SPANS]]
    if len(spans) > LISTED_SPANS:
        parts.append(f"... ({len(spans) - LISTED_SPANS} more)")
    return "; ".join(parts)


def score_shift(data: ShiftInput, *, as_of: datetime | None = None) -> ShiftScore:
    """Score one shift. ``as_of`` before the shift end gives the live score so far."""
    shift, targets = data.shift, data.targets
    zone = targets.timezone
    w = targets.weights
    live = as_of is not None and as_of < shift.end
    until = as_of if (as_of is not None and live) else shift.end
    if until <= shift.start:
        until = shift.start
    notes: list[str] = []

    # --- evidence, in a canonical order --------------------------------------
    own = sorted(
        {v.event_id: v for v in data.visits if v.device_id == shift.device_id}.values(),
        key=lambda v: (v.at, v.event_id),
    )
    in_shift = [v for v in own if shift.start <= v.at < until]
    samples = sorted(
        (s for s in data.samples if s.device_id == shift.device_id),
        key=lambda s: (s.at, s.advert, s.event_id),
    )
    sos = sorted(
        (s for s in data.sos if s.device_id == shift.device_id), key=lambda s: (s.at, s.event_id)
    )
    min_dwell = {c: p.min_dwell_s for p in targets.plans for c in p.checkpoints}
    post_cps = targets.checkpoint_ids
    fast_breaches, implausible = rules.too_fast(shift, targets, in_shift)
    credited: list[Visit] = []
    for v in in_shift:
        if v.checkpoint_id not in post_cps:
            continue
        if v.dwell_s is not None and v.dwell_s < min_dwell.get(v.checkpoint_id, 0):
            notes.append(
                f"BLE visit {v.event_id} at checkpoint {v.checkpoint_id} not counted: dwell "
                f"{v.dwell_s} s < {min_dwell[v.checkpoint_id]} s"
            )
            continue
        if v.event_id in implausible:
            notes.append(f"visit {v.event_id} not counted: too fast after the previous one")
            continue
        credited.append(v)

    # --- rounds ----------------------------------------------------------------
    rounds: list[RoundOutcome] = []
    pending = 0
    deductions: list[Deduction] = []
    used_visits: dict[tuple[int, int, int], Visit] = {}
    for plan in sorted(targets.plans, key=lambda p: p.plan_id):
        slots = expected_rounds(plan, zone, shift.start, shift.end)
        if live:
            pending += sum(1 for s in slots if s.closes > until)
            slots = tuple(s for s in slots if s.closes <= until)
        outcomes, used = match_rounds(plan, slots, credited)
        rounds += outcomes
        used_visits.update({(plan.plan_id, i, cp): v for (i, cp), v in used.items()})
    expected_visits = sum(len(r.on_time) + len(r.late) + len(r.missed) for r in rounds)
    v_pts = w.of(Category.ROUNDS) / expected_visits if expected_visits else 0.0
    order_pts = w.of(Category.ORDER) / expected_visits if expected_visits else 0.0
    plan_names = {p.plan_id: p.name for p in targets.plans}
    cp_name = data.checkpoint_names
    for r in rounds:
        ref = f"plan {r.plan_id} round {r.index + 1}"
        label = f"{plan_names[r.plan_id]!r} round {r.index + 1} ({_fmt(r.start, zone)})"
        if r.status == "missed":
            deductions.append(
                Deduction(
                    Category.ROUNDS,
                    "round_missed",
                    _pts(v_pts * len(r.missed)),
                    f"{label} missed: no visit to any of its {len(r.missed)} checkpoints "
                    f"before {_fmt(r.closes, zone)}",
                    start=r.start,
                    end=r.closes,
                    ref=ref,
                )
            )
        else:
            for cp in r.missed:
                deductions.append(
                    Deduction(
                        Category.ROUNDS,
                        "checkpoint_missed",
                        _pts(v_pts),
                        f"{label}: checkpoint {cp_name.get(cp, cp)} not visited "
                        f"before {_fmt(r.closes, zone)}",
                        start=r.start,
                        end=r.closes,
                        ref=f"{ref} checkpoint {cp}",
                    )
                )
        for cp in r.late:
            visit = used_visits[(r.plan_id, r.index, cp)]
            deductions.append(
                Deduction(
                    Category.ROUNDS,
                    "checkpoint_late",
                    _pts(v_pts / 2),
                    f"{label}: checkpoint {cp_name.get(cp, cp)} visited at "
                    f"{_fmt(visit.at, zone)}, after {_fmt(r.due, zone)} (within grace)",
                    start=r.due,
                    end=visit.at,
                    evidence=(visit.event_id,),
                    ref=f"{ref} checkpoint {cp}",
                )
            )
        if r.order_violations:
            deductions.append(
                Deduction(
                    Category.ORDER,
                    "order_violation",
                    _pts(order_pts * r.order_violations),
                    f"{label}: {r.order_violations} checkpoint(s) visited out of the plan's order",
                    start=r.start,
                    end=r.closes,
                    ref=ref,
                )
            )

    # --- presence and equipment -------------------------------------------------
    segments: list[Segment] = coverage(samples, shift.start, until)
    span_s = (until - shift.start).total_seconds()
    in_zone_s = sum(s.seconds for s in segments if s.sample.in_zone or s.sample.advert)
    out_segments = [s for s in segments if not (s.sample.in_zone or s.sample.advert)]
    covered = merge_spans([(s.start, s.end) for s in segments])
    silent = complement(covered, shift.start, until)
    presence_share = in_zone_s / span_s if span_s > 0 else 0.0
    if span_s > 0 and w.of(Category.PRESENCE) > 0:
        out_s = sum(s.seconds for s in out_segments)
        silent_s = sum((e - s).total_seconds() for s, e in silent)
        if out_s > 0:
            deductions.append(
                Deduction(
                    Category.PRESENCE,
                    "out_of_zone",
                    _pts(w.of(Category.PRESENCE) * out_s / span_s),
                    f"{out_s:.0f} s of {span_s:.0f} s on duty outside the post zone: "
                    + _spans_text(merge_spans([(s.start, s.end) for s in out_segments]), zone),
                    start=out_segments[0].start,
                    end=out_segments[-1].end,
                    evidence=tuple(s.sample.event_id for s in out_segments)[
                        : rules.MAX_EVIDENCE_IDS
                    ],
                )
            )
        if silent_s > 0:
            deductions.append(
                Deduction(
                    Category.PRESENCE,
                    "no_signal",
                    _pts(w.of(Category.PRESENCE) * silent_s / span_s),
                    f"{silent_s:.0f} s of {span_s:.0f} s on duty without any heartbeat or "
                    f"presence advert: " + _spans_text(silent, zone),
                    start=silent[0][0],
                    end=silent[-1][1],
                )
            )
    readiness: dict[str, float] = {}
    if targets.equipment:
        share_w = w.of(Category.EQUIPMENT) / len(targets.equipment)
        for req in sorted(targets.equipment, key=lambda r: r.name):
            ok = [
                (s.start, s.end)
                for s in segments
                if not s.sample.advert
                and any(
                    tag in req.tag_ids and battery >= req.min_battery_pct
                    for tag, battery in s.sample.equipment
                )
            ]
            ok_s = sum((e - s).total_seconds() for s, e in ok)
            ready = ok_s / span_s if span_s > 0 else 0.0
            readiness[req.name] = round(ready, 6)
            if span_s > 0 and ready < 1.0:
                gaps = complement(merge_spans(ok), shift.start, until)
                deductions.append(
                    Deduction(
                        Category.EQUIPMENT,
                        "equipment_missing",
                        _pts(share_w * (1.0 - ready)),
                        f"{req.name}: ready {100 * ready:.1f}% of the time on duty (no charged "
                        f"tag near the guard: " + _spans_text(gaps, zone) + ")",
                        start=gaps[0][0] if gaps else None,
                        end=gaps[-1][1] if gaps else None,
                        ref=f"equipment {req.name}",
                    )
                )

    # --- self-restraint rules -------------------------------------------------
    activity = sorted(
        [(v.at, v.event_id) for v in credited] + [(s.at, s.event_id) for s in sos if not s.test]
    )
    breaches: list[RuleBreach] = list(fast_breaches)
    breaches += rules.absent_from_zone(shift, targets, segments)
    breaches += rules.inactive(shift, targets, activity, until)
    own_evidence = sorted([(v.at, v.event_id) for v in own] + [(s.at, s.event_id) for s in samples])
    breaches += rules.two_posts(shift, own_evidence, data.others)
    breaches.sort(key=lambda b: (b.start, b.rule_id.value, b.end))
    conduct_left = w.of(Category.CONDUCT)
    scale = w.of(Category.CONDUCT) / 10.0
    for b in breaches:
        full = _conduct_points(b, targets) * scale
        pts = min(full, conduct_left)
        conduct_left -= pts
        capped = " (conduct cap reached)" if pts < full else ""
        deductions.append(
            Deduction(
                Category.CONDUCT,
                b.rule_id.value,
                _pts(pts),
                f"{b.severity.value} breach: {b.detail}{capped}",
                start=b.start,
                end=b.end,
                evidence=b.evidence,
                ref=b.key,
            )
        )

    # --- flags and SOS ------------------------------------------------------------
    flagged = [v for v in credited if v.flags or v.assurance == "low"]
    flags_left = w.of(Category.FLAGS)
    for v in flagged:
        full = FLAG_POINTS * w.of(Category.FLAGS) / 5.0
        pts = min(full, flags_left)
        flags_left -= pts
        why = ", ".join(v.flags) if v.flags else "low assurance (tag without cryptography)"
        deductions.append(
            Deduction(
                Category.FLAGS,
                "flagged_visit",
                _pts(pts),
                f"visit at checkpoint {cp_name.get(v.checkpoint_id, v.checkpoint_id)} at "
                f"{_fmt(v.at, zone)} flagged: {why}",
                start=v.at,
                end=v.at,
                evidence=(v.event_id,),
            )
        )
    sos_in = [s for s in sos if shift.start <= s.at < until]
    sos_left = w.of(Category.SOS)
    for case in sos_in:
        if case.test:
            notes.append(f"SOS {case.event_id} was a test")
            continue
        if not case.tracked:
            notes.append(f"SOS {case.event_id} at {_fmt(case.at, zone)}: response not tracked")
            continue
        if case.acknowledged_at is None:
            full, why = w.of(Category.SOS), "never acknowledged"
        else:
            took_s = (case.acknowledged_at - case.at).total_seconds()
            if took_s <= targets.sos_ack_target_s:
                continue
            full = w.of(Category.SOS) / 2
            why = f"acknowledged after {took_s:.0f} s (target {targets.sos_ack_target_s} s)"
        pts = min(full, sos_left)
        sos_left -= pts
        deductions.append(
            Deduction(
                Category.SOS,
                "sos_response",
                _pts(pts),
                f"SOS at {_fmt(case.at, zone)} {why}",
                start=case.at,
                end=case.acknowledged_at,
                evidence=(case.event_id,),
            )
        )
    deductions += sorted(data.extra, key=lambda d: (d.category.value, d.code, d.ref or ""))

    total = sum(d.points for d in deductions)
    score = round(max(0.0, 100.0 - total), 2)
    every = sorted(
        [(v.at, v.event_id) for v in own]
        + [(s.at, s.event_id) for s in samples]
        + [(s.at, s.event_id) for s in sos]
    )
    return ShiftScore(
        shift_id=shift.shift_id,
        score=score,
        rounds=tuple(rounds),
        deductions=tuple(deductions),
        breaches=tuple(breaches),
        equipment_readiness=readiness,
        presence_share=round(presence_share, 6),
        first_event_at=every[0][0] if every else None,
        last_event_at=every[-1][0] if every else None,
        flagged_events=len(flagged),
        sos_events=len(sos_in),
        notes=tuple(notes),
        pending_rounds=pending,
        as_of=until if live else None,
    )
