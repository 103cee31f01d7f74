"""Incentive mechanism: monthly rankings per guard and per site, service stars and streaks.

The article wants to end "a fixed salary anyway, do the same for good and bad":
every guard's month is ranked by the mean of his shift scores, and a **service
star** (1 to 3 stars) rewards a month whose mean clears a configurable threshold
with enough shifts and no critical deviation. A **streak** is the number of
consecutive months, up to this one, in which the guard earned at least one star;
a **perfect run** is the longest run of consecutive shifts scoring 100.

Ranking is competition ranking ("1, 2, 2, 4"): equal means share a rank, so a
guard is never placed below a peer with the same result by an accident of ids.
Months are the site's calendar months (:mod:`cloud_api.compliance.report.period`);
a shift belongs to the month in which it starts, in the site's time zone.

The pure functions (:func:`rank_guards`, :func:`rank_sites`) take plain values;
:func:`guard_rankings` and :func:`site_rankings` read them from the store.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud_api.compliance.report.period import Month, site_zone
from cloud_api.models import ComplianceScore, ComplianceShift, Deviation, Guard, Site

MAX_STREAK_MONTHS = 24
"""Streaks look back at most two years: bounded work per ranking."""


class RankingError(ValueError):
    """A ranking request that cannot be answered (unknown site, bad policy)."""


@dataclass(frozen=True, slots=True)
class StarPolicy:
    """When a month earns stars: the mean score per star level, minimum shifts, disqualifiers."""

    thresholds: tuple[tuple[int, float], ...] = ((3, 98.0), (2, 95.0), (1, 90.0))
    """``(stars, minimum mean score)``, highest first."""
    min_shifts: int = 8
    """Fewer shifts than this in the month earn no star (too little to judge)."""
    disqualifying_severities: frozenset[str] = field(
        default_factory=lambda: frozenset({"critical"})
    )
    """A guard with an active deviation of one of these severities in the month earns none."""
    perfect_score: float = 100.0

    def __post_init__(self) -> None:
        levels = [t[1] for t in self.thresholds]
        if levels != sorted(levels, reverse=True) or any(not 0 <= v <= 100 for v in levels):
            raise RankingError("star thresholds must be 0..100, highest first")
        if self.min_shifts < 1:
            raise RankingError("min_shifts must be at least 1")

    def stars_for(self, mean: float, shifts: int, disqualified: bool) -> int:
        if disqualified or shifts < self.min_shifts:
            return 0
        return next((stars for stars, low in self.thresholds if mean >= low), 0)


DEFAULT_STARS = StarPolicy()


@dataclass(frozen=True, slots=True)
class ShiftResult:
    """One scored shift as the rankings see it."""

    shift_id: int
    site_id: int
    post_id: int
    guard_id: int
    start: datetime
    score: float


@dataclass(frozen=True, slots=True)
class GuardRank:
    rank: int
    guard_id: int
    name: str
    shifts: int
    mean_score: float
    lowest_score: float
    deviations: int
    critical_deviations: int
    stars: int
    streak_months: int
    perfect_run: int


@dataclass(frozen=True, slots=True)
class SiteRank:
    rank: int
    site_id: int
    name: str
    shifts: int
    guards: int
    mean_score: float
    deviations: int
    stars_awarded: int


def _competition_ranks(means: Sequence[float]) -> list[int]:
    """Ranks of values already sorted best first: equal values share the better rank."""
    ranks: list[int] = []
    for i, value in enumerate(means):
        ranks.append(ranks[-1] if i and value == means[i - 1] else i + 1)
    return ranks


def _longest_run(scores: Iterable[float], at_least: float) -> int:
    best = run = 0
    for score in scores:
        run = run + 1 if score >= at_least else 0
        best = max(best, run)
    return best


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 2)


def rank_guards(
    results: Iterable[ShiftResult],
    *,
    names: Mapping[int, str],
    deviations: Mapping[int, Mapping[str, int]],
    earlier_stars: Mapping[int, Sequence[bool]] | None = None,
    policy: StarPolicy = DEFAULT_STARS,
) -> list[GuardRank]:
    """Pure: one month's guard ranking.

    ``deviations``: guard -> severity -> active deviations in the month;
    ``earlier_stars``: guard -> whether each earlier month earned a star, the
    month before this one first (for the streak).
    """
    by_guard: dict[int, list[ShiftResult]] = defaultdict(list)
    for result in results:
        by_guard[result.guard_id].append(result)
    rows = []
    for guard_id, shifts in by_guard.items():
        shifts.sort(key=lambda r: (r.start, r.shift_id))
        scores = [r.score for r in shifts]
        counts = deviations.get(guard_id, {})
        disqualified = any(counts.get(sev, 0) for sev in policy.disqualifying_severities)
        mean = _mean(scores)
        stars = policy.stars_for(mean, len(scores), disqualified)
        streak = 0
        if stars:
            streak = 1
            for earned in (earlier_stars or {}).get(guard_id, ()):
                if not earned:
                    break
                streak += 1
        rows.append(
            (
                mean,
                guard_id,
                len(scores),
                min(scores),
                sum(counts.values()),
                counts.get("critical", 0),
                stars,
                streak,
                _longest_run(scores, policy.perfect_score),
            )
        )
    rows.sort(key=lambda r: (-r[0], -r[2], names.get(r[1], ""), r[1]))
    ranks = _competition_ranks([r[0] for r in rows])
    return [
        GuardRank(
            rank=rank,
            guard_id=r[1],
            name=names.get(r[1], f"guard {r[1]}"),
            shifts=r[2],
            mean_score=r[0],
            lowest_score=r[3],
            deviations=r[4],
            critical_deviations=r[5],
            stars=r[6],
            streak_months=r[7],
            perfect_run=r[8],
        )
        for rank, r in zip(ranks, rows, strict=True)
    ]


def rank_sites(
    results: Iterable[ShiftResult],
    *,
    names: Mapping[int, str],
    deviations: Mapping[int, int],
    stars: Mapping[int, int],
) -> list[SiteRank]:
    """Pure: one month's site ranking by the mean of all its shift scores."""
    by_site: dict[int, list[ShiftResult]] = defaultdict(list)
    for result in results:
        by_site[result.site_id].append(result)
    rows = sorted(
        (
            (
                _mean([r.score for r in shifts]),
                site_id,
                len(shifts),
                len({r.guard_id for r in shifts}),
            )
            for site_id, shifts in by_site.items()
        ),
        key=lambda r: (-r[0], names.get(r[1], ""), r[1]),
    )
    ranks = _competition_ranks([r[0] for r in rows])
    return [
        SiteRank(
            rank=rank,
            site_id=r[1],
            name=names.get(r[1], f"site {r[1]}"),
            shifts=r[2],
            guards=r[3],
            mean_score=r[0],
            deviations=deviations.get(r[1], 0),
            stars_awarded=stars.get(r[1], 0),
        )
        for rank, r in zip(ranks, rows, strict=True)
    ]


# ---------------------------------------------------------------- from the store


def load_results(
    session: Session, *, site_id: int, start: datetime, end: datetime
) -> list[ShiftResult]:
    """Current scores of the site's shifts starting in ``[start, end)`` (cancelled ones skipped)."""
    rows = session.execute(
        select(
            ComplianceShift.id,
            ComplianceShift.site_id,
            ComplianceShift.post_id,
            ComplianceShift.guard_id,
            ComplianceShift.start_at,
            ComplianceScore.score,
        )
        .join(ComplianceScore, ComplianceScore.shift_id == ComplianceShift.id)
        .where(
            ComplianceShift.site_id == site_id,
            ComplianceShift.cancelled_at.is_(None),
            ComplianceShift.start_at >= start,
            ComplianceShift.start_at < end,
            ComplianceScore.current.is_(True),
        )
        .order_by(ComplianceShift.start_at, ComplianceShift.id)
    )
    return [ShiftResult(r[0], r[1], r[2], r[3], r[4], float(r[5])) for r in rows]


def _deviation_counts(
    session: Session, *, site_id: int, start: datetime, end: datetime
) -> dict[int, dict[str, int]]:
    rows = session.execute(
        select(Deviation.guard_id, Deviation.severity).where(
            Deviation.site_id == site_id,
            Deviation.withdrawn_at.is_(None),
            Deviation.guard_id.is_not(None),
            Deviation.occurred_at >= start,
            Deviation.occurred_at < end,
        )
    )
    out: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for guard_id, severity in rows:
        if guard_id is not None:
            out[guard_id][severity] += 1
    return out


def _site(session: Session, site_id: int) -> Site:
    site = session.get(Site, site_id)
    if site is None:
        raise RankingError(f"no site {site_id}")
    return site


def _month_guard_ranking(
    session: Session,
    site: Site,
    month: Month,
    policy: StarPolicy,
    earlier: Mapping[int, Sequence[bool]] | None,
) -> list[GuardRank]:
    start, end = month.bounds(site_zone(site.timezone))
    results = load_results(session, site_id=site.id, start=start, end=end)
    guard_ids = sorted({r.guard_id for r in results})
    names = {
        user_id: name
        for user_id, name in session.execute(
            select(Guard.id, Guard.name).where(Guard.id.in_(guard_ids))
        )
    }
    return rank_guards(
        results,
        names=names,
        deviations=_deviation_counts(session, site_id=site.id, start=start, end=end),
        earlier_stars=earlier,
        policy=policy,
    )


def guard_rankings(
    session: Session, *, site_id: int, month: Month, policy: StarPolicy = DEFAULT_STARS
) -> list[GuardRank]:
    """A site's guard ranking for ``month``, streaks counted from earlier months."""
    site = _site(session, site_id)
    current = _month_guard_ranking(session, site, month, policy, None)
    starred = [g.guard_id for g in current if g.stars]
    earlier: dict[int, list[bool]] = {g: [] for g in starred}
    still = set(starred)
    back = month
    for _ in range(MAX_STREAK_MONTHS - 1):
        if not still:
            break
        back = back.previous()
        got = {
            g.guard_id: g.stars > 0 for g in _month_guard_ranking(session, site, back, policy, None)
        }
        for guard_id in list(still):
            earned = got.get(guard_id, False)
            earlier[guard_id].append(earned)
            if not earned:
                still.discard(guard_id)
    if not starred:
        return current
    return _month_guard_ranking(session, site, month, policy, earlier)


def site_rankings(
    session: Session,
    *,
    site_ids: Iterable[int],
    month: Month,
    policy: StarPolicy = DEFAULT_STARS,
) -> list[SiteRank]:
    """The given sites ranked for ``month`` (each site's month in its own time zone)."""
    results: list[ShiftResult] = []
    names: dict[int, str] = {}
    deviations: dict[int, int] = {}
    stars: dict[int, int] = {}
    for site_id in sorted(set(site_ids)):
        site = _site(session, site_id)
        names[site_id] = site.name
        start, end = month.bounds(site_zone(site.timezone))
        results += load_results(session, site_id=site_id, start=start, end=end)
        deviations[site_id] = session.execute(
            select(func.count()).where(
                Deviation.site_id == site_id,
                Deviation.withdrawn_at.is_(None),
                Deviation.occurred_at >= start,
                Deviation.occurred_at < end,
            )
        ).scalar_one()
        stars[site_id] = sum(
            g.stars for g in _month_guard_ranking(session, site, month, policy, None)
        )
    return rank_sites(results, names=names, deviations=deviations, stars=stars)


# ---------------------------------------------------------------- CSV


GUARD_CSV_HEADER = (
    "month",
    "rank",
    "guard_id",
    "guard",
    "shifts",
    "mean_score",
    "lowest_score",
    "deviations",
    "critical_deviations",
    "stars",
    "streak_months",
    "perfect_run",
)
SITE_CSV_HEADER = (
    "month",
    "rank",
    "site_id",
    "site",
    "shifts",
    "guards",
    "mean_score",
    "deviations",
    "stars_awarded",
)


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _num(value: float) -> str:
    return f"{value:.2f}"


def guards_csv(month: Month, ranking: Sequence[GuardRank]) -> str:
    """RFC 4180 CSV of a guard ranking, one row per guard, best first."""
    return _csv(
        GUARD_CSV_HEADER,
        (
            (
                str(month),
                g.rank,
                g.guard_id,
                g.name,
                g.shifts,
                _num(g.mean_score),
                _num(g.lowest_score),
                g.deviations,
                g.critical_deviations,
                g.stars,
                g.streak_months,
                g.perfect_run,
            )
            for g in ranking
        ),
    )


def sites_csv(month: Month, ranking: Sequence[SiteRank]) -> str:
    """RFC 4180 CSV of a site ranking."""
    return _csv(
        SITE_CSV_HEADER,
        (
            (
                str(month),
                s.rank,
                s.site_id,
                s.name,
                s.shifts,
                s.guards,
                _num(s.mean_score),
                s.deviations,
                s.stars_awarded,
            )
            for s in ranking
        ),
    )
