"""Round-by-round patrol summary for one post: the walking skeleton of scoring.

A post's patrol plan says which checkpoints must be visited in every round and
how often a round is due. This module only counts: which checkpoints each round
window saw a verified visit at, and which it missed. The full compliance engine
(order, grace, weights, explanations) replaces it in issue 6; its inputs and
outputs are plain values so that swap touches no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


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


def summarize(plan: RoundPlan, visits: Iterable[Visit]) -> PostSummary:
    """Assign each verified visit to its round window and list what was missed."""
    interval = timedelta(seconds=plan.interval_s)
    seen: list[set[str]] = [set() for _ in range(plan.round_count)]
    wanted = set(plan.checkpoints)
    for visit in visits:
        if visit.checkpoint not in wanted or visit.at < plan.start:
            continue
        index = int((visit.at - plan.start) / interval)
        if index < plan.round_count:
            seen[index].add(visit.checkpoint)
    rounds = tuple(
        RoundResult(
            index=i,
            window_start=plan.start + i * interval,
            window_end=plan.start + (i + 1) * interval,
            visited=tuple(c for c in plan.checkpoints if c in seen[i]),
            missed=tuple(c for c in plan.checkpoints if c not in seen[i]),
        )
        for i in range(plan.round_count)
    )
    return PostSummary(plan.post, rounds)
