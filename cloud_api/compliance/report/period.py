"""Calendar months in a site's own time zone, as UTC half-open intervals.

A site's "November" is November on its wall clocks: for Asia/Shanghai it starts
at 2026-10-31T16:00Z, for Europe/Berlin a March has 743 hours (the clocks jump
forward). Every monthly figure (report, rankings, surveys) uses these bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_NAMES = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


class PeriodError(ValueError):
    """A month or a time zone that cannot be read."""


def site_zone(name: str) -> ZoneInfo:
    """The IANA zone of a site, else :class:`PeriodError`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PeriodError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    def __post_init__(self) -> None:
        if not (1 <= self.month <= 12 and 2000 <= self.year <= 9999):
            raise PeriodError(f"no month {self.year:04d}-{self.month:02d}")

    @classmethod
    def parse(cls, text: str) -> Month:
        """``"2026-11"`` -> ``Month(2026, 11)``."""
        match = _MONTH_RE.match(text.strip())
        if match is None:
            raise PeriodError(f"month {text!r}: expected YYYY-MM")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def containing(cls, moment: datetime, zone: ZoneInfo) -> Month:
        local = moment.astimezone(zone)
        return cls(local.year, local.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def label(self) -> str:
        return f"{_NAMES[self.month - 1]} {self.year}"

    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def days(self) -> list[date]:
        first, end = self.first_day(), self.next().first_day()
        return [first + timedelta(days=i) for i in range((end - first).days)]

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """``[start, end)`` in UTC: local midnight of the 1st to that of the next month."""
        return local_midnight(self.first_day(), zone), local_midnight(self.next().first_day(), zone)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant the wall clocks of ``zone`` read 00:00 on ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
