"""Self-restraint rules ("high-voltage lines"): pure checks that return rule breaches.

- absent from the post zone: a run of heartbeats whose in-zone bit is clear,
  longer than ``max_absence_s`` (zones are measured on the wearable; silence
  is not absence, it is reported under presence instead);
- inactive on duty: no checkpoint visit and no SOS press for longer than
  ``max_inactivity_s`` (heartbeats are automatic, so they are not activity);
- too fast: two consecutive visits at different checkpoints closer in time
  than the plan's least walking time between them (tags collected in the
  guard room); the later visit is not credited;
- two posts at once: another shift of the same guard at a different post
  overlaps this one and both show on-duty evidence inside the overlap.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cloud_api.compliance.shifts import Segment, Shift, Visit
from cloud_api.compliance.targets import PostTargets
from cloud_api.compliance.types import RuleBreach, RuleId, Severity

MAX_EVIDENCE_IDS = 50  # a breach lists at most this many event ids (first ones), enough to check


@dataclass(frozen=True, slots=True)
class OtherShift:
    """An overlapping shift of the same guard, with its wearable's event ids in the overlap."""

    shift: Shift
    evidence_in_overlap: tuple[int, ...]


def walk_s(targets: PostTargets, a: int, b: int) -> int:
    """Least plausible walking time between two checkpoints (max over the plans naming both)."""
    best = 0
    for plan in targets.plans:
        if a in plan.checkpoints and b in plan.checkpoints:
            best = max(best, plan.walk_between_s(a, b))
    return best


def too_fast(
    shift: Shift, targets: PostTargets, visits: Sequence[Visit]
) -> tuple[list[RuleBreach], frozenset[int]]:
    """Breaches for implausibly quick consecutive visits, and the event ids not to credit."""
    breaches: list[RuleBreach] = []
    implausible: set[int] = set()
    for prev, cur in itertools.pairwise(visits):
        if prev.checkpoint_id == cur.checkpoint_id:
            continue
        need_s = walk_s(targets, prev.checkpoint_id, cur.checkpoint_id)
        took_s = (cur.at - prev.at).total_seconds()
        if need_s and took_s < need_s:
            implausible.add(cur.event_id)
            breaches.append(
                RuleBreach(
                    rule_id=RuleId.TOO_FAST,
                    severity=Severity.MAJOR,
                    shift_id=shift.shift_id,
                    post_id=shift.post_id,
                    guard_id=shift.guard_id,
                    start=prev.at,
                    end=cur.at,
                    detail=(
                        f"checkpoint {prev.checkpoint_id} -> {cur.checkpoint_id} in "
                        f"{took_s:.0f} s; walking takes at least {need_s} s"
                    ),
                    evidence=(prev.event_id, cur.event_id),
                )
            )
    return breaches, frozenset(implausible)


def absent_from_zone(
    shift: Shift, targets: PostTargets, segments: Sequence[Segment]
) -> list[RuleBreach]:
    """Runs of contiguous out-of-zone heartbeat coverage longer than allowed."""
    runs: list[list[Segment]] = []
    for seg in segments:
        out = not seg.sample.in_zone and not seg.sample.advert
        if out and runs and runs[-1][-1].end == seg.start:
            runs[-1].append(seg)
        elif out:
            runs.append([seg])
    breaches = []
    limit = targets.max_absence_s
    for run in runs:
        start, end = run[0].start, run[-1].end
        seconds = (end - start).total_seconds()
        if seconds > limit:
            breaches.append(
                RuleBreach(
                    rule_id=RuleId.ABSENT_FROM_ZONE,
                    severity=Severity.CRITICAL if seconds > 4 * limit else Severity.MAJOR,
                    shift_id=shift.shift_id,
                    post_id=shift.post_id,
                    guard_id=shift.guard_id,
                    start=start,
                    end=end,
                    detail=f"out of the post zone for {seconds:.0f} s (allowed {limit} s)",
                    evidence=tuple(s.sample.event_id for s in run)[:MAX_EVIDENCE_IDS],
                )
            )
    return breaches


def inactive(
    shift: Shift,
    targets: PostTargets,
    activity: Sequence[tuple[datetime, int]],
    until: datetime,
) -> list[RuleBreach]:
    """Gaps between activity marks (shift start, visits, SOS presses, ``until``) over the limit.

    ``activity`` is (time, event id), sorted; ``until`` is the shift end (or
    the live score's as-of time).
    """
    limit = timedelta(seconds=targets.max_inactivity_s)
    marks: list[tuple[datetime, int | None]] = [(shift.start, None)]
    marks += [(t, i) for t, i in activity if shift.start <= t < until]
    marks.append((until, None))
    breaches = []
    for (a, a_id), (b, b_id) in itertools.pairwise(marks):
        if b - a > limit:
            seconds = (b - a).total_seconds()
            breaches.append(
                RuleBreach(
                    rule_id=RuleId.INACTIVE,
                    severity=Severity.MAJOR if b - a > 2 * limit else Severity.MINOR,
                    shift_id=shift.shift_id,
                    post_id=shift.post_id,
                    guard_id=shift.guard_id,
                    start=a,
                    end=b,
                    detail=(
                        f"no checkpoint visit for {seconds:.0f} s "
                        f"(allowed {targets.max_inactivity_s} s)"
                    ),
                    evidence=tuple(i for i in (a_id, b_id) if i is not None),
                )
            )
    return breaches


def two_posts(
    shift: Shift, own_evidence: Sequence[tuple[datetime, int]], others: Sequence[OtherShift]
) -> list[RuleBreach]:
    """The same guard on duty at another post during this shift, with evidence on both sides."""
    breaches = []
    for other in sorted(others, key=lambda o: (o.shift.start, o.shift.shift_id)):
        if other.shift.post_id == shift.post_id or other.shift.guard_id != shift.guard_id:
            continue
        span = shift.overlap(other.shift)
        if span is None or not other.evidence_in_overlap:
            continue
        mine = [i for t, i in own_evidence if span[0] <= t < span[1]]
        if not mine:
            continue
        breaches.append(
            RuleBreach(
                rule_id=RuleId.TWO_POSTS,
                severity=Severity.CRITICAL,
                shift_id=shift.shift_id,
                post_id=shift.post_id,
                guard_id=shift.guard_id,
                start=span[0],
                end=span[1],
                detail=(
                    f"guard {shift.guard_id} also on duty at post {other.shift.post_id} "
                    f"(shift {other.shift.shift_id}) with evidence from both posts"
                ),
                evidence=tuple(sorted(set(mine[:1]) | set(other.evidence_in_overlap[:1]))),
                other_shift_id=other.shift.shift_id,
            )
        )
    return breaches
