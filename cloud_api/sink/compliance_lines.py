"""Line protocol for what the compliance engine and the emergency path derive.

docs/influx-schema.md ("Derived measurements") is the reference; the Grafana
dashboards (dashboards/, docs/dashboards.md) query exactly these names. Every
function here is pure: keyword arguments in, one line of line protocol out
(no newline), ready for :func:`cloud_api.sink.outbox.enqueue`. Bad values
(a score outside 0..100, a negative count, an unknown enumeration value, a
NaN) raise :class:`DerivedPointError` naming the field and the reason, so a
bug in the engine never reaches InfluxDB as a plausible-looking number.

Time and the tie-break rule. InfluxDB keeps one point per series and
timestamp and overwrites the second one silently. Derived points are either

- *states* that a re-computation must overwrite (a shift's score, a round's
  outcome): their time is the start of what they describe, to the
  millisecond, plus ``(id mod 1e6)`` ns of the thing's own relational id
  (shift id, item id...), so two shifts or rounds starting in the same
  millisecond never collide while a recomputed point lands on the same key
  with the new values; or
- *transitions* that happen once (an item resolved, an alert acknowledged):
  their time is the transition's time to the millisecond plus
  ``(id mod 1e6)`` ns of the item or alert, so rewriting one (an outbox
  retry) is idempotent.

Tags come only from bounded sets: provisioned ids (site, post, guard) and the
enumerations below. Ids of items, alerts, shifts, deviations are fields.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from cloud_api.sink.schema import (
    NS_PER_MS,
    TIE_BREAK_MODULUS,
    FieldValue,
    LineProtocolError,
    Point,
    encode_line,
    epoch_ms,
)

M_COMPLIANCE = "compliance"
M_ROUND = "round"
M_DEVIATION = "deviation"
M_RECTIFICATION = "rectification"
M_SURVEY = "survey"
M_SOS_RESPONSE = "sos_response"

PERIODS = frozenset({"shift", "day", "month"})
"""``compliance`` periods: a shift, or a local calendar day / month of the site."""
ROUND_OUTCOMES = frozenset({"pending", "complete", "partial", "missed"})
"""A round is ``pending`` until its window (plus grace) closed."""
SEVERITIES = frozenset({"minor", "major", "critical"})
"""As ``cloud_api.compliance.types.Severity``."""
RULE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
"""Rule codes (the ``deviation`` tag ``rule``) are short snake_case names from code, never text."""
SELF_RESTRAINT_RULES = frozenset({"absent_from_zone", "inactive", "too_fast", "two_posts"})
"""The self-restraint mechanism's rules (``cloud_api.compliance.types.RuleId``); the company
overview counts these."""
RECTIFICATION_TRANSITIONS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    # transition: (allowed open_delta, allowed overdue_delta)
    "opened": ((1,), (0,)),
    "started": ((0,), (0,)),
    "escalated": ((0,), (0, 1)),  # +1 only for the first escalation since (re)opening
    "resolved": ((-1,), (0, -1)),  # -1 overdue when it had been counted overdue
    "verified": ((0,), (0,)),
    "reopened": ((1,), (0,)),
    "withdrawn": ((-1,), (0, -1)),  # a re-score removed the deviation behind it
    "restored": ((1,), (0,)),  # a re-score brought it back
}
"""Workflow transitions of a rectification item and the deltas each may carry."""
COMPONENTS = frozenset(
    {
        "rounds",
        "order",
        "equipment",
        "presence",
        "conduct",
        "flags",
        "sos",
        "inspection",
        "complaint",
    }
)
"""Component scores of ``compliance`` (``score_<name>``, each 0..100): the deduction
categories of ``cloud_api.compliance.types.Category``."""
SOS_TRIGGERS = frozenset({"button", "man_down", "test"})
"""As the ``sos`` measurement's ``trigger`` tag."""
SOS_TRANSITIONS = frozenset({"acknowledged", "escalated", "resolved"})
MAX_ID_LIST_CHARS = 1024
"""Comma-separated id lists (missed checkpoints, missing equipment) are cut here."""


class DerivedPointError(LineProtocolError):
    """A derived point with a value the schema does not allow (the message says which)."""


# ---------------------------------------------------------------- validation


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DerivedPointError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _id(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DerivedPointError(f"{name} must be a positive integer id, got {value!r}")
    return value


def _ratio(name: str, value: float, *, high: float) -> float:
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= high:
        raise DerivedPointError(f"{name} must be within 0..{high:g}, got {value!r}")
    return number


def _non_negative(name: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0.0:
        raise DerivedPointError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def _one_of(name: str, value: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise DerivedPointError(f"{name} {value!r} is not one of {sorted(allowed)}")
    return value


def _rule(rule: str) -> str:
    if not RULE_PATTERN.fullmatch(rule):
        raise DerivedPointError(f"rule {rule!r} is not a snake_case rule code of 1..32 characters")
    return rule


def _aware(name: str, moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise DerivedPointError(f"{name} must be timezone-aware (UTC), got a naive datetime")
    return moment


def _id_list(name: str, ids: tuple[int, ...] | tuple[str, ...]) -> str:
    text = ",".join(str(i) for i in ids)
    if len(text) > MAX_ID_LIST_CHARS:
        raise DerivedPointError(f"{name} is longer than {MAX_ID_LIST_CHARS} characters")
    return text


def state_time_ns(start: datetime, key_id: int) -> int:
    """Time of a state point: ``start`` to the ms plus ``key_id mod 1e6`` ns (see module doc)."""
    return epoch_ms(_aware("time", start)) * NS_PER_MS + key_id % TIE_BREAK_MODULUS


def _tags(**values: int | str | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in values.items() if v is not None))


def _line(
    measurement: str,
    tags: tuple[tuple[str, str], ...],
    fields: list[tuple[str, FieldValue]],
    time_ns: int,
) -> str:
    return encode_line(Point(measurement, tags, tuple(fields), time_ns))


# ---------------------------------------------------------------- compliance


def compliance_line(
    *,
    site_id: int,
    post_id: int,
    guard_id: int,
    period: str,
    period_start: datetime,
    key_id: int,
    score: float,
    components: dict[str, float],
    deductions: int,
    deduction_points: float,
    rounds_expected: int,
    rounds_completed: int,
    rounds_partial: int,
    rounds_missed: int,
    checkpoints_on_time: int,
    checkpoints_late: int,
    checkpoints_missed: int,
    order_violations: int,
    flagged_events: int,
    equipment_missing: int = 0,
    equipment_missing_ids: tuple[str, ...] = (),
    on_duty: bool = False,
) -> str:
    """One score of a guard at a post for a period (``shift``, ``day``, ``month``).

    ``key_id`` is the shift id for ``shift`` (its low digits break ties between
    shifts starting in the same millisecond) and 0 for days and months, whose
    start is unique per guard and post. ``components`` maps component names
    (:data:`COMPONENTS`) to 0..100 scores; each becomes field ``score_<name>``.
    Written again, with the same time, every time the score is recomputed.
    """
    _one_of("period", period, PERIODS)
    if period == "shift":
        _id("key_id (shift id)", key_id)
    elif key_id != 0:
        raise DerivedPointError(f"key_id must be 0 for period {period!r}, got {key_id!r}")
    fields: list[tuple[str, FieldValue]] = [("score", _ratio("score", score, high=100.0))]
    for name in sorted(components):
        _one_of("component", name, COMPONENTS)
        fields.append((f"score_{name}", _ratio(f"score_{name}", components[name], high=100.0)))
    fields += [
        ("deductions", _count("deductions", deductions)),
        ("deduction_points", _non_negative("deduction_points", deduction_points)),
        ("rounds_expected", _count("rounds_expected", rounds_expected)),
        ("rounds_completed", _count("rounds_completed", rounds_completed)),
        ("rounds_partial", _count("rounds_partial", rounds_partial)),
        ("rounds_missed", _count("rounds_missed", rounds_missed)),
        ("checkpoints_on_time", _count("checkpoints_on_time", checkpoints_on_time)),
        ("checkpoints_late", _count("checkpoints_late", checkpoints_late)),
        ("checkpoints_missed", _count("checkpoints_missed", checkpoints_missed)),
        ("order_violations", _count("order_violations", order_violations)),
        ("flagged_events", _count("flagged_events", flagged_events)),
        ("equipment_missing", _count("equipment_missing", equipment_missing)),
        ("equipment_missing_ids", _id_list("equipment_missing_ids", equipment_missing_ids)),
        ("on_duty", bool(on_duty)),
    ]
    if period == "shift":
        fields.append(("shift", key_id))
    tags = _tags(
        site=_id("site_id", site_id),
        post=_id("post_id", post_id),
        guard=_id("guard_id", guard_id),
        period=period,
    )
    return _line(M_COMPLIANCE, tags, fields, state_time_ns(period_start, key_id))


def round_line(
    *,
    site_id: int,
    post_id: int,
    guard_id: int,
    shift_id: int,
    round_index: int,
    window_start: datetime,
    outcome: str,
    checkpoints_expected: int,
    checkpoints_on_time: int,
    checkpoints_late: int,
    checkpoints_missed: int,
    order_violations: int,
    missed_ids: tuple[int, ...] = (),
    late_ids: tuple[int, ...] = (),
) -> str:
    """One expected round of a shift and what became of it; rewritten as it changes."""
    _one_of("outcome", outcome, ROUND_OUTCOMES)
    expected = _count("checkpoints_expected", checkpoints_expected)
    counted = (
        _count("checkpoints_on_time", checkpoints_on_time)
        + _count("checkpoints_late", checkpoints_late)
        + _count("checkpoints_missed", checkpoints_missed)
    )
    if counted > expected:
        raise DerivedPointError(
            f"on time + late + missed ({counted}) exceeds checkpoints_expected ({expected})"
        )
    fields: list[tuple[str, FieldValue]] = [
        ("shift", _id("shift_id", shift_id)),
        ("round", _count("round_index", round_index)),
        ("outcome", outcome),
        ("checkpoints_expected", expected),
        ("checkpoints_on_time", checkpoints_on_time),
        ("checkpoints_late", checkpoints_late),
        ("checkpoints_missed", checkpoints_missed),
        ("order_violations", _count("order_violations", order_violations)),
        ("missed_ids", _id_list("missed_ids", missed_ids)),
        ("late_ids", _id_list("late_ids", late_ids)),
    ]
    tags = _tags(
        site=_id("site_id", site_id), post=_id("post_id", post_id), guard=_id("guard_id", guard_id)
    )
    return _line(M_ROUND, tags, fields, state_time_ns(window_start, shift_id))


def deviation_line(
    *,
    site_id: int,
    post_id: int | None,
    guard_id: int | None,
    deviation_id: int,
    rule: str,
    severity: str,
    occurred_at: datetime,
    active: bool = True,
    deduction_points: float = 0.0,
    checkpoint_id: int | None = None,
) -> str:
    """A rule breach; rewritten with ``active=False`` when a recomputation withdraws it."""
    fields: list[tuple[str, FieldValue]] = [
        ("deviation", _id("deviation_id", deviation_id)),
        ("active", bool(active)),
        ("deduction_points", _non_negative("deduction_points", deduction_points)),
    ]
    if checkpoint_id is not None:
        fields.append(("checkpoint", _id("checkpoint_id", checkpoint_id)))
    tags = _tags(
        site=_id("site_id", site_id),
        post=None if post_id is None else _id("post_id", post_id),
        guard=None if guard_id is None else _id("guard_id", guard_id),
        rule=_rule(rule),
        severity=_one_of("severity", severity, SEVERITIES),
    )
    return _line(M_DEVIATION, tags, fields, state_time_ns(occurred_at, deviation_id))


def rectification_line(
    *,
    site_id: int,
    post_id: int | None,
    item_id: int,
    severity: str,
    transition: str,
    at: datetime,
    open_delta: int,
    overdue_delta: int,
    age_s: float,
    deviation_id: int | None = None,
) -> str:
    """One workflow transition of a rectification item (written once per transition).

    ``open_delta``: +1 ``opened``/``reopened``/``restored``, -1 ``resolved``/``withdrawn``,
    else 0; ``overdue_delta``: +1 on the first ``escalated`` since the item was
    (re)opened (later escalation levels carry 0), -1 when an item counted overdue is
    ``resolved`` or ``withdrawn``, else 0. Their sums over all time per site and post
    are the items unresolved and the items overdue now. ``post_id`` is None for a
    site-wide item (a complaint about the whole site).
    """
    _one_of("transition", transition, frozenset(RECTIFICATION_TRANSITIONS))
    allowed_open, allowed_overdue = RECTIFICATION_TRANSITIONS[transition]
    if open_delta not in allowed_open:
        raise DerivedPointError(f"open_delta {open_delta!r} is wrong for {transition!r}")
    if overdue_delta not in allowed_overdue:
        raise DerivedPointError(f"overdue_delta {overdue_delta!r} is wrong for {transition!r}")
    fields: list[tuple[str, FieldValue]] = [
        ("item", _id("item_id", item_id)),
        ("open_delta", open_delta),
        ("overdue_delta", overdue_delta),
        ("age_s", _non_negative("age_s", age_s)),
    ]
    if deviation_id is not None:
        fields.append(("deviation", _id("deviation_id", deviation_id)))
    tags = _tags(
        site=_id("site_id", site_id),
        post=None if post_id is None else _id("post_id", post_id),
        severity=_one_of("severity", severity, SEVERITIES),
        transition=transition,
    )
    return _line(M_RECTIFICATION, tags, fields, state_time_ns(at, item_id))


def survey_line(
    *, site_id: int, post_id: int | None, survey_id: int, rating: int, at: datetime
) -> str:
    """A customer survey entry (return visit): rating 1..5."""
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise DerivedPointError(f"rating must be an integer 1..5, got {rating!r}")
    tags = _tags(
        site=_id("site_id", site_id), post=None if post_id is None else _id("post_id", post_id)
    )
    fields: list[tuple[str, FieldValue]] = [
        ("survey", _id("survey_id", survey_id)),
        ("rating", rating),
    ]
    return _line(M_SURVEY, tags, fields, state_time_ns(at, survey_id))


def sos_response_line(
    *,
    site_id: int,
    alert_id: int,
    trigger: str,
    transition: str,
    at: datetime,
    elapsed_s: float,
    device: str,
    level: int = 0,
) -> str:
    """An alert's acknowledgement, escalation or resolution (issue 7 writes these).

    ``elapsed_s`` is the time from the alert's creation in the cloud to this
    transition; ``level`` the escalation level reached (0 = site supervisor).
    """
    if len(device) != 8 or any(c not in "0123456789abcdef" for c in device):
        raise DerivedPointError(f"device must be 8 lowercase hex digits, got {device!r}")
    fields: list[tuple[str, FieldValue]] = [
        ("alert", _id("alert_id", alert_id)),
        ("elapsed_s", _non_negative("elapsed_s", elapsed_s)),
        ("device", device),
        ("level", _count("level", level)),
    ]
    tags = _tags(
        site=_id("site_id", site_id),
        trigger=_one_of("trigger", trigger, SOS_TRIGGERS),
        transition=_one_of("transition", transition, SOS_TRANSITIONS),
    )
    return _line(M_SOS_RESPONSE, tags, fields, state_time_ns(at, alert_id))
