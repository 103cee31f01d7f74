"""Hand-computed scenarios, one per rule (see compliancetest.py for the world).

Each expected score is worked out in the test's docstring from docs/scoring.md:
a visit is worth 45 / 9 = 5 points, late costs half, presence and equipment
cost their weight (15) times the share of the shift lost, conduct breaches
cost 2 / 5 / 10 points (minor / major / critical).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from compliancetest import (
    GUARD,
    SHIFT,
    A,
    B,
    C,
    at,
    heartbeats,
    next_id,
    perfect_visits,
    plan,
    shift_input,
    targets,
    visit,
    with_zone,
)

from cloud_api.compliance.engine import score_shift
from cloud_api.compliance.rules import OtherShift
from cloud_api.compliance.shifts import Sample, Shift, SosCase
from cloud_api.compliance.types import Category, Deduction, RuleId, Severity


def codes(score: object) -> list[tuple[str, float]]:
    return [(d.code, d.points) for d in score.deductions]  # type: ignore[attr-defined]


def test_a_perfect_night_scores_100_with_nothing_to_explain() -> None:
    score = score_shift(shift_input(perfect_visits()))
    assert score.score == 100.0
    assert score.deductions == () and score.breaches == ()
    assert [r.status for r in score.rounds] == ["completed"] * 3
    assert [r.start for r in score.rounds] == [at(0), at(60), at(120)]  # 00:00 is past midnight
    assert (score.checkpoints_on_time, score.checkpoints_late, score.checkpoints_missed) == (
        9,
        0,
        0,
    )
    assert score.presence_share == 1.0 and score.equipment_readiness == {"radio": 1.0}
    assert (score.first_event_at, score.last_event_at) == (at(0), at(179))


def test_a_missed_checkpoint_costs_one_visit() -> None:
    """Round 2 without C: 100 - 5 = 95; two rounds completed, one partial."""
    visits = [v for v in perfect_visits() if not (v.checkpoint_id == C and v.at == at(68))]
    score = score_shift(shift_input(visits))
    assert score.score == 95.0
    assert [r.status for r in score.rounds] == ["completed", "partial", "completed"]
    [d] = score.deductions
    assert (d.category, d.code, d.points, d.ref) == (
        Category.ROUNDS,
        "checkpoint_missed",
        5.0,
        "plan 1 round 2 checkpoint 3",
    )
    assert (d.start, d.end) == (at(60), at(85))  # the absence: the whole round window


def test_a_missed_round_is_one_line_and_leaves_a_long_inactive_gap() -> None:
    """Round 3 (00:00) without any visit: 3 x 5 = 15 points. The guard's last
    visit was at 23:08, so until 01:00 nothing happened for 112 min, 22 min over
    the 90 min allowed: 2 x 22 / 90 = 0.4889 points. 100 - 15.4889 = 84.51."""
    score = score_shift(shift_input(perfect_visits(rounds=2)))
    assert [r.status for r in score.rounds] == ["completed", "completed", "missed"]
    assert codes(score) == [("round_missed", 15.0), ("inactive", 0.4889)]
    [breach] = score.breaches
    assert (breach.rule_id, breach.severity, breach.start, breach.end) == (
        RuleId.INACTIVE,
        Severity.MINOR,
        at(68),
        at(180),
    )
    assert score.score == 84.51


def test_a_late_visit_inside_grace_costs_half() -> None:
    """C of round 1 at 22:22: after the 20 min round, inside the 5 min grace: 97.5."""
    visits = [v for v in perfect_visits() if v.at != at(8)] + [visit(C, 22)]
    score = score_shift(shift_input(visits))
    assert score.score == 97.5
    assert score.checkpoints_late == 1
    [d] = score.deductions
    assert (d.code, d.points, d.start, d.end) == ("checkpoint_late", 2.5, at(20), at(22))
    assert d.evidence == (visits[-1].event_id,)


def test_a_visit_after_grace_is_missed() -> None:
    visits = [v for v in perfect_visits() if v.at != at(8)] + [visit(C, 25)]
    assert score_shift(shift_input(visits)).score == 95.0


def test_order_violation_on_an_ordered_plan() -> None:
    """Round 1 as C, A, B on a plan ordered A, B, C: one visit has to go to make
    it ordered (C); it costs W_order / 9 = 5 / 9 = 0.5556. 100 - 0.5556 = 99.44."""
    visits = perfect_visits()
    visits = [v for v in visits if v.at >= at(60)] + [visit(C, 2), visit(A, 5), visit(B, 8)]
    score = score_shift(shift_input(visits, targets=targets(plans=(plan(ordered=True),))))
    assert codes(score) == [("order_violation", 0.5556)]
    assert score.order_violations == 1 and score.score == 99.44


def test_the_same_taps_on_an_unordered_plan_cost_nothing() -> None:
    visits = [v for v in perfect_visits() if v.at >= at(60)] + [
        visit(C, 2),
        visit(A, 5),
        visit(B, 8),
    ]
    assert score_shift(shift_input(visits)).score == 100.0


def test_tags_collected_in_the_guard_room_are_too_fast() -> None:
    """Walking A-B takes at least 2 min; B tapped 30 s after A in round 1: B is
    not credited (missed: 5) and the breach is major (5): 100 - 10 = 90."""
    t = targets(plans=(plan(walk_s={frozenset((A, B)): 120}),))
    visits = [v for v in perfect_visits() if v.at != at(5)]
    fast_b = visit(B, 2.5)
    score = score_shift(shift_input([*visits, fast_b], targets=t))
    [breach] = score.breaches
    assert (breach.rule_id, breach.severity) == (RuleId.TOO_FAST, Severity.MAJOR)
    assert breach.evidence == (visits[0].event_id, fast_b.event_id)
    assert codes(score) == [("checkpoint_missed", 5.0), ("too_fast", 5.0)]
    assert score.score == 90.0
    assert f"visit {fast_b.event_id} not counted: too fast" in score.notes[0]


def test_absence_from_the_post_zone_longer_than_allowed() -> None:
    """Out of the zone 23:30-23:50 (20 min; 15 allowed): presence loses
    15 x 1200 / 10800 = 1.6667, the major breach 5: 100 - 6.6667 = 93.33."""
    score = score_shift(shift_input(perfect_visits(), with_zone(heartbeats(), 90, 110)))
    [breach] = score.breaches
    assert (breach.rule_id, breach.severity, breach.start, breach.end) == (
        RuleId.ABSENT_FROM_ZONE,
        Severity.MAJOR,
        at(90),
        at(110),
    )
    assert len(breach.evidence) == 20  # the twenty out-of-zone heartbeats
    assert codes(score) == [("out_of_zone", 1.6667), ("absent_from_zone", 5.0)]
    assert score.score == 93.33
    assert score.presence_share == pytest.approx(1 - 1200 / 10800, abs=1e-6)


def test_a_short_absence_costs_presence_but_is_no_breach() -> None:
    """10 min out (allowed 15): 15 x 600 / 10800 = 0.8333 -> 99.17."""
    score = score_shift(shift_input(perfect_visits(), with_zone(heartbeats(), 90, 100)))
    assert score.breaches == () and score.score == 99.17


def test_inactivity_on_duty() -> None:
    """Allowance 30 min: gaps 22:08-23:02, 23:08-00:02 (54 min each), 00:08-01:00
    (52 min) exceed it by 24 + 24 + 22 = 70 min: 2 x 70 / 30 = 4.6667 -> 95.33."""
    score = score_shift(shift_input(perfect_visits(), targets=targets(max_inactivity_s=1800)))
    assert [b.rule_id for b in score.breaches] == [RuleId.INACTIVE] * 3
    assert [b.severity for b in score.breaches] == [Severity.MINOR] * 3
    assert score.score == 95.33


def test_the_same_guard_on_two_posts_at_once() -> None:
    """Guard 7 is also on shift 11 at post 2 from 00:00, and his other wearable
    reports there: critical breach, 10 points."""
    other = Shift(11, GUARD, 2, 0xA002, at(120), at(300))
    data = shift_input(perfect_visits(), others=(OtherShift(other, (999,)),))
    score = score_shift(data)
    [breach] = score.breaches
    assert (breach.rule_id, breach.severity, breach.other_shift_id) == (
        RuleId.TWO_POSTS,
        Severity.CRITICAL,
        11,
    )
    assert (breach.start, breach.end) == (at(120), at(180))
    assert 999 in breach.evidence
    assert score.score == 90.0


def test_another_post_without_evidence_in_the_overlap_is_no_breach() -> None:
    other = Shift(11, GUARD, 2, 0xA002, at(120), at(300))
    score = score_shift(shift_input(perfect_visits(), others=(OtherShift(other, ()),)))
    assert score.breaches == ()


def test_equipment_readiness_counts_only_charged_items() -> None:
    """The radio at 10 % (below 20 %) for the first hour: ready 2/3 of the shift,
    15 x 1/3 = 5 points -> 95."""
    samples = heartbeats(0, 60, battery=10) + heartbeats(60, 180)
    score = score_shift(shift_input(perfect_visits(), samples))
    assert score.equipment_readiness == {"radio": pytest.approx(2 / 3, abs=1e-6)}
    [d] = score.deductions
    assert (d.code, d.points, d.start, d.end) == ("equipment_missing", 5.0, at(0), at(60))
    assert score.score == 95.0


def test_silence_is_no_presence() -> None:
    """No heartbeat 23:00-23:30: the one at 22:59 vouches until 23:04, so 26 min
    are silent: 15 x 1560 / 10800 = 2.1667 for presence and the same for the
    radio (not known to be near) -> 100 - 4.3333 = 95.67."""
    samples = heartbeats(0, 60) + heartbeats(90, 180)
    score = score_shift(shift_input(perfect_visits(), samples))
    assert codes(score) == [("no_signal", 2.1667), ("equipment_missing", 2.1667)]
    assert score.score == 95.67


def test_presence_adverts_heard_by_the_gateway_fill_silence() -> None:
    samples = heartbeats(0, 60) + heartbeats(90, 180)
    adverts = [Sample(next_id(), SHIFT.device_id, at(m), True, advert=True) for m in range(60, 90)]
    score = score_shift(shift_input(perfect_visits(), samples + adverts))
    assert [d.code for d in score.deductions] == ["equipment_missing"]
    assert score.presence_share == 1.0


def test_a_flagged_visit_costs_a_point() -> None:
    visits = perfect_visits()
    visits[0] = replace(visits[0], flags=("clock_unsynced",))
    score = score_shift(shift_input(visits))
    assert codes(score) == [("flagged_visit", 1.0)] and score.score == 99.0
    assert score.flagged_events == 1


def test_a_ble_visit_shorter_than_the_minimum_dwell_does_not_count() -> None:
    visits = [v for v in perfect_visits() if v.at != at(8)] + [visit(C, 8, dwell_s=5)]
    score = score_shift(shift_input(visits, targets=targets(plans=(plan(min_dwell_s=10),))))
    assert score.score == 95.0
    assert "dwell 5 s < 10 s" in score.notes[0]


@pytest.mark.parametrize(
    ("ack_after_s", "tracked", "points"),
    [(30, True, None), (120, True, 2.5), (None, True, 5.0), (None, False, None)],
)
def test_sos_response_time(ack_after_s: int | None, tracked: bool, points: float | None) -> None:
    raised = at(100)
    ack = raised + timedelta(seconds=ack_after_s) if ack_after_s is not None else None
    case = SosCase(next_id(), SHIFT.device_id, raised, acknowledged_at=ack, tracked=tracked)
    score = score_shift(shift_input(perfect_visits(), sos=(case,)))
    assert codes(score) == ([] if points is None else [("sos_response", points)])
    assert score.sos_events == 1


def test_workflow_deductions_are_added_verbatim() -> None:
    extra = Deduction(Category.INSPECTION, "inspection_failed", 7.5, "spot check", ref="insp 1")
    score = score_shift(shift_input(perfect_visits(), extra=(extra,)))
    assert score.deductions == (extra,) and score.score == 92.5


def test_other_wearables_do_not_count_for_this_guard() -> None:
    """Overlapping shifts at one post (handover): the relief guard's taps are his."""
    visits = [visit(cp, m, device_id=0xB001) for cp, m in ((A, 2), (B, 5), (C, 8))]
    score = score_shift(shift_input(visits + perfect_visits()[3:]))
    assert score.rounds[0].status == "missed"


def test_live_score_counts_only_closed_rounds() -> None:
    """At 23:30 round 1 is closed, round 2 (23:00-23:25) closed, round 3 pending."""
    score = score_shift(shift_input(perfect_visits(rounds=2)), as_of=at(90))
    assert score.pending_rounds == 1 and len(score.rounds) == 2
    assert score.as_of == at(90) and score.score == 100.0
    assert score_shift(shift_input(perfect_visits(rounds=2))).as_of is None
