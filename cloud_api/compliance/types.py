"""Shared value types of the compliance engine (issue 6).

These are the contract between the scoring side (``engine``, ``rules``,
``store``) and the workflow side (deviations, rectification, inspections,
complaints, rankings, reports): plain frozen dataclasses, no I/O, no ORM.

- :class:`Deduction` is one line of a score's explanation: how many points,
  in which category, why, and the events (or the absence) behind it.
- :class:`RuleBreach` is a self-restraint rule broken during a shift; the
  workflow turns each into a deviation (``rule_id`` + ``shift_id`` +
  ``start`` is a stable identity, so a recomputation re-finds the same breach).
- :class:`DeductionSource` is the hook through which the workflow adds
  inspection and complaint deductions to a shift's score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the hook's signature only; nothing here does I/O
    from sqlalchemy.orm import Session


class Severity(StrEnum):
    """How bad a rule breach is; ranked low to high."""

    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


class Category(StrEnum):
    """What part of the service a deduction belongs to (each has a contract weight)."""

    ROUNDS = "rounds"  # checkpoints missed or late
    ORDER = "order"  # checkpoints of an ordered plan visited out of order
    EQUIPMENT = "equipment"  # required items not near the guard or not charged
    PRESENCE = "presence"  # on-duty time outside the post zone or without any signal
    CONDUCT = "conduct"  # self-restraint rule breaches
    FLAGS = "flags"  # accepted but flagged or low-assurance evidence
    SOS = "sos"  # emergencies acknowledged late or never
    INSPECTION = "inspection"  # supervisor spot checks (workflow hook)
    COMPLAINT = "complaint"  # customer complaints (workflow hook)


class RuleId(StrEnum):
    """The self-restraint rules ("high-voltage lines") the engine checks."""

    ABSENT_FROM_ZONE = "absent_from_zone"  # out of the post zone longer than allowed
    INACTIVE = "inactive"  # no activity on duty longer than allowed
    TOO_FAST = "too_fast"  # two checkpoints tapped faster than walking between them allows
    TWO_POSTS = "two_posts"  # the same guard on duty at two posts at once


@dataclass(frozen=True, slots=True)
class Deduction:
    """One line of a score's explanation.

    ``points`` is already weighted (what the score lost, 0..100 scale);
    ``evidence`` lists accepted event ids (``events.id``) behind it, empty when
    the deduction is for an absence, which ``start``/``end`` then bound.
    """

    category: Category
    code: str
    points: float
    reason: str
    start: datetime | None = None
    end: datetime | None = None
    evidence: tuple[int, ...] = ()
    ref: str | None = None  # e.g. "plan 3 round 2 checkpoint 17", "inspection 12"

    def __post_init__(self) -> None:
        if self.points < 0:
            raise ValueError(f"a deduction cannot add points (points={self.points})")


@dataclass(frozen=True, slots=True)
class RuleBreach:
    """A self-restraint rule broken during a shift: the input of a deviation.

    ``(rule_id, shift_id, start)`` identifies the breach across recomputations.
    """

    rule_id: RuleId
    severity: Severity
    shift_id: int
    post_id: int
    guard_id: int
    start: datetime
    end: datetime
    detail: str
    evidence: tuple[int, ...] = ()
    other_shift_id: int | None = None  # TWO_POSTS: the overlapping shift

    @property
    def key(self) -> str:
        """Stable identity: ``"<rule>:<shift>:<start epoch ms>"``."""
        return f"{self.rule_id.value}:{self.shift_id}:{int(self.start.timestamp() * 1000)}"


@dataclass(frozen=True, slots=True)
class ShiftRef:
    """What a deduction source needs to know about the shift being scored."""

    shift_id: int
    site_id: int
    post_id: int
    guard_id: int
    start: datetime
    end: datetime


class DeductionSource(Protocol):
    """Hook: extra deductions for a shift (inspections, complaints).

    The workflow implements it and registers it with
    :func:`cloud_api.compliance.store.register_deduction_source`. It runs in
    the store layer (it may query), before the pure engine is called; the
    engine adds the returned deductions verbatim (points already on the 0..100
    scale) and lists them in the explanation. It must be deterministic for a
    given database state, so that a recomputation yields the same score.
    """

    def deductions_for(self, session: Session, shift: ShiftRef) -> Sequence[Deduction]: ...


class BreachSink(Protocol):
    """Hook: receives every shift's current rule breaches after each (re)computation.

    Called by :mod:`cloud_api.compliance.store` in the transaction that stores
    the score, with the *complete* current list (possibly empty): upsert by
    :attr:`RuleBreach.key`; a key missing from a later call means late events
    cleared that breach. Register with
    :func:`cloud_api.compliance.store.register_breach_sink`.
    """

    def breaches_found(
        self, session: Session, shift: ShiftRef, breaches: Sequence[RuleBreach]
    ) -> None: ...


class ScoreSink(Protocol):
    """Hook: receives each new version of a shift's score (same transaction as the row).

    Called only when a (re)computation changed the result. Register with
    :func:`cloud_api.compliance.store.register_score_sink`.
    """

    def score_found(self, session: Session, shift: ShiftRef, score: ShiftScore) -> None: ...


class SosResponseSource(Protocol):
    """Hook (emergency path, issue 7): when each SOS event was acknowledged.

    Returns a mapping for the SOS event ids it tracks: event id -> acknowledgement
    time, or None while unacknowledged. Ids it does not know stay untracked (no
    deduction, a note). Register with
    :func:`cloud_api.compliance.store.register_sos_source`.
    """

    def acknowledgements(
        self, session: Session, event_ids: Sequence[int]
    ) -> Mapping[int, datetime | None]: ...


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """One expected round of one plan, as scored."""

    plan_id: int
    index: int
    start: datetime
    due: datetime  # start + round duration: visits up to here are on time
    closes: datetime  # due + grace, clipped at the next round's start: late until here
    on_time: tuple[int, ...]  # checkpoint ids
    late: tuple[int, ...]
    missed: tuple[int, ...]
    order_violations: int = 0

    @property
    def status(self) -> str:
        """``completed`` (nothing missed), ``partial`` or ``missed`` (nothing visited)."""
        if not self.missed:
            return "completed"
        return "missed" if not (self.on_time or self.late) else "partial"


@dataclass(frozen=True, slots=True)
class ShiftScore:
    """The scored shift: counts, rounds, breaches and the explained score (0..100)."""

    shift_id: int
    score: float
    rounds: tuple[RoundOutcome, ...]
    deductions: tuple[Deduction, ...]
    breaches: tuple[RuleBreach, ...]
    equipment_readiness: dict[str, float] = field(default_factory=dict)  # item name -> 0..1
    presence_share: float = 0.0  # share of the shift in the post zone, 0..1
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    flagged_events: int = 0
    sos_events: int = 0
    notes: tuple[str, ...] = ()  # what was seen but not counted (short BLE dwell, ...)
    pending_rounds: int = 0  # live score: rounds still open at ``as_of``, not yet counted
    as_of: datetime | None = None  # live score: scored up to here; None: the shift is over

    @property
    def rounds_expected(self) -> int:
        return len(self.rounds)

    def rounds_with(self, status: str) -> int:
        return sum(1 for r in self.rounds if r.status == status)

    @property
    def checkpoints_on_time(self) -> int:
        return sum(len(r.on_time) for r in self.rounds)

    @property
    def checkpoints_late(self) -> int:
        return sum(len(r.late) for r in self.rounds)

    @property
    def checkpoints_missed(self) -> int:
        return sum(len(r.missed) for r in self.rounds)

    @property
    def order_violations(self) -> int:
        return sum(r.order_violations for r in self.rounds)
