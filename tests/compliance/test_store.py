"""Scores from the real store (SQLite and PostgreSQL): versions, late events, hooks, outbox."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from storetest import SHIFT_END, SHIFT_START, Depot, depot

from cloud_api.compliance import store
from cloud_api.compliance.types import (
    Category,
    Deduction,
    RuleBreach,
    RuleId,
    ShiftRef,
    ShiftScore,
)
from cloud_api.db import session_scope
from cloud_api.models import ComplianceScore, InfluxOutbox, InfluxOutboxLines


@pytest.fixture
def site(db_url: str) -> Iterator[Depot]:
    yield from depot(db_url)


def now() -> datetime:
    """Real time: ``ingested_at`` is stamped with it, and the shift lies in the past."""
    return datetime.now(UTC)


class Recorder:
    """A breach sink, score sink and deduction source that remembers its calls."""

    def __init__(self, extra: Sequence[Deduction] = ()) -> None:
        self.breaches: list[tuple[int, tuple[RuleBreach, ...]]] = []
        self.scores: list[float] = []
        self.extra = tuple(extra)

    def breaches_found(
        self, session: Session, shift: ShiftRef, breaches: Sequence[RuleBreach]
    ) -> None:
        self.breaches.append((shift.shift_id, tuple(breaches)))

    def score_found(self, session: Session, shift: ShiftRef, score: ShiftScore) -> None:
        self.scores.append(score.score)

    def deductions_for(self, session: Session, shift: ShiftRef) -> Sequence[Deduction]:
        return self.extra


def hooks(recorder: Recorder) -> store.Hooks:
    return store.Hooks([recorder], [recorder], [recorder], [])


def test_late_events_after_an_outage_change_a_finished_score(site: Depot) -> None:
    """Rounds 1 and 2 arrive on time; round 3 (00:00 Berlin) is stuck on the edge.

    v1: round 3 missed (3 x 5 = 15) and 112 min without a visit after 23:08,
    22 min over the 90 allowed (2 x 22 / 90 = 0.4889): 84.51. The late taps
    arrive: v2 scores 100 and v1 stays as history.
    """
    site.ingest(site.rounds(range(2)) + site.heartbeats())
    shift_id = site.shift()
    recorder = Recorder()
    with session_scope(site.engine) as s:
        first = store.score_shift_row(s, shift_id, now=now(), hooks=hooks(recorder))
    assert first.changed and first.row.version == 1 and first.row.final
    assert first.score.score == 84.51
    assert [r.status for r in first.score.rounds] == ["completed", "completed", "missed"]
    assert "2026-11-25 00:00:00 CET" in first.score.deductions[0].reason
    assert [b.rule_id for b in first.score.breaches] == [RuleId.INACTIVE]
    assert recorder.scores == [84.51]

    with session_scope(site.engine) as s:
        again = store.score_shift_row(s, shift_id, now=now(), hooks=hooks(recorder))
        assert store.due_for_scoring(s, now=now()) == []
    assert not again.changed and again.row.version == 1  # idempotent: nothing new
    assert recorder.scores == [84.51]

    site.ingest(site.rounds(range(2, 3)))  # the edge comes back
    with session_scope(site.engine) as s:
        assert store.due_for_scoring(s, now=now()) == [shift_id]
        second = store.score_shift_row(s, shift_id, now=now(), hooks=hooks(recorder))
    assert second.changed and second.row.version == 2 and second.score.score == 100.0
    assert recorder.breaches[-1] == (shift_id, ())  # the inactivity breach is gone
    with session_scope(site.engine) as s:
        versions = [(r.version, r.current, r.score) for r in store.history(s, shift_id)]
        assert versions == [(1, False, 84.51), (2, True, 100.0)]
        [current] = store.current_scores(s, site_id=site.site_id, start=SHIFT_START, end=SHIFT_END)
    assert (current.version, current.score, current.rounds_completed) == (2, 100.0, 3)


def test_a_live_shift_is_updated_in_place_until_it_ends(site: Depot) -> None:
    site.ingest(site.rounds(range(1)) + site.heartbeats(0, 40))
    shift_id = site.shift()
    recorder = Recorder()
    with session_scope(site.engine) as s:
        live = store.score_shift_row(
            s, shift_id, now=SHIFT_START + timedelta(minutes=40), hooks=hooks(recorder)
        )
    assert not live.row.final and live.row.version == 1
    assert (live.score.rounds_expected, live.score.pending_rounds, live.score.score) == (
        1,
        2,
        100.0,
    )
    assert live.result["as_of"] == "2026-11-24T21:40:00Z"
    site.ingest(site.rounds(range(1, 3)) + site.heartbeats(40, 180))
    with session_scope(site.engine) as s:
        done = store.score_shift_row(s, shift_id, now=now(), hooks=hooks(recorder))
        count = s.scalar(select(func.count()).select_from(ComplianceScore))
    assert done.row.final and done.row.version == 1 and count == 1
    assert done.score.score == 100.0


def test_workflow_deductions_count_and_scores_go_to_the_outbox(db_url: str) -> None:
    for site in depot(db_url, influx_url="http://127.0.0.1:9"):
        site.ingest(site.rounds(range(3)) + site.heartbeats())
        shift_id = site.shift()
        extra = Deduction(Category.COMPLAINT, "complaint_upheld", 4.0, "gate left open", ref="c1")
        with session_scope(site.engine) as s:
            before = s.scalar(select(func.count()).select_from(InfluxOutbox))
            result = store.score_shift_row(
                s, shift_id, now=now(), hooks=hooks(Recorder([extra])), sink=True
            )
        assert result.score.score == 96.0
        assert result.result["components"]["rounds"] == 100.0
        with session_scope(site.engine) as s:
            rows = s.scalars(select(InfluxOutboxLines.lines)).all()
            after = s.scalar(select(func.count()).select_from(InfluxOutbox))
        assert before is not None and after == before + 1
        lines = rows[-1].splitlines()
        assert len(lines) == 4  # the score and its three rounds
        assert lines[0].startswith(
            f"compliance,guard={site.guard_id},period=shift,post={site.post_id}"
        )
        assert "score=96" in lines[0]


def test_two_shifts_of_one_guard_at_two_posts_overlap(site: Depot) -> None:
    """The same wearable reports while its guard is planned at two posts."""
    site.ingest(site.rounds(range(3)) + site.heartbeats())
    with session_scope(site.engine) as s:
        from cloud_api.models import Post

        other_post = Post(site_id=site.site_id, name="Back gate")
        s.add(other_post)
        s.flush()
        other_post_id = other_post.id
    first = site.shift()
    second = site.shift(post_id=other_post_id)
    with session_scope(site.engine) as s:
        a = store.score_shift_row(s, first, now=now(), hooks=store.Hooks())
        b = store.score_shift_row(s, second, now=now(), hooks=store.Hooks())
    assert [x.rule_id for x in a.score.breaches] == [RuleId.TWO_POSTS]
    assert a.score.breaches[0].other_shift_id == second
    assert a.score.score == 90.0  # critical breach: 10
    assert RuleId.TWO_POSTS in [x.rule_id for x in b.score.breaches]


def test_unknown_shift_and_unknown_guard_are_errors(site: Depot) -> None:
    with session_scope(site.engine) as s, pytest.raises(store.ComplianceError, match="no shift"):
        store.score_shift_row(s, 999, now=now(), hooks=store.Hooks())
    with pytest.raises(store.ComplianceError, match="no guard 999"):
        site.shift(guard_id=999)


def test_scoring_a_window_in_bulk_gives_the_one_shift_scores(site: Depot) -> None:
    """The bulk path (a month of a company) and the one-shift path agree."""
    site.ingest(site.rounds(range(2)) + site.heartbeats(0, 100))
    first = site.shift()
    later = site.shift()  # a second shift of the same wearable, same times
    with session_scope(site.engine) as s:
        bulk = store.score_window(
            s, start=SHIFT_START, end=SHIFT_END, now=now(), hooks=store.Hooks(), persist=True
        )
    assert (bulk.shifts, bulk.changed) == (2, 2)
    assert bulk.rows_read == 6 + 20
    with session_scope(site.engine) as s:
        one = store.score_shift_row(s, first, now=now(), hooks=store.Hooks())
        other = store.score_shift_row(s, later, now=now(), hooks=store.Hooks())
    assert not one.changed and not other.changed  # same digest as the bulk result
    assert bulk.scores == {first: one.score.score, later: other.score.score}
