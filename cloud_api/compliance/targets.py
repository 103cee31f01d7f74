"""Post targets: patrol plans, schedules, active windows, equipment, weights (pure).

A post's :class:`PostTargets` say what service the post was promised. Patrol
plans list checkpoints (ordered or any order) and a schedule; rounds are
expanded here into absolute UTC windows for a shift, in the site's IANA time
zone, so daylight-saving changes are handled in one place:

- active windows are local wall-clock times per weekday; a window whose end
  is not after its start runs past midnight into the next day;
- ``interval`` rounds start at the active window's local start and then every
  ``interval_s`` of *elapsed* time (a guard walks every hour, even on the night
  the clocks change: the 23-hour and 25-hour days get one round fewer or more);
- ``fixed`` rounds are local wall-clock times: a time that falls into the
  spring-forward gap happens once, shifted forward by the gap; an ambiguous
  fall-back time happens once, at its first occurrence (PEP 495 ``fold=0``);
- ``random`` rounds: the active window is cut into ``rounds_per_window`` equal
  slots and one round is due anywhere inside each slot (the guard chooses when,
  so nobody outside can predict it; the engine only checks each slot got one).

Each round is on time up to ``start + duration``, late up to ``+ grace``; the
late end is clipped at the plan's next round start, so rounds of one plan never
share a visit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from cloud_api.compliance.types import Category

MAX_ROUNDS_PER_PLAN_SHIFT = 2_000  # a shift of 48 h with a round every 90 s; more is a typo
MAX_SHIFT_S = 48 * 3600  # the longest shift the engine scores, against runaway expansion
MIN_INTERVAL_S = 10  # the demo compresses a night into minutes; less is a typo


class ScheduleKind(StrEnum):
    INTERVAL = "interval"
    FIXED = "fixed"
    RANDOM = "random"


@dataclass(frozen=True, slots=True)
class ActiveWindow:
    """Local wall-clock window on the given weekdays (0 = Monday); end <= start: past midnight."""

    weekdays: frozenset[int]
    start: time
    end: time

    def __post_init__(self) -> None:
        object.__setattr__(self, "weekdays", frozenset(self.weekdays))
        if not self.weekdays or not self.weekdays <= frozenset(range(7)):
            raise ValueError(f"weekdays must be a non-empty subset of 0..6, got {self.weekdays}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("active window times are local wall-clock times, without tzinfo")

    def utc_span(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The window opening on local ``day``, as UTC instants."""
        start = _local_to_utc(day, self.start, zone)
        end_day = day if self.end > self.start else day + timedelta(days=1)
        return start, _local_to_utc(end_day, self.end, zone)


def _local_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Local wall time to UTC: gap times move forward by the gap, ambiguous ones take fold=0."""
    # fold=0: an ambiguous time is its first occurrence; a time in the gap is
    # read with the offset before the change, which lands after the gap, i.e.
    # shifted forward by the gap's length.
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Schedule:
    kind: ScheduleKind
    interval_s: float = 0  # INTERVAL (seconds; whole seconds in stored plans)
    fixed_times: tuple[time, ...] = ()  # FIXED, local
    rounds_per_window: int = 0  # RANDOM

    def __post_init__(self) -> None:
        if self.kind is ScheduleKind.INTERVAL and self.interval_s < MIN_INTERVAL_S:
            raise ValueError(f"interval_s must be at least {MIN_INTERVAL_S}, got {self.interval_s}")
        if self.kind is ScheduleKind.FIXED and not self.fixed_times:
            raise ValueError("a fixed schedule needs at least one time")
        if self.kind is ScheduleKind.RANDOM and self.rounds_per_window < 1:
            raise ValueError("a random schedule needs rounds_per_window >= 1")


@dataclass(frozen=True, slots=True)
class PatrolPlan:
    """Which checkpoints a round visits, how often, and how strictly.

    ``walk_s`` maps an unordered checkpoint pair to the least plausible walking
    time between them; ``default_walk_s`` applies to pairs not listed (0: none).
    """

    plan_id: int
    name: str
    checkpoints: tuple[int, ...]
    ordered: bool
    schedule: Schedule
    round_duration_s: float
    grace_s: float
    windows: tuple[ActiveWindow, ...]
    min_dwell_s: int = 0
    walk_s: Mapping[frozenset[int], int] = field(default_factory=dict)
    default_walk_s: int = 0

    def __post_init__(self) -> None:
        if not self.checkpoints:
            raise ValueError(f"plan {self.name!r} has no checkpoints")
        if len(set(self.checkpoints)) != len(self.checkpoints):
            raise ValueError(f"plan {self.name!r} lists a checkpoint twice")
        if self.round_duration_s <= 0 or self.grace_s < 0 or self.min_dwell_s < 0:
            raise ValueError("round_duration_s must be positive, grace_s and min_dwell_s >= 0")
        if not self.windows:
            raise ValueError(f"plan {self.name!r} has no active window")

    def walk_between_s(self, a: int, b: int) -> int:
        return self.walk_s.get(frozenset((a, b)), self.default_walk_s)


@dataclass(frozen=True, slots=True)
class EquipmentRequirement:
    """An item the guard must carry: any of ``tag_ids`` near the wearable, charged."""

    name: str
    tag_ids: frozenset[int]
    min_battery_pct: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag_ids", frozenset(self.tag_ids))
        if not self.tag_ids:
            raise ValueError(f"equipment {self.name!r} lists no tag")


DEFAULT_WEIGHTS: Mapping[Category, float] = {
    Category.ROUNDS: 45.0,
    Category.ORDER: 5.0,
    Category.EQUIPMENT: 15.0,
    Category.PRESENCE: 15.0,
    Category.CONDUCT: 10.0,
    Category.FLAGS: 5.0,
    Category.SOS: 5.0,
}
"""Points each category can cost at most (sum 100). Inspection and complaint
deductions come from the workflow with their own points."""


@dataclass(frozen=True, slots=True)
class Weights:
    """Contract weights: the most points each category can cost (normalised to 100)."""

    budget: Mapping[Category, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        merged = {**DEFAULT_WEIGHTS, **self.budget}
        if any(v < 0 for v in merged.values()):
            raise ValueError("weights must be >= 0")
        total = sum(merged.values())
        if total <= 0:
            raise ValueError("weights must not all be 0")
        norm = {k: 100.0 * v / total for k, v in merged.items()}
        if norm[Category.ORDER] > norm[Category.ROUNDS] / 2:
            # An out-of-order visit must never cost more than the visit earns,
            # or filling a missed checkpoint could lower the score.
            raise ValueError("the order weight may be at most half the rounds weight")
        object.__setattr__(self, "budget", norm)

    def of(self, category: Category) -> float:
        return self.budget.get(category, 0.0)


@dataclass(frozen=True, slots=True)
class PostTargets:
    """Everything a post was promised, in the site's time zone."""

    post_id: int
    site_id: int
    timezone: str
    plans: tuple[PatrolPlan, ...] = ()
    equipment: tuple[EquipmentRequirement, ...] = ()
    max_absence_s: int = 15 * 60
    max_inactivity_s: int = 90 * 60
    sos_ack_target_s: int = 60
    rectification_target_h: int = 72
    weights: Weights = field(default_factory=Weights)

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if self.max_absence_s <= 0 or self.max_inactivity_s <= 0 or self.sos_ack_target_s <= 0:
            raise ValueError("max_absence_s, max_inactivity_s and sos_ack_target_s must be > 0")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def checkpoint_ids(self) -> frozenset[int]:
        return frozenset(c for p in self.plans for c in p.checkpoints)


@dataclass(frozen=True, slots=True)
class RoundSlot:
    """One expected round: on time until ``due``, late until ``closes``."""

    plan_id: int
    index: int
    start: datetime
    due: datetime
    closes: datetime


def _open_windows(
    plan: PatrolPlan, zone: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Active window spans (UTC) that overlap [start, end), sorted, merged if touching."""
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    spans: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        for window in plan.windows:
            if day.weekday() in window.weekdays:
                w_start, w_end = window.utc_span(day, zone)
                if w_end > start and w_start < end:
                    spans.append((w_start, w_end))
        day += timedelta(days=1)
    spans.sort()
    merged: list[tuple[datetime, datetime]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _starts(
    plan: PatrolPlan, zone: ZoneInfo, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """(round start, on-time end) of every round of ``plan`` opening in an active window."""
    sched = plan.schedule
    duration = timedelta(seconds=plan.round_duration_s)
    spans = _open_windows(plan, zone, start, end)
    if sched.kind is ScheduleKind.INTERVAL:
        step = timedelta(seconds=sched.interval_s)
        for w_start, w_end in spans:
            t = w_start
            while t + duration <= w_end:
                yield t, t + duration
                t += step
    elif sched.kind is ScheduleKind.RANDOM:
        for w_start, w_end in spans:
            slot = (w_end - w_start) / sched.rounds_per_window
            for i in range(sched.rounds_per_window):
                yield w_start + i * slot, w_start + (i + 1) * slot
    else:
        first = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date()
        day = first
        seen: set[datetime] = set()
        while day <= last:
            for at in sched.fixed_times:
                t = _local_to_utc(day, at, zone)
                if t not in seen and any(s <= t and t + duration <= e for s, e in spans):
                    seen.add(t)
                    yield t, t + duration
            day += timedelta(days=1)


def expected_rounds(
    plan: PatrolPlan, timezone: str, shift_start: datetime, shift_end: datetime
) -> tuple[RoundSlot, ...]:
    """Rounds of ``plan`` expected in a shift: those starting in it whose on-time end fits it."""
    if shift_start.tzinfo is None or shift_end.tzinfo is None:
        raise ValueError("shift times must be timezone-aware")
    if not shift_start < shift_end or (shift_end - shift_start).total_seconds() > MAX_SHIFT_S:
        raise ValueError(f"a shift must end after it starts and last at most {MAX_SHIFT_S} s")
    zone = ZoneInfo(timezone)
    grace = timedelta(seconds=plan.grace_s)
    raw = sorted(
        {
            (s, d)
            for s, d in _starts(plan, zone, shift_start, shift_end)
            if shift_start <= s and d <= shift_end
        }
    )
    if len(raw) > MAX_ROUNDS_PER_PLAN_SHIFT:
        raise ValueError(f"plan {plan.name!r} expands to {len(raw)} rounds in one shift")
    slots = []
    for i, (s, d) in enumerate(raw):
        closes = d + grace
        if i + 1 < len(raw):
            closes = min(closes, raw[i + 1][0])
        # The next round may start before this one's on-time end: it then closes this one.
        slots.append(RoundSlot(plan.plan_id, i, s, min(d, closes), closes))
    return tuple(slots)
