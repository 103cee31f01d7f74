"""Deviations and rectification (the supervision mechanism), on SQLite and PostgreSQL.

Scenario, from the article: on the night shift at the Main gate (22:00-06:00 in
Kunming = 14:00-22:00 UTC) guard Zhao tapped two checkpoints faster than anyone
can walk between them (tags collected in the guard room: critical) and was out
of the post zone for 25 minutes (major). The shift is scored at 06:30 local
(22:30 UTC). Due times follow the severity: critical 4 h, major 24 h, counted
from detection. Owners: the site's supervisor with the fewest unresolved items,
the lower id on a tie: sup-li gets the first item, sup-wang the second.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from workflowtest import Depot, depot_on

from cloud_api.compliance import workflow as wf
from cloud_api.compliance.types import (
    Category,
    RoundOutcome,
    RuleBreach,
    RuleId,
    Severity,
    ShiftRef,
    ShiftScore,
)
from cloud_api.models import (
    Deviation,
    InfluxOutbox,
    InfluxOutboxLines,
    RectificationEvent,
    RectificationItem,
)

SHIFT_START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
SHIFT_END = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
SCORED_AT = datetime(2026, 11, 24, 22, 30, tzinfo=UTC)


@pytest.fixture
def depot(db_url: str) -> Iterator[Depot]:
    with depot_on(db_url) as d:
        yield d


def shift(d: Depot, shift_id: int = 10) -> ShiftRef:
    return ShiftRef(shift_id, d.site, d.gate, d.guard_zhao, SHIFT_START, SHIFT_END)


def too_fast(d: Depot) -> RuleBreach:
    return RuleBreach(
        RuleId.TOO_FAST,
        Severity.CRITICAL,
        10,
        d.gate,
        d.guard_zhao,
        datetime(2026, 11, 24, 16, 10, tzinfo=UTC),
        datetime(2026, 11, 24, 16, 10, 40, tzinfo=UTC),
        "North door -> Roof in 40 s; walking takes 180 s",
    )


def absent(d: Depot) -> RuleBreach:
    return RuleBreach(
        RuleId.ABSENT_FROM_ZONE,
        Severity.MAJOR,
        10,
        d.gate,
        d.guard_zhao,
        datetime(2026, 11, 24, 18, 30, tzinfo=UTC),
        datetime(2026, 11, 24, 18, 55, tzinfo=UTC),
        "out of the post zone for 25 min (allowed 10 min)",
    )


def sink_run(d: Depot, breaches: list[RuleBreach], now: datetime = SCORED_AT) -> wf.SyncResult:
    sink = wf.DeviationSink(clock=lambda: now)
    with d.sessions() as s, s.begin():
        return sink.breaches_found(s, shift(d), breaches)


def items(d: Depot) -> list[RectificationItem]:
    with d.sessions() as s:
        return list(s.scalars(select(RectificationItem).order_by(RectificationItem.id)))


def test_breaches_become_deviations_with_owner_and_due_time(depot: Depot) -> None:
    result = sink_run(depot, [too_fast(depot), absent(depot)])
    assert (len(result.created), result.withdrawn, result.restored, result.unchanged) == (
        2,
        (),
        (),
        0,
    )
    with depot.sessions() as s:
        devs = s.scalars(select(Deviation).order_by(Deviation.id)).all()
        assert [(d.rule, d.severity, d.source, d.source_key) for d in devs] == [
            ("too_fast", "critical", "rule", "breach:too_fast:10:1795536600000"),
            ("absent_from_zone", "major", "rule", "breach:absent_from_zone:10:1795545000000"),
        ]
        assert {d.scope_key for d in devs} == {"shift:10"}
    got = items(depot)
    assert [(i.status, i.owner_id, i.due_at, i.next_escalation_at) for i in got] == [
        ("open", depot.sup_li, datetime(2026, 11, 25, 2, 30, tzinfo=UTC), got[0].due_at),
        ("open", depot.sup_wang, datetime(2026, 11, 25, 22, 30, tzinfo=UTC), got[1].due_at),
    ]


def test_rescoring_is_idempotent_withdraws_and_restores(depot: Depot) -> None:
    sink_run(depot, [too_fast(depot), absent(depot)])
    again = sink_run(depot, [too_fast(depot), absent(depot)])
    assert (again.created, again.withdrawn, again.unchanged) == ((), (), 2)

    # Late events arrive after an edge outage: the guard was in the zone after all.
    later = SCORED_AT + timedelta(hours=1)
    gone = sink_run(depot, [too_fast(depot)], now=later)
    assert (gone.created, len(gone.withdrawn), gone.unchanged) == ((), 1, 1)
    assert [i.status for i in items(depot)] == ["open", "withdrawn"]

    back = sink_run(depot, [too_fast(depot), absent(depot)], now=later + timedelta(hours=1))
    assert (len(back.restored), back.created) == (1, ())
    assert [i.status for i in items(depot)] == ["open", "open"]
    second = items(depot)[1].id
    with depot.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Deviation)) == 2
        actions = s.scalars(
            select(RectificationEvent.action)
            .where(RectificationEvent.item_id == second)
            .order_by(RectificationEvent.id)
        ).all()
    assert actions == ["create", "withdraw", "restore"]


def test_a_resolved_item_stays_resolved_when_its_breach_vanishes(depot: Depot) -> None:
    sink_run(depot, [absent(depot)])
    item_id = items(depot)[0].id
    with depot.sessions() as s, s.begin():
        wf.transition(s, item_id, wf.Action.START, actor_id=depot.sup_li, now=SCORED_AT)
        wf.transition(
            s, item_id, wf.Action.RESOLVE, actor_id=depot.sup_li, now=SCORED_AT, note="talked"
        )
    sink_run(depot, [], now=SCORED_AT + timedelta(hours=2))
    assert [i.status for i in items(depot)] == ["resolved"]


def test_workflow_open_in_progress_resolved_verified(depot: Depot) -> None:
    sink_run(depot, [too_fast(depot)])
    item_id = items(depot)[0].id
    t = SCORED_AT + timedelta(minutes=5)
    with depot.sessions() as s, s.begin():
        wf.transition(s, item_id, wf.Action.START, actor_id=depot.sup_li, now=t)
        wf.transition(
            s,
            item_id,
            wf.Action.RESOLVE,
            actor_id=depot.sup_li,
            now=t + timedelta(hours=1),
            note="Guard Zhao retrained; tags re-fixed with tamper seals",
        )
        wf.transition(
            s,
            item_id,
            wf.Action.VERIFY,
            actor_id=depot.sup_wang,
            now=t + timedelta(hours=2),
        )
    with depot.sessions() as s:
        item = s.get(RectificationItem, item_id)
        assert item is not None
        assert (item.status, item.resolved_by, item.verified_by, item.next_escalation_at) == (
            "verified",
            depot.sup_li,
            depot.sup_wang,
            None,
        )
        assert item.resolution_note == "Guard Zhao retrained; tags re-fixed with tamper seals"
        history = s.execute(
            select(
                RectificationEvent.action,
                RectificationEvent.from_status,
                RectificationEvent.to_status,
            )
            .where(RectificationEvent.item_id == item_id)
            .order_by(RectificationEvent.id)
        ).all()
    assert [tuple(h) for h in history] == [
        ("create", None, "open"),
        ("start", "open", "in_progress"),
        ("resolve", "in_progress", "resolved"),
        ("verify", "resolved", "verified"),
    ]


@pytest.mark.parametrize(
    ("moves", "refused", "message"),
    [
        (
            [],
            wf.Action.RESOLVE,
            "rectification item {id} is open: it cannot resolve (allowed from open: start)",
        ),
        (
            [],
            wf.Action.VERIFY,
            "rectification item {id} is open: it cannot verify (allowed from open: start)",
        ),
        (
            [wf.Action.START],
            wf.Action.START,
            "rectification item {id} is in_progress: it cannot start "
            "(allowed from in_progress: resolve)",
        ),
        (
            [wf.Action.START, wf.Action.RESOLVE, wf.Action.VERIFY],
            wf.Action.REOPEN,
            "rectification item {id} is verified: it cannot reopen "
            "(allowed from verified: nothing (final))",
        ),
    ],
)
def test_invalid_transitions_are_refused_with_the_allowed_moves(
    depot: Depot, moves: list[wf.Action], refused: wf.Action, message: str
) -> None:
    sink_run(depot, [too_fast(depot)])
    item_id = items(depot)[0].id
    with depot.sessions() as s, s.begin():
        for move in moves:
            wf.transition(s, item_id, move, actor_id=depot.sup_li, now=SCORED_AT, note="done")
    with depot.sessions() as s, s.begin(), pytest.raises(wf.InvalidTransition) as caught:
        wf.transition(s, item_id, refused, actor_id=depot.sup_li, now=SCORED_AT, note="x")
    assert str(caught.value) == message.format(id=item_id)


def test_resolving_needs_a_note_and_reopen_sends_it_back(depot: Depot) -> None:
    sink_run(depot, [absent(depot)])
    item_id = items(depot)[0].id
    with depot.sessions() as s, s.begin():
        wf.transition(s, item_id, wf.Action.START, actor_id=depot.sup_wang, now=SCORED_AT)
    with depot.sessions() as s, s.begin(), pytest.raises(wf.InvalidInput, match="needs a note"):
        wf.transition(
            s, item_id, wf.Action.RESOLVE, actor_id=depot.sup_wang, now=SCORED_AT, note="  "
        )
    with depot.sessions() as s, s.begin():
        wf.transition(
            s, item_id, wf.Action.RESOLVE, actor_id=depot.sup_wang, now=SCORED_AT, note="warned"
        )
        wf.transition(
            s, item_id, wf.Action.REOPEN, actor_id=depot.sup_li, now=SCORED_AT, note="not enough"
        )
    got = items(depot)[0]
    assert (got.status, got.resolved_at, got.next_escalation_at) == (
        "in_progress",
        None,
        got.due_at,
    )


def test_overdue_items_escalate_once_per_interval_up_to_the_top_level(depot: Depot) -> None:
    sink_run(depot, [absent(depot)])  # major: due 2026-11-25T22:30Z
    due = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)

    def escalate(at: datetime) -> list[int]:
        with depot.sessions() as s, s.begin():
            return wf.escalate_overdue(s, now=at)

    assert escalate(due - timedelta(seconds=1)) == []
    item_id = items(depot)[0].id
    assert escalate(due) == [item_id]
    assert escalate(due + timedelta(hours=1)) == []  # next one 24 h later
    assert escalate(due + timedelta(hours=24)) == [item_id]
    assert escalate(due + timedelta(hours=48)) == [item_id]
    assert escalate(due + timedelta(days=30)) == []  # level 3 is the top
    got = items(depot)[0]
    assert (got.escalation_level, got.overdue, got.next_escalation_at) == (3, True, None)
    with depot.sessions() as s:
        notes = s.scalars(
            select(RectificationEvent.note)
            .where(RectificationEvent.action == "escalate")
            .order_by(RectificationEvent.id)
        ).all()
    assert notes == [
        "overdue by 0 h 0 min; level 1",
        "overdue by 24 h 0 min; level 2",
        "overdue by 48 h 0 min; level 3",
    ]
    with depot.sessions() as s:
        counts = wf.item_counts(s, depot.site, now=due + timedelta(days=3))
    assert (counts.open, counts.overdue, counts.escalated) == (1, 1, 1)


def test_resolved_items_do_not_escalate(depot: Depot) -> None:
    sink_run(depot, [too_fast(depot)])
    item_id = items(depot)[0].id
    with depot.sessions() as s, s.begin():
        wf.transition(s, item_id, wf.Action.START, actor_id=depot.sup_li, now=SCORED_AT)
        wf.transition(
            s, item_id, wf.Action.RESOLVE, actor_id=depot.sup_li, now=SCORED_AT, note="ok"
        )
    with depot.sessions() as s, s.begin():
        assert wf.escalate_overdue(s, now=SCORED_AT + timedelta(days=9)) == []


def test_workflow_steps_reach_the_influx_outbox(depot: Depot) -> None:
    now = SCORED_AT
    sink = wf.DeviationSink(clock=lambda: now)
    with depot.sessions() as s, s.begin():
        sink.breaches_found(s, shift(depot), [too_fast(depot)])  # deviation + opened
        assert wf.flush_lines(s, now=now, enabled=True) == 2
        item_id = s.scalars(select(RectificationItem.id)).one()
        wf.escalate_overdue(s, now=now + timedelta(hours=5))
        start = now + timedelta(hours=6)
        wf.transition(s, item_id, wf.Action.START, actor_id=depot.sup_li, now=start)
        done = now + timedelta(hours=7)
        wf.transition(s, item_id, wf.Action.RESOLVE, actor_id=depot.sup_li, now=done, note="ok")
        assert wf.flush_lines(s, now=done, enabled=True) == 3
        assert wf.flush_lines(s, now=done, enabled=True) == 0
    with depot.sessions() as s:
        rows = s.execute(
            select(InfluxOutbox.n_points, InfluxOutboxLines.lines)
            .join(InfluxOutboxLines, InfluxOutboxLines.outbox_id == InfluxOutbox.id)
            .order_by(InfluxOutbox.id)
        ).all()
    assert [r.n_points for r in rows] == [2, 3]
    lines = [ln for r in rows for ln in r.lines.split("\n")]
    assert lines[0].startswith("deviation,")
    transitions = [ln.split("transition=")[1].split(" ")[0] for ln in lines[1:]]
    assert transitions == ["opened", "escalated", "started", "resolved"]
    assert "open_delta=1i,overdue_delta=0i" in lines[1]
    assert "open_delta=0i,overdue_delta=1i" in lines[2]
    assert "open_delta=-1i,overdue_delta=-1i" in lines[4]


def test_deviations_from_a_scored_shift_include_missed_rounds_and_equipment(depot: Depot) -> None:
    ref = shift(depot)
    rounds = (
        RoundOutcome(1, 0, SHIFT_START, SHIFT_START, SHIFT_START, (1, 2, 3), (), ()),
        RoundOutcome(1, 1, SHIFT_START, SHIFT_START, SHIFT_START, (1,), (2,), (3,)),
        RoundOutcome(1, 2, SHIFT_START, SHIFT_START, SHIFT_START, (), (), (1, 2, 3)),
    )
    score = ShiftScore(10, 80.0, rounds, (), (too_fast(depot),), {"radio": 0.5, "torch": 1.0})
    specs = wf.from_shift_score(score, ref)
    assert [(s.source_key, s.rule, s.severity.value) for s in specs] == [
        ("breach:too_fast:10:1795536600000", "too_fast", "critical"),
        ("round:10:1:1", "round_partial", "minor"),
        ("round:10:1:2", "round_missed", "major"),
        ("equipment:10:radio", "equipment_not_ready", "major"),
    ]
    assert specs[1].detail == "round 2 of plan 1: 1 of 3 checkpoints missed"
    assert specs[3].detail == "radio ready for 50% of the shift (target 90%)"


def test_inspections_and_complaints_feed_the_score_hook(depot: Depot) -> None:
    t = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)  # 01:00 in Kunming, inside the night shift
    with depot.sessions() as s, s.begin():
        passed = wf.record_inspection(
            s,
            site_id=depot.site,
            post_id=depot.gate,
            guard_id=depot.guard_zhao,
            inspector_id=depot.sup_li,
            inspected_at=t,
            result=wf.InspectionResult.PASS,
            notes="",
            now=t,
        )
        failed = wf.record_inspection(
            s,
            site_id=depot.site,
            post_id=depot.gate,
            guard_id=depot.guard_zhao,
            inspector_id=depot.sup_li,
            inspected_at=t + timedelta(hours=1),
            result=wf.InspectionResult.FAIL,
            notes="asleep in the gatehouse",
            now=t,
        )
        # Another guard's inspection and another post's do not count for Zhao at the gate.
        wf.record_inspection(
            s,
            site_id=depot.site,
            post_id=depot.gate,
            guard_id=depot.guard_qian,
            inspector_id=depot.sup_li,
            inspected_at=t,
            result=wf.InspectionResult.FAIL,
            notes="no radio",
            now=t,
        )
        wf.record_inspection(
            s,
            site_id=depot.site,
            post_id=depot.car_park,
            guard_id=None,
            inspector_id=depot.sup_li,
            inspected_at=t,
            result=wf.InspectionResult.PARTIAL,
            notes="log book incomplete",
            now=t,
        )
        complaint = wf.file_complaint(
            s,
            site_id=depot.site,
            post_id=depot.gate,
            channel=wf.ComplaintChannel.PHONE,
            description="Gate left open at 02:30",
            filed_by=depot.customer,
            received_at=t + timedelta(minutes=90),
        )
        dismissed = wf.file_complaint(
            s,
            site_id=depot.site,
            post_id=depot.gate,
            channel=wf.ComplaintChannel.WEB,
            description="Guard was rude",
            filed_by=None,
            received_at=t,
        )
    assert passed.deviation_id is None and failed.deviation_id is not None
    refused = pytest.raises(wf.InvalidTransition, match="allowed from received: investigating")
    with depot.sessions() as s, s.begin(), refused:
        wf.update_complaint(s, complaint.id, wf.ComplaintStatus.UPHELD, resolution="x", now=t)
    with depot.sessions() as s, s.begin():
        for cid, verdict in (
            (complaint.id, wf.ComplaintStatus.UPHELD),
            (dismissed.id, wf.ComplaintStatus.DISMISSED),
        ):
            wf.update_complaint(s, cid, wf.ComplaintStatus.INVESTIGATING, resolution=None, now=t)
            wf.update_complaint(
                s, cid, verdict, resolution="CCTV checked", now=t + timedelta(hours=9)
            )
    with depot.sessions() as s:
        deductions = wf.WorkflowDeductions().deductions_for(s, shift(depot))
        assert [(d.category, d.code, d.points, d.ref) for d in deductions] == [
            (Category.INSPECTION, "inspection_fail", 15.0, f"inspection {failed.id}"),
            (Category.COMPLAINT, "complaint_upheld", 10.0, f"complaint {complaint.id}"),
        ]
        assert deductions[0].reason == "supervisor spot check fail: asleep in the gatehouse"
        rules = s.scalars(select(Deviation.rule).order_by(Deviation.id)).all()
    assert rules == ["inspection_fail", "inspection_fail", "inspection_partial", "complaint_upheld"]


@pytest.mark.parametrize(
    ("post", "text", "error"),
    [
        ("other_post", "gate open", "no post"),
        ("gate", "", "needs a note"),
        ("gate", "x" * 4001, "at most 4000"),
    ],
)
def test_bad_complaints_are_refused_with_a_reason(
    depot: Depot, post: str, text: str, error: str
) -> None:
    with depot.sessions() as s, s.begin(), pytest.raises(wf.WorkflowError, match=error):
        wf.file_complaint(
            s,
            site_id=depot.site,
            post_id=getattr(depot, post),
            channel=wf.ComplaintChannel.EMAIL,
            description=text,
            filed_by=None,
            received_at=SCORED_AT,
        )


def test_reassign_only_to_a_supervisor_of_the_site(depot: Depot) -> None:
    sink_run(depot, [too_fast(depot)])
    item_id = items(depot)[0].id
    with (
        depot.sessions() as s,
        s.begin(),
        pytest.raises(wf.InvalidInput, match="not an active supervisor"),
    ):
        wf.reassign(s, item_id, owner_id=depot.user_zhao, actor_id=depot.sup_li, now=SCORED_AT)
    with depot.sessions() as s, s.begin():
        wf.reassign(s, item_id, owner_id=depot.sup_wang, actor_id=depot.sup_li, now=SCORED_AT)
    assert items(depot)[0].owner_id == depot.sup_wang


def test_the_escalation_worker_ticks_and_stops(depot: Depot) -> None:
    sink_run(depot, [too_fast(depot)])  # critical: due 2026-11-25T02:30Z
    clock = [datetime(2026, 11, 25, 2, 29, tzinfo=UTC)]
    worker = wf.EscalationWorker(
        depot.sessions, interval_s=3600.0, clock=lambda: clock[0], influx_enabled=True
    )
    worker.start()
    assert worker.tick() == 0
    clock[0] = datetime(2026, 11, 25, 2, 30, tzinfo=UTC)
    assert worker.tick() == 1
    assert (worker.escalated, worker.failing) == (1, False)
    worker.stop()
    assert items(depot)[0].escalation_level == 1
    with depot.sessions() as s:
        (lines,) = s.scalars(select(InfluxOutboxLines.lines)).all()
    assert lines.startswith("rectification,") and "transition=escalated" in lines
