"""Round expansion in the site's time zone: DST nights, midnight, fixed and random schedules."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from compliancetest import ALL_WEEK, plan

from cloud_api.compliance.engine import ShiftInput, score_shift
from cloud_api.compliance.shifts import Shift, Visit
from cloud_api.compliance.targets import (
    ActiveWindow,
    PostTargets,
    Schedule,
    ScheduleKind,
    Weights,
    expected_rounds,
)
from cloud_api.compliance.types import Category

NIGHT = ActiveWindow(frozenset(range(7)), time(22, 0), time(6, 0))
HOURLY = Schedule(ScheduleKind.INTERVAL, interval_s=3600)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "start", "end", "hours", "rounds"),
    [
        # Europe/Berlin falls back on 2026-10-25 at 03:00 CEST -> 02:00 CET:
        # 22:00 CEST (20:00 UTC) to 06:00 CET (05:00 UTC) is 9 hours.
        ("Europe/Berlin", utc(2026, 10, 24, 20), utc(2026, 10, 25, 5), 9, 9),
        # America/New_York springs forward on 2026-03-08 at 02:00 EST -> 03:00 EDT:
        # 22:00 EST (03:00 UTC) to 06:00 EDT (10:00 UTC) is 7 hours.
        ("America/New_York", utc(2026, 3, 8, 3), utc(2026, 3, 8, 10), 7, 7),
        # An ordinary night in Berlin: 8 hours, 8 rounds.
        ("Europe/Berlin", utc(2026, 11, 24, 21), utc(2026, 11, 25, 5), 8, 8),
    ],
)
def test_a_night_shift_across_a_dst_change_gets_a_round_per_real_hour(
    zone: str, start: datetime, end: datetime, hours: int, rounds: int
) -> None:
    night = plan(windows=(NIGHT,), schedule=HOURLY)
    slots = expected_rounds(night, zone, start, end)
    assert (end - start) == timedelta(hours=hours)
    assert len(slots) == rounds
    assert [s.start for s in slots] == [start + timedelta(hours=h) for h in range(rounds)]


def test_the_dst_night_is_scored_against_nine_rounds() -> None:
    """Berlin, 2026-10-25: nine rounds of three checkpoints, all done but the round
    in the repeated hour (02:00-03:00 CET, i.e. 01:00 UTC): 27 visits, 3 missed,
    3 x 45/27 = 5 points."""
    start, end = utc(2026, 10, 24, 20), utc(2026, 10, 25, 5)
    night = plan(windows=(NIGHT,), schedule=HOURLY)
    t = PostTargets(1, 1, "Europe/Berlin", (night,), weights=Weights({Category.PRESENCE: 0}))
    visits = [
        Visit(100 * h + cp, 1, cp, start + timedelta(hours=h, minutes=cp))
        for h in range(9)
        if h != 5
        for cp in (1, 2, 3)
    ]
    # Presence weight 0: the other 55 points are renormalised to 100, so
    # rounds weigh 45 / 85 * 100 = 52.94 and a visit 52.94 / 27 = 1.9608.
    score = score_shift(ShiftInput(Shift(1, 7, 1, 1, start, end), t, visits))
    assert [r.status for r in score.rounds].count("missed") == 1
    [missed] = [d for d in score.deductions if d.code == "round_missed"]
    assert missed.start == utc(2026, 10, 25, 1)
    assert "2026-10-25 02:00:00 CET" in missed.reason  # the second 02:00, after falling back
    assert missed.points == pytest.approx(3 * (45 / 85 * 100) / 27, abs=1e-4)


def test_fixed_times_in_the_spring_gap_happen_once_shifted_forward() -> None:
    """New York, 2026-03-08: 02:30 does not exist; read with EST it is 07:30 UTC,
    which is 03:30 EDT, the next fixed time, so the two are one round."""
    fixed = Schedule(ScheduleKind.FIXED, fixed_times=(time(1, 30), time(2, 30), time(3, 30)))
    slots = expected_rounds(
        plan(windows=(NIGHT,), schedule=fixed),
        "America/New_York",
        utc(2026, 3, 8, 3),
        utc(2026, 3, 8, 10),
    )
    assert [s.start for s in slots] == [utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30)]


def test_fixed_times_in_the_autumn_repeat_happen_once_at_the_first_occurrence() -> None:
    fixed = Schedule(ScheduleKind.FIXED, fixed_times=(time(2, 30),))
    slots = expected_rounds(
        plan(windows=(NIGHT,), schedule=fixed),
        "Europe/Berlin",
        utc(2026, 10, 24, 20),
        utc(2026, 10, 25, 5),
    )
    assert [s.start for s in slots] == [utc(2026, 10, 25, 0, 30)]  # 02:30 CEST


def test_random_rounds_are_one_per_slot_of_the_window() -> None:
    """22:00-06:00 with 4 random rounds: slots of 2 h, late until 5 min after a
    slot only for the last one (the next slot closes the one before)."""
    rnd = Schedule(ScheduleKind.RANDOM, rounds_per_window=4)
    slots = expected_rounds(
        plan(windows=(NIGHT,), schedule=rnd), "UTC", utc(2026, 11, 24, 22), utc(2026, 11, 25, 6)
    )
    assert [(s.start.hour, s.due.hour, s.closes.hour) for s in slots] == [
        (22, 0, 0),
        (0, 2, 2),
        (2, 4, 4),
        (4, 6, 6),
    ]
    assert slots[-1].closes == utc(2026, 11, 25, 6, 5)


def test_active_windows_follow_the_weekday_in_local_time() -> None:
    """Only Saturday nights (weekday 5), in Tokyo: the window opens Sat 22:00 JST."""
    sat = ActiveWindow(frozenset({5}), time(22, 0), time(2, 0))
    slots = expected_rounds(
        plan(windows=(sat,), schedule=HOURLY),
        "Asia/Tokyo",
        utc(2026, 11, 27, 0),  # Fri 09:00 JST
        utc(2026, 11, 29, 0),  # Sun 09:00 JST
    )
    assert [s.start for s in slots] == [
        utc(2026, 11, 28, 13) + timedelta(hours=h) for h in range(4)
    ]


def test_a_round_that_does_not_fit_before_the_shift_ends_is_not_expected() -> None:
    slots = expected_rounds(
        plan(windows=(ALL_WEEK,)), "UTC", utc(2026, 1, 1, 0), utc(2026, 1, 1, 0, 30)
    )
    assert len(slots) == 1  # 00:00-00:20 fits; nothing else starts
    slots = expected_rounds(
        plan(windows=(ALL_WEEK,)), "UTC", utc(2026, 1, 1, 0), utc(2026, 1, 1, 0, 10)
    )
    assert slots == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"checkpoints": ()}, "no checkpoints"),
        ({"checkpoints": (1, 1)}, "twice"),
        ({"round_duration_s": 0}, "round_duration_s"),
        ({"windows": ()}, "no active window"),
    ],
)
def test_nonsense_plans_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(**kwargs)


def test_unknown_time_zone_and_heavy_order_weight_are_refused() -> None:
    with pytest.raises(Exception, match="Nowhere"):
        PostTargets(1, 1, "Nowhere/Town")
    with pytest.raises(ValueError, match="order weight"):
        Weights({Category.ORDER: 30.0})


def test_the_demo_summary_rounds_start_at_the_plan_start_for_any_interval() -> None:
    """cloud_api.rounds runs on the engine: 70 s does not divide a day, rounds still
    start at the plan's start, 22:13:07.5 UTC."""
    from cloud_api.rounds import RoundPlan, Visit, summarize

    start = datetime(2026, 11, 25, 22, 13, 7, 500000, tzinfo=UTC)
    plan = RoundPlan("Gate", ("A", "B"), start, start + timedelta(seconds=210), 70.0)
    summary = summarize(
        plan, [Visit("A", start + timedelta(seconds=1)), Visit("B", start + timedelta(seconds=75))]
    )
    assert [r.window_start for r in summary.rounds] == [
        start + timedelta(seconds=70 * i) for i in range(3)
    ]
    assert [r.missed for r in summary.rounds] == [("B",), ("A",), ("A", "B")]
