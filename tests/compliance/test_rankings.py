"""Incentive mechanism: monthly rankings, service stars and streaks.

Pure cases first (ties, thresholds, disqualification, streaks), then the
November month of reporttest.py on SQLite and PostgreSQL: Zhao Wei (shifts 85,
100, 95: mean 93.33) ranks above Qian Lei (80, 90: mean 85.00); Zhao's critical
deviation (tags tapped too fast) costs him any star; Qian, with a one-star
threshold of 80 and two 95-point shifts in October, has a two-month streak.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from reporttest import NOVEMBER, _score, build_november, z
from workflowtest import Depot, depot_on

from cloud_api.compliance.rankings import (
    RankingError,
    ShiftResult,
    StarPolicy,
    guard_rankings,
    guards_csv,
    rank_guards,
    site_rankings,
    sites_csv,
)

T = datetime(2026, 11, 3, tzinfo=UTC)


def results(guard: int, *scores: float) -> list[ShiftResult]:
    return [
        ShiftResult(guard * 100 + i, 1, 1, guard, T.replace(day=i + 1), s)
        for i, s in enumerate(scores)
    ]


def test_ties_share_a_rank_and_the_next_rank_is_skipped() -> None:
    ranking = rank_guards(
        results(1, 90, 100) + results(2, 95, 95) + results(3, 80),
        names={1: "An", 2: "Bo", 3: "Cai"},
        deviations={},
    )
    assert [(g.rank, g.name, g.mean_score, g.shifts) for g in ranking] == [
        (1, "An", 95.0, 2),
        (1, "Bo", 95.0, 2),
        (3, "Cai", 80.0, 1),
    ]


@pytest.mark.parametrize(
    ("scores", "deviations", "stars"),
    [
        ([98.0] * 8, {}, 3),
        ([97.9] * 8, {}, 2),
        ([95.0] * 8, {}, 2),
        ([90.0] * 8, {}, 1),
        ([89.99] * 8, {}, 0),
        ([100.0] * 7, {}, 0),  # fewer than 8 shifts: too little to judge
        ([100.0] * 8, {"major": 2}, 3),
        ([100.0] * 8, {"critical": 1}, 0),  # a "high-voltage line" crossed: no star
    ],
)
def test_service_stars_follow_the_thresholds(
    scores: list[float], deviations: dict[str, int], stars: int
) -> None:
    (row,) = rank_guards(results(1, *scores), names={}, deviations={1: deviations})
    assert row.stars == stars


def test_streaks_count_consecutive_starred_months_and_perfect_runs() -> None:
    ranking = rank_guards(
        # An: mean 97.78 (two stars), longest run of perfect shifts 5; Bo: nine perfect shifts.
        results(1, *([100.0] * 5 + [80.0] + [100.0] * 3)) + results(2, *([100.0] * 9)),
        names={1: "An", 2: "Bo"},
        deviations={},
        earlier_stars={1: [True, True, False, True], 2: [False]},
    )
    got = {g.name: (g.stars, g.streak_months, g.perfect_run) for g in ranking}
    assert got == {"Bo": (3, 1, 9), "An": (2, 3, 5)}


def test_bad_star_policies_are_refused() -> None:
    with pytest.raises(RankingError, match="highest first"):
        StarPolicy(thresholds=((1, 90.0), (2, 95.0)))
    with pytest.raises(RankingError, match="min_shifts"):
        StarPolicy(min_shifts=0)


@pytest.fixture
def depot(db_url: str) -> Iterator[Depot]:
    with depot_on(db_url) as d:
        build_november(d)
        with d.sessions() as s, s.begin():
            for day in (10, 11):  # Qian's October: two shifts of 95
                _score(
                    s, d, guard=d.guard_qian, post=d.car_park, start=z(day, 1, month=10), score=95
                )
        yield d


def test_november_guard_ranking_from_the_store(depot: Depot) -> None:
    policy = StarPolicy(thresholds=((1, 80.0),), min_shifts=2)
    with depot.sessions() as s:
        ranking = guard_rankings(s, site_id=depot.site, month=NOVEMBER, policy=policy)
    assert guards_csv(NOVEMBER, ranking) == (
        "month,rank,guard_id,guard,shifts,mean_score,lowest_score,deviations,"
        "critical_deviations,stars,streak_months,perfect_run\r\n"
        f"2026-11,1,{depot.guard_zhao},Zhao Wei,3,93.33,85.00,1,1,0,0,1\r\n"
        f"2026-11,2,{depot.guard_qian},Qian Lei,2,85.00,80.00,2,0,1,2,0\r\n"
    )


def test_site_ranking_from_the_store(depot: Depot) -> None:
    policy = StarPolicy(thresholds=((1, 80.0),), min_shifts=2)
    with depot.sessions() as s:
        ranking = site_rankings(
            s, site_ids=[depot.site, depot.other_site], month=NOVEMBER, policy=policy
        )
    assert sites_csv(NOVEMBER, ranking) == (
        "month,rank,site_id,site,shifts,guards,mean_score,deviations,stars_awarded\r\n"
        f"2026-11,1,{depot.site},Kunming depot,5,2,90.00,4,1\r\n"
    )
    with depot.sessions() as s, pytest.raises(RankingError, match="no site 999"):
        site_rankings(s, site_ids=[999], month=NOVEMBER)
