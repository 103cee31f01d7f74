"""Months in the site's own time zone, across offsets and daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cloud_api.compliance.report.period import Month, PeriodError, site_zone


@pytest.mark.parametrize(
    ("zone", "month", "start", "end", "hours"),
    [
        # Kunming: UTC+8 all year, so November starts on 31 October at 16:00 UTC.
        (
            "Asia/Shanghai",
            "2026-11",
            datetime(2026, 10, 31, 16, tzinfo=UTC),
            datetime(2026, 11, 30, 16, tzinfo=UTC),
            720,
        ),
        # Berlin: clocks jump forward on 29 March 2026, so March has 743 hours.
        (
            "Europe/Berlin",
            "2026-03",
            datetime(2026, 2, 28, 23, tzinfo=UTC),
            datetime(2026, 3, 31, 22, tzinfo=UTC),
            743,
        ),
        # New York: clocks fall back on 1 November 2026, so November has 721 hours.
        (
            "America/New_York",
            "2026-11",
            datetime(2026, 11, 1, 4, tzinfo=UTC),
            datetime(2026, 12, 1, 5, tzinfo=UTC),
            721,
        ),
        (
            "UTC",
            "2026-12",
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
            744,
        ),
    ],
)
def test_month_bounds_follow_the_site_clock(
    zone: str, month: str, start: datetime, end: datetime, hours: int
) -> None:
    got = Month.parse(month).bounds(site_zone(zone))
    assert got == (start, end)
    assert (got[1] - got[0]).total_seconds() == hours * 3600


def test_a_moment_belongs_to_the_local_month() -> None:
    zone = site_zone("Asia/Shanghai")
    assert Month.containing(datetime(2026, 10, 31, 16, tzinfo=UTC), zone) == Month(2026, 11)
    assert Month.containing(datetime(2026, 10, 31, 15, 59, tzinfo=UTC), zone) == Month(2026, 10)


def test_month_arithmetic_and_labels() -> None:
    assert (Month(2026, 1).previous(), Month(2026, 12).next()) == (Month(2025, 12), Month(2027, 1))
    assert Month(2026, 2).days()[-1] == date(2026, 2, 28)
    assert (str(Month(2026, 3)), Month(2026, 3).label) == ("2026-03", "March 2026")


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-11", "november", "1999-01"])
def test_bad_months_are_refused(text: str) -> None:
    with pytest.raises(PeriodError):
        Month.parse(text)


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(PeriodError, match="unknown time zone 'Mars/Olympus'"):
        site_zone("Mars/Olympus")
