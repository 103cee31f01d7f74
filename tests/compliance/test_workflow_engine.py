"""The scoring engine and the workflow together: real ingest, real scores, real deviations.

The night shift of storetest.py (three hourly rounds of checkpoints A, B, C) is
scored through ``store.score_shift_row`` with the default hooks, which are the
workflow's: round 2 was missed, so a ``round_missed`` deviation opens an item,
and the engine's self-restraint rules see no tap for 114 minutes (``inactive``,
longer than the post's 90); a supervisor's failed spot check at 23:30 Berlin
costs 15 points. Then the round-2 taps arrive late (the edge was offline):
re-scoring withdraws both deviations and their items, and the score rises.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from storetest import SHIFT_START, depot

from cloud_api.compliance import store
from cloud_api.compliance import workflow as wf
from cloud_api.db import session_scope
from cloud_api.models import Deviation, RectificationItem


def test_missed_round_opens_an_item_that_late_taps_withdraw(db_url: str) -> None:
    for site in depot(db_url):
        site.ingest([*site.rounds(range(0, 1)), *site.rounds(range(2, 3)), *site.heartbeats()])
        shift_id = site.shift()
        with session_scope(site.engine) as s:
            wf.record_inspection(
                s,
                site_id=site.site_id,
                post_id=site.post_id,
                guard_id=site.guard_id,
                inspector_id=None,
                inspected_at=SHIFT_START + timedelta(minutes=90),
                result=wf.InspectionResult.FAIL,
                notes="radio switched off",
                now=SHIFT_START + timedelta(minutes=95),
            )
        now = datetime.now(UTC)
        with session_scope(site.engine) as s:
            first = store.score_shift_row(s, shift_id, now=now)
        codes = {d.code for d in first.score.deductions}
        assert "inspection_fail" in codes
        with session_scope(site.engine) as s:
            rows = s.execute(
                select(Deviation.rule, Deviation.source_key, RectificationItem.status)
                .join(RectificationItem, RectificationItem.deviation_id == Deviation.id)
                .order_by(Deviation.id)
            ).all()
        assert [(r[0], r[1].split(":")[0], r[2]) for r in rows] == [
            ("inspection_fail", "inspection", "open"),
            ("inactive", "breach", "open"),
            ("round_missed", "round", "open"),
        ]
        assert rows[2][1] == f"round:{shift_id}:{site.plan_id}:1"

        site.ingest(site.rounds(range(1, 2)))  # the missed round's taps, late
        with session_scope(site.engine) as s:
            second = store.score_shift_row(s, shift_id, now=now + timedelta(minutes=1))
        assert second.score.score > first.score.score
        with session_scope(site.engine) as s:
            statuses = s.execute(
                select(
                    Deviation.rule, Deviation.withdrawn_at.is_not(None), RectificationItem.status
                )
                .join(RectificationItem, RectificationItem.deviation_id == Deviation.id)
                .order_by(Deviation.id)
            ).all()
        assert [tuple(r) for r in statuses] == [
            ("inspection_fail", False, "open"),
            ("inactive", True, "withdrawn"),
            ("round_missed", True, "withdrawn"),
        ]
