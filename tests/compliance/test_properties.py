"""Properties of the engine: filling a missed checkpoint never hurts; order does not matter."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

from compliancetest import SHIFT, WEARABLE, A, B, C, at, heartbeats, plan, shift_input, targets
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cloud_api.compliance.engine import score_shift
from cloud_api.compliance.shifts import Visit
from cloud_api.compliance.targets import expected_rounds

WALK_S = 60
PLANS = {
    "any order": plan(default_walk_s=WALK_S),
    "ordered": plan(ordered=True, default_walk_s=WALK_S),
}

visit_lists = st.lists(
    st.tuples(
        st.sampled_from((A, B, C)),
        st.integers(min_value=-600, max_value=3 * 3600 + 600),  # seconds from shift start
        st.sampled_from(((), ("clock_unsynced",))),
        st.sampled_from(("high", "medium", "low")),
    ),
    max_size=25,
)


def as_visits(raw: list[tuple[int, int, tuple[str, ...], str]]) -> list[Visit]:
    return [
        Visit(i + 1, WEARABLE, cp, at(0) + timedelta(seconds=s), flags=flags, assurance=assurance)
        for i, (cp, s, flags, assurance) in enumerate(raw)
    ]


SAMPLES = heartbeats(0, 90) + heartbeats(100, 180, battery=10)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=visit_lists,
    plan_name=st.sampled_from(sorted(PLANS)),
    pick=st.integers(min_value=0),
    offset=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_a_visit_that_fills_a_missed_checkpoint_never_lowers_the_score(
    raw: list[tuple[int, int, tuple[str, ...], str]], plan_name: str, pick: int, offset: float
) -> None:
    """A plausible visit (not faster than walking from or to its neighbours, no
    flags) at a checkpoint a round missed, inside that round's window."""
    the_plan = PLANS[plan_name]
    t = targets(plans=(the_plan,))
    visits = as_visits(raw)
    before = score_shift(shift_input(visits, SAMPLES, targets=t))
    gaps = [(r, cp) for r in before.rounds for cp in r.missed]
    assume(gaps)
    rnd, cp = gaps[pick % len(gaps)]
    span_s = (rnd.closes - rnd.start).total_seconds()
    when = rnd.start + timedelta(seconds=int(offset * span_s))
    assume(when < rnd.closes)
    for other in visits:
        if other.checkpoint_id != cp:
            assume(abs((other.at - when).total_seconds()) >= WALK_S)
    filled = [*visits, Visit(10_000, WEARABLE, cp, when)]
    after = score_shift(shift_input(filled, SAMPLES, targets=t))
    assert after.score >= before.score, (before.deductions, after.deductions)
    assert after.checkpoints_missed == before.checkpoints_missed - 1


@settings(max_examples=200, deadline=None)
@given(raw=visit_lists, seed=st.integers(), ordered=st.booleans())
def test_scoring_is_deterministic_and_independent_of_arrival_order(
    raw: list[tuple[int, int, tuple[str, ...], str]], seed: int, ordered: bool
) -> None:
    t = targets(plans=(PLANS["ordered" if ordered else "any order"],))
    visits = as_visits(raw)
    samples = list(SAMPLES)
    first = score_shift(shift_input(visits, samples, targets=t))
    shuffler = random.Random(seed)
    shuffler.shuffle(visits)
    shuffler.shuffle(samples)
    again = score_shift(shift_input(visits, samples, targets=t))
    assert again == first
    assert 0.0 <= first.score <= 100.0
    assert first.score == round(max(0.0, 100.0 - sum(d.points for d in first.deductions)), 2)


def test_the_round_windows_of_a_plan_never_overlap() -> None:
    slots = expected_rounds(plan(grace_s=7200), "UTC", SHIFT.start, SHIFT.end)
    for a, b in itertools.pairwise(slots):
        assert a.closes <= b.start
