"""Round-by-round patrol summary for one post, computed by the compliance engine.

The demo's view of a shift: which checkpoints each round window saw a
verified visit at, and which it missed. It is the compliance engine's round
matching (:func:`cloud_api.compliance.targets.expected_rounds`,
:func:`cloud_api.compliance.engine.match_rounds`) applied to a plan of rounds
every ``interval_s`` from ``start`` that last the whole interval, with no
grace; the full score (grace, order, presence, equipment, rules,
explanations) is :func:`cloud_api.compliance.engine.score_shift`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cloud_api.compliance.engine import match_rounds
from cloud_api.compliance.shifts import Visit as EngineVisit
from cloud_api.compliance.targets import (
    ActiveWindow,
    PatrolPlan,
    Schedule,
    ScheduleKind,
    expected_rounds,
)

_ALL_WEEK = frozenset(range(7))


@dataclass(frozen=True, slots=True)
class RoundPlan:
    post: str
    checkpoints: tuple[str, ...]
    start: datetime
    end: datetime
    interval_s: float

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("plan times must be timezone-aware")
        if self.end <= self.start:
            raise ValueError("a plan must end after it starts")

    @property
    def round_count(self) -> int:
        """Rounds whose whole window lies inside the plan."""
        return int((self.end - self.start).total_seconds() // self.interval_s)


@dataclass(frozen=True, slots=True)
class Visit:
    checkpoint: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RoundResult:
    index: int
    window_start: datetime
    window_end: datetime
    visited: tuple[str, ...]
    missed: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missed


@dataclass(frozen=True, slots=True)
class PostSummary:
    post: str
    rounds: tuple[RoundResult, ...]

    @property
    def expected_visits(self) -> int:
        return sum(len(r.visited) + len(r.missed) for r in self.rounds)

    @property
    def verified_visits(self) -> int:
        return sum(len(r.visited) for r in self.rounds)

    @property
    def compliance_pct(self) -> float:
        expected = self.expected_visits
        return 100.0 * self.verified_visits / expected if expected else 0.0


def _engine_plan(plan: RoundPlan) -> PatrolPlan:
    """Rounds every ``interval_s`` anchored at ``plan.start``.

    A plan shorter than a day is a daily window [start, end) in UTC, so its
    rounds start exactly at ``plan.start``; a longer one is an all-day window,
    whose rounds stay anchored at ``plan.start`` when the interval divides a day.
    """
    start = plan.start.astimezone(UTC)
    end = plan.end.astimezone(UTC)
    short = (end - start).total_seconds() < 86_400
    return PatrolPlan(
        plan_id=1,
        name=plan.post,
        checkpoints=tuple(range(len(plan.checkpoints))),
        ordered=False,
        schedule=Schedule(ScheduleKind.INTERVAL, interval_s=plan.interval_s),
        round_duration_s=plan.interval_s,
        grace_s=0,
        windows=(ActiveWindow(_ALL_WEEK, start.time(), end.time() if short else start.time()),),
    )


def summarize(plan: RoundPlan, visits: Iterable[Visit]) -> PostSummary:
    """Assign each verified visit to its round window and list what was missed."""
    if plan.round_count == 0:
        return PostSummary(plan.post, ())
    engine_plan = _engine_plan(plan)
    index = {name: i for i, name in enumerate(plan.checkpoints)}
    engine_visits = sorted(
        (
            EngineVisit(n, 0, index[v.checkpoint], v.at)
            for n, v in enumerate(visits)
            if v.checkpoint in index
        ),
        key=lambda v: (v.at, v.event_id),
    )
    slots = expected_rounds(engine_plan, "UTC", plan.start, plan.end)
    outcomes, _used = match_rounds(engine_plan, slots, engine_visits)
    rounds = tuple(
        RoundResult(
            index=o.index,
            window_start=o.start,
            window_end=o.closes,
            visited=tuple(c for i, c in enumerate(plan.checkpoints) if i not in o.missed),
            missed=tuple(plan.checkpoints[i] for i in o.missed),
        )
        for o in outcomes
    )
    return PostSummary(plan.post, rounds)
