from datetime import UTC, datetime, timedelta

import pytest

from cloud_api.rounds import RoundPlan, Visit, summarize

START = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)


def plan(**overrides: object) -> RoundPlan:
    values: dict[str, object] = {
        "post": "Main gate",
        "checkpoints": ("A", "B", "C"),
        "start": START,
        "end": START + timedelta(minutes=90),
        "interval_s": 1800.0,
    }
    values.update(overrides)
    return RoundPlan(**values)  # type: ignore[arg-type]


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def test_counts_each_checkpoint_once_per_round_and_lists_misses() -> None:
    visits = [
        Visit("A", at(1)),
        Visit("A", at(2)),  # second tap in the same round counts once
        Visit("B", at(5)),
        Visit("C", at(29.99)),
        Visit("A", at(31)),
        Visit("C", at(40)),
        Visit("B", at(61)),
    ]
    summary = summarize(plan(), visits)
    assert [r.visited for r in summary.rounds] == [("A", "B", "C"), ("A", "C"), ("B",)]
    assert [r.missed for r in summary.rounds] == [(), ("B",), ("A", "C")]
    assert summary.rounds[0].complete and not summary.rounds[1].complete
    assert (summary.expected_visits, summary.verified_visits) == (9, 6)
    assert summary.compliance_pct == pytest.approx(66.6667, abs=1e-3)


def test_ignores_visits_outside_the_plan_and_unknown_checkpoints() -> None:
    visits = [Visit("A", at(-1)), Visit("A", at(90)), Visit("Z", at(3))]
    summary = summarize(plan(), visits)
    assert summary.verified_visits == 0
    assert summary.rounds[-1].window_end == at(90)


def test_partial_last_window_is_not_a_round() -> None:
    assert plan(end=START + timedelta(minutes=100)).round_count == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"interval_s": 0.0}, "interval_s"),
        ({"end": START}, "end after"),
        ({"start": datetime(2026, 11, 25, 22, 0)}, "timezone-aware"),
    ],
)
def test_rejects_nonsense_plans(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(**overrides)
