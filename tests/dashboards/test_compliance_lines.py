"""The derived-measurement serialisers: exact lines, the tie-break, and clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cloud_api.sink.compliance_lines import (
    DerivedPointError,
    compliance_line,
    deviation_line,
    rectification_line,
    round_line,
    sos_response_line,
    survey_line,
)

T = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
T_NS = 1_795_500_000_000_000_000
"""2026-11-24T06:00:00Z in ns (1,795,500,000 s since the epoch)."""

SHIFT = dict(
    site_id=1,
    post_id=11,
    guard_id=101,
    period="shift",
    period_start=T,
    key_id=1001,
    score=91.5,
    components={"rounds": 100.0, "equipment": 50.0},
    deductions=2,
    deduction_points=8.5,
    rounds_expected=3,
    rounds_completed=2,
    rounds_partial=1,
    rounds_missed=0,
    checkpoints_on_time=10,
    checkpoints_late=1,
    checkpoints_missed=1,
    order_violations=0,
    flagged_events=0,
    equipment_missing=1,
    equipment_missing_ids=("0000e002",),
    on_duty=True,
)


def test_epoch_constant() -> None:
    assert int((T - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**9 == T_NS


def test_compliance_line_exact() -> None:
    assert compliance_line(**SHIFT) == (  # type: ignore[arg-type]
        "compliance,guard=101,period=shift,post=11,site=1 score=91.5,score_equipment=50.0,"
        "score_rounds=100.0,deductions=2i,deduction_points=8.5,rounds_expected=3i,"
        "rounds_completed=2i,rounds_partial=1i,rounds_missed=0i,checkpoints_on_time=10i,"
        "checkpoints_late=1i,checkpoints_missed=1i,order_violations=0i,flagged_events=0i,"
        'equipment_missing=1i,equipment_missing_ids="0000e002",on_duty=true,shift=1001i '
        f"{T_NS + 1001}"
    )


def test_day_period_has_no_offset_and_no_shift_field() -> None:
    line = compliance_line(**{**SHIFT, "period": "day", "key_id": 0, "on_duty": False})  # type: ignore[arg-type]
    assert line.endswith(f"on_duty=false {T_NS}")
    assert "shift=" not in line


def test_same_shift_recomputed_lands_on_the_same_key() -> None:
    first = compliance_line(**SHIFT).rsplit(" ", 1)  # type: ignore[arg-type]
    again = compliance_line(**{**SHIFT, "score": 70.0}).rsplit(" ", 1)  # type: ignore[arg-type]
    assert first[1] == again[1]
    assert first[0].split(" ")[0] == again[0].split(" ")[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"score": 100.5}, "score must be within 0..100"),
        ({"score": float("nan")}, "score must be within 0..100"),
        ({"period": "week"}, "period 'week' is not one of"),
        ({"key_id": 0}, "key_id (shift id) must be a positive integer id"),
        ({"rounds_missed": -1}, "rounds_missed must be a non-negative integer"),
        ({"components": {"visits": 10.0}}, "component 'visits' is not one of"),
        ({"period_start": datetime(2026, 11, 24, 6)}, "must be timezone-aware"),
        ({"equipment_missing_ids": ("0000e002",) * 200}, "longer than 1024"),
    ],
)
def test_compliance_line_refuses(change: dict[str, object], message: str) -> None:
    with pytest.raises(DerivedPointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compliance_line(**{**SHIFT, **change})  # type: ignore[arg-type]


def test_round_line_exact_and_counts_checked() -> None:
    assert round_line(
        site_id=1,
        post_id=12,
        guard_id=102,
        shift_id=1002,
        round_index=1,
        window_start=T + timedelta(hours=1),
        outcome="partial",
        checkpoints_expected=2,
        checkpoints_on_time=1,
        checkpoints_late=0,
        checkpoints_missed=1,
        order_violations=0,
        missed_ids=(122,),
    ) == (
        'round,guard=102,post=12,site=1 shift=1002i,round=1i,outcome="partial",'
        "checkpoints_expected=2i,checkpoints_on_time=1i,checkpoints_late=0i,"
        f'checkpoints_missed=1i,order_violations=0i,missed_ids="122",late_ids="" '
        f"{T_NS + 3_600_000_000_000 + 1002}"
    )
    with pytest.raises(DerivedPointError, match=r"exceeds checkpoints_expected \(2\)"):
        round_line(
            site_id=1,
            post_id=12,
            guard_id=102,
            shift_id=1002,
            round_index=1,
            window_start=T,
            outcome="partial",
            checkpoints_expected=2,
            checkpoints_on_time=2,
            checkpoints_late=1,
            checkpoints_missed=0,
            order_violations=0,
        )


def test_deviation_line_without_post_or_guard() -> None:
    assert (
        deviation_line(
            site_id=2,
            post_id=None,
            guard_id=None,
            deviation_id=7,
            rule="complaint",
            severity="major",
            occurred_at=T,
            deduction_points=5.0,
        )
        == "deviation,rule=complaint,severity=major,site=2 deviation=7i,active=true,"
        f"deduction_points=5.0 {T_NS + 7}"
    )
    with pytest.raises(DerivedPointError, match="snake_case rule code"):
        deviation_line(
            site_id=1,
            post_id=1,
            guard_id=1,
            deviation_id=1,
            rule="Too Fast",
            severity="major",
            occurred_at=T,
        )
    with pytest.raises(DerivedPointError, match="severity 'high' is not one of"):
        deviation_line(
            site_id=1,
            post_id=1,
            guard_id=1,
            deviation_id=1,
            rule="too_fast",
            severity="high",
            occurred_at=T,
        )


@pytest.mark.parametrize(
    ("transition", "open_delta", "overdue_delta"),
    [
        ("opened", 1, 0),
        ("started", 0, 0),
        ("escalated", 0, 1),
        ("escalated", 0, 0),
        ("resolved", -1, -1),
        ("resolved", -1, 0),
        ("verified", 0, 0),
        ("reopened", 1, 0),
        ("withdrawn", -1, -1),
        ("withdrawn", -1, 0),
        ("restored", 1, 0),
    ],
)
def test_rectification_transitions_allowed(
    transition: str, open_delta: int, overdue_delta: int
) -> None:
    line = rectification_line(
        site_id=1,
        post_id=None,
        item_id=5,
        severity="minor",
        transition=transition,
        at=T,
        open_delta=open_delta,
        overdue_delta=overdue_delta,
        age_s=60.0,
    )
    assert line == (
        f"rectification,severity=minor,site=1,transition={transition} item=5i,"
        f"open_delta={open_delta}i,overdue_delta={overdue_delta}i,age_s=60.0 {T_NS + 5}"
    )


@pytest.mark.parametrize(
    ("transition", "open_delta", "overdue_delta", "message"),
    [
        ("opened", 0, 0, "open_delta 0 is wrong for 'opened'"),
        ("resolved", -1, 1, "overdue_delta 1 is wrong for 'resolved'"),
        ("escalated", 1, 1, "open_delta 1 is wrong for 'escalated'"),
        ("closed", 0, 0, "transition 'closed' is not one of"),
    ],
)
def test_rectification_transitions_refused(
    transition: str, open_delta: int, overdue_delta: int, message: str
) -> None:
    with pytest.raises(DerivedPointError, match=message):
        rectification_line(
            site_id=1,
            post_id=2,
            item_id=5,
            severity="minor",
            transition=transition,
            at=T,
            open_delta=open_delta,
            overdue_delta=overdue_delta,
            age_s=0.0,
        )


def test_survey_and_sos_response() -> None:
    assert survey_line(site_id=1, post_id=11, survey_id=3, rating=5, at=T) == (
        f"survey,post=11,site=1 survey=3i,rating=5i {T_NS + 3}"
    )
    with pytest.raises(DerivedPointError, match=r"rating must be an integer 1\.\.5"):
        survey_line(site_id=1, post_id=None, survey_id=3, rating=6, at=T)
    other_zone = T.astimezone(timezone(timedelta(hours=8)))
    assert sos_response_line(
        site_id=1,
        alert_id=9,
        trigger="man_down",
        transition="acknowledged",
        at=other_zone,
        elapsed_s=30.0,
        device="0000a003",
    ) == (
        "sos_response,site=1,transition=acknowledged,trigger=man_down alert=9i,"
        f'elapsed_s=30.0,device="0000a003",level=0i {T_NS + 9}'
    )
    with pytest.raises(DerivedPointError, match="8 lowercase hex"):
        sos_response_line(
            site_id=1,
            alert_id=9,
            trigger="button",
            transition="resolved",
            at=T,
            elapsed_s=1.0,
            device="A003",
        )
