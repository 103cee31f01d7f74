"""A small hand-checkable world for engine tests: one post, three checkpoints, hourly rounds.

Post 1 (UTC) has plan 1: checkpoints A=1, B=2, C=3 in any order, a round every
hour on the hour lasting 20 minutes, 5 minutes' grace, active all week. The
night shift 10 runs 22:00-01:00 UTC (it spans midnight): three rounds (22:00,
23:00, 00:00), nine expected checkpoint visits, so each visit is worth
45 / 9 = 5 points. The guard (7) carries wearable 0xA001; a heartbeat every
minute says "in the zone, radio 500 near at 80 %".
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

from cloud_api.compliance.engine import ShiftInput
from cloud_api.compliance.shifts import Sample, Shift, Visit
from cloud_api.compliance.targets import (
    ActiveWindow,
    EquipmentRequirement,
    PatrolPlan,
    PostTargets,
    Schedule,
    ScheduleKind,
)

A, B, C = 1, 2, 3
WEARABLE = 0xA001
GUARD = 7
RADIO = 500
START = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
END = START + timedelta(hours=3)
ALL_WEEK = ActiveWindow(frozenset(range(7)), time(0, 0), time(0, 0))

_ids = itertools.count(1)


def next_id() -> int:
    return next(_ids)


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def plan(**overrides: Any) -> PatrolPlan:
    values: dict[str, Any] = {
        "plan_id": 1,
        "name": "night",
        "checkpoints": (A, B, C),
        "ordered": False,
        "schedule": Schedule(ScheduleKind.INTERVAL, interval_s=3600),
        "round_duration_s": 20 * 60,
        "grace_s": 5 * 60,
        "windows": (ALL_WEEK,),
    }
    values.update(overrides)
    return PatrolPlan(**values)


def targets(*, plans: tuple[PatrolPlan, ...] | None = None, **overrides: Any) -> PostTargets:
    values: dict[str, Any] = {
        "post_id": 1,
        "site_id": 1,
        "timezone": "UTC",
        "plans": plans if plans is not None else (plan(),),
        "equipment": (EquipmentRequirement("radio", frozenset({RADIO})),),
    }
    values.update(overrides)
    return PostTargets(**values)


SHIFT = Shift(10, GUARD, 1, WEARABLE, START, END)


def visit(cp: int, minutes: float, **kw: Any) -> Visit:
    return Visit(
        kw.pop("event_id", next_id()), kw.pop("device_id", WEARABLE), cp, at(minutes), **kw
    )


def perfect_visits(rounds: int = 3) -> list[Visit]:
    """A at +2, B at +5, C at +8 minutes of every round."""
    return [visit(cp, 60 * r + m) for r in range(rounds) for cp, m in ((A, 2), (B, 5), (C, 8))]


def heartbeats(
    start_min: float = 0, end_min: float = 180, *, in_zone: bool = True, battery: int = 80
) -> list[Sample]:
    """One heartbeat a minute over [start_min, end_min)."""
    return [
        Sample(next_id(), WEARABLE, at(m), in_zone, ((RADIO, battery),))
        for m in range(int(start_min), int(end_min))
    ]


def shift_input(visits: list[Visit], samples: list[Sample] | None = None, **kw: Any) -> ShiftInput:
    return ShiftInput(
        shift=kw.pop("shift", SHIFT),
        targets=kw.pop("targets", targets()),
        visits=visits,
        samples=heartbeats() if samples is None else samples,
        **kw,
    )


def with_zone(samples: list[Sample], start_min: float, end_min: float) -> list[Sample]:
    """The same heartbeats, out of the zone in [start_min, end_min)."""
    return [
        replace(s, in_zone=False) if at(start_min) <= s.at < at(end_min) else s for s in samples
    ]
