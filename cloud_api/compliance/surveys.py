"""Return-visit mechanism: the customer's monthly opinion survey (a rating 1-5 and comments).

The article asks for a customer opinion survey once a month whose results, and
what was done about them, go back to the customer: the entries land in the
monthly site report beside the figures they comment on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_api.models import Site, SurveyResponse

MIN_RATING = 1
MAX_RATING = 5
MAX_COMMENT_CHARS = 2_000
"""A survey comment is a paragraph, not a document; longer ones are refused, not cut."""


class SurveyError(ValueError):
    """A survey entry the service refuses, with the reason."""


def record_response(
    session: Session,
    *,
    site_id: int,
    respondent_id: int | None,
    rating: int,
    comments: str,
    submitted_at: datetime,
) -> SurveyResponse:
    """Store one survey entry after checking the rating and the comment length."""
    if session.get(Site, site_id) is None:
        raise SurveyError(f"no site {site_id}")
    if isinstance(rating, bool) or not MIN_RATING <= rating <= MAX_RATING:
        raise SurveyError(
            f"rating {rating!r}: expected a whole number {MIN_RATING} to {MAX_RATING}"
        )
    text = comments.strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise SurveyError(f"comment of {len(text)} characters (at most {MAX_COMMENT_CHARS})")
    row = SurveyResponse(
        site_id=site_id,
        respondent_id=respondent_id,
        rating=rating,
        comments=text,
        submitted_at=submitted_at,
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True, slots=True)
class SurveyComment:
    submitted_at: datetime
    rating: int
    text: str


@dataclass(frozen=True, slots=True)
class SurveySummary:
    """The survey entries of a period: count, mean, how many of each rating, comments."""

    responses: int
    mean: float | None
    distribution: tuple[int, int, int, int, int]
    """Entries rated 1, 2, 3, 4 and 5."""
    comments: tuple[SurveyComment, ...]


def summarize(ratings_and_comments: list[SurveyComment]) -> SurveySummary:
    """Pure: the summary of some entries (comments without text are counted, not listed)."""
    counts = [0] * MAX_RATING
    for entry in ratings_and_comments:
        counts[entry.rating - 1] += 1
    n = len(ratings_and_comments)
    mean = round(sum(e.rating for e in ratings_and_comments) / n, 2) if n else None
    return SurveySummary(
        responses=n,
        mean=mean,
        distribution=(counts[0], counts[1], counts[2], counts[3], counts[4]),
        comments=tuple(e for e in ratings_and_comments if e.text),
    )


def site_summary(session: Session, site_id: int, start: datetime, end: datetime) -> SurveySummary:
    """Summary of a site's entries submitted in ``[start, end)``, oldest first."""
    rows = session.execute(
        select(SurveyResponse.submitted_at, SurveyResponse.rating, SurveyResponse.comments)
        .where(
            SurveyResponse.site_id == site_id,
            SurveyResponse.submitted_at >= start,
            SurveyResponse.submitted_at < end,
        )
        .order_by(SurveyResponse.submitted_at, SurveyResponse.id)
    )
    return summarize([SurveyComment(r.submitted_at, r.rating, r.comments) for r in rows])
