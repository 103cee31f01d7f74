"""Return-visit and incentive routes (issue 6, items 6-7): surveys, the monthly report, rankings.

- survey entries: filed by the site's customers, read by customers and supervisors;
- the monthly site report (PDF or CSV): the site's customers and supervisors;
- guard rankings: supervisors and customers see the whole site; a guard sees
  only his own row (with his rank among all);
- site rankings: the sites the caller may see (admins: all), for supervisors
  and admins.

A month is ``YYYY-MM`` in the site's own time zone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from cloud_api.api.deps import (
    ContextDep,
    Principal,
    SessionDep,
    SiteReaderDep,
    require_roles,
    visible_site,
)
from cloud_api.api.problems import invalid, problem_responses
from cloud_api.compliance import rankings, surveys
from cloud_api.compliance.report.csv import render_csv
from cloud_api.compliance.report.data import collect
from cloud_api.compliance.report.pdf import render_pdf
from cloud_api.compliance.report.period import Month, PeriodError, site_zone
from cloud_api.models import Guard, Role, Site

router = APIRouter(tags=["return visit and incentive"])

CustomerDep = Annotated[Principal, Depends(require_roles(Role.CUSTOMER))]
RankingReaderDep = Annotated[
    Principal, Depends(require_roles(Role.SUPERVISOR, Role.CUSTOMER, Role.GUARD))
]
SiteRankingReaderDep = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR))]
MONTH_PATTERN = r"^\d{4}-\d{2}$"
MonthQuery = Annotated[
    str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM (default: this month)")
]
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


class SurveyIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"rating": 4, "comments": "Gate guard was on the phone"}]}
    )

    rating: int = Field(ge=surveys.MIN_RATING, le=surveys.MAX_RATING)
    comments: str = Field(default="", max_length=surveys.MAX_COMMENT_CHARS)


class SurveyOut(BaseModel):
    id: int
    site_id: int
    rating: int
    comments: str
    submitted_at: datetime


class SurveyCommentOut(BaseModel):
    submitted_at: datetime
    rating: int
    text: str


class SurveySummaryOut(BaseModel):
    month: str
    responses: int
    mean: float | None
    distribution: list[int] = Field(description="Answers rated 1, 2, 3, 4 and 5.")
    comments: list[SurveyCommentOut]


class GuardRankOut(BaseModel):
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


class SiteRankOut(BaseModel):
    rank: int
    site_id: int
    name: str
    shifts: int
    guards: int
    mean_score: float
    deviations: int
    stars_awarded: int


def _month(text: str | None, site: Site | None, now: datetime) -> Month:
    try:
        if text:
            return Month.parse(text)
        return Month.containing(now, site_zone(site.timezone if site else "UTC"))
    except PeriodError as exc:
        raise invalid(str(exc), field="month") from exc


# --- surveys ---------------------------------------------------------------------------


@router.post(
    "/sites/{site_id}/surveys",
    response_model=SurveyOut,
    status_code=201,
    summary="The customer's survey entry: a rating 1-5 and comments",
    responses=problem_responses(401, 403, 404, 422),
)
def file_survey(
    site_id: int, body: SurveyIn, principal: CustomerDep, session: SessionDep, ctx: ContextDep
) -> SurveyOut:
    with session.begin():
        site = visible_site(session, principal, site_id)
        try:
            row = surveys.record_response(
                session,
                site_id=site.id,
                respondent_id=principal.user_id,
                rating=body.rating,
                comments=body.comments,
                submitted_at=ctx.clock(),
            )
        except surveys.SurveyError as exc:
            raise invalid(str(exc), location="body") from exc
        out = SurveyOut(
            id=row.id,
            site_id=row.site_id,
            rating=row.rating,
            comments=row.comments,
            submitted_at=row.submitted_at,
        )
        if ctx.settings.influx_enabled:
            from cloud_api.sink.compliance_lines import survey_line
            from cloud_api.sink.outbox import enqueue

            line = survey_line(
                site_id=row.site_id,
                post_id=None,
                survey_id=row.id,
                rating=row.rating,
                at=row.submitted_at,
            )
            enqueue(session, lines=line, n_points=1, now=row.submitted_at)
    return out


@router.get(
    "/sites/{site_id}/surveys",
    response_model=SurveySummaryOut,
    summary="A month's survey results of a site",
    responses=problem_responses(401, 403, 404, 422),
)
def survey_summary(
    site_id: int,
    principal: SiteReaderDep,
    session: SessionDep,
    ctx: ContextDep,
    month: MonthQuery = None,
) -> SurveySummaryOut:
    site = visible_site(session, principal, site_id)
    chosen = _month(month, site, ctx.clock())
    start, end = chosen.bounds(site_zone(site.timezone))
    summary = surveys.site_summary(session, site.id, start, end)
    return SurveySummaryOut(
        month=str(chosen),
        responses=summary.responses,
        mean=summary.mean,
        distribution=list(summary.distribution),
        comments=[
            SurveyCommentOut(submitted_at=c.submitted_at, rating=c.rating, text=c.text)
            for c in summary.comments
        ],
    )


# --- the monthly report -------------------------------------------------------------------


@router.get(
    "/sites/{site_id}/reports/{month}.{fmt}",
    summary="The monthly site report, as PDF or CSV",
    response_class=Response,
    responses={
        200: {
            "content": {"application/pdf": {}, "text/csv": {}},
            "description": "The report file.",
        },
        **problem_responses(401, 403, 404, 422),
    },
)
def monthly_report(
    site_id: int,
    month: Annotated[str, Path(pattern=MONTH_PATTERN, description="YYYY-MM")],
    fmt: Annotated[Literal["pdf", "csv"], Path(description="pdf or csv")],
    principal: SiteReaderDep,
    session: SessionDep,
    ctx: ContextDep,
) -> Response:
    site = visible_site(session, principal, site_id)
    chosen = _month(month, site, ctx.clock())
    report = collect(session, site_id=site.id, month=chosen, now=ctx.clock())
    name = f"site-{site.id}-{chosen}"
    if fmt == "pdf":
        return Response(
            render_pdf(report),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
        )
    return Response(
        render_csv(report),
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# --- rankings --------------------------------------------------------------------------


@router.get(
    "/sites/{site_id}/rankings/guards",
    response_model=list[GuardRankOut],
    summary="Monthly guard ranking of a site (a guard sees his own row); ?format=csv",
    responses={
        200: {"content": {"application/json": {}, "text/csv": {}}},
        **problem_responses(401, 403, 404, 422),
    },
)
def guard_ranking(
    site_id: int,
    principal: RankingReaderDep,
    session: SessionDep,
    ctx: ContextDep,
    month: MonthQuery = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> list[GuardRankOut] | Response:
    site = visible_site(session, principal, site_id)
    chosen = _month(month, site, ctx.clock())
    rows = rankings.guard_rankings(session, site_id=site.id, month=chosen)
    if principal.role is Role.GUARD:
        own = set(session.scalars(select(Guard.id).where(Guard.user_id == principal.user_id)))
        rows = [r for r in rows if r.guard_id in own]
    if format == "csv":
        return Response(rankings.guards_csv(chosen, rows), media_type=CSV_MEDIA_TYPE)
    return [GuardRankOut(**{f: getattr(r, f) for f in GuardRankOut.model_fields}) for r in rows]


@router.get(
    "/rankings/sites",
    response_model=list[SiteRankOut],
    summary="Monthly ranking of the sites the caller may see; ?format=csv",
    responses={
        200: {"content": {"application/json": {}, "text/csv": {}}},
        **problem_responses(401, 403, 422),
    },
)
def site_ranking(
    principal: SiteRankingReaderDep,
    session: SessionDep,
    ctx: ContextDep,
    month: MonthQuery = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> list[SiteRankOut] | Response:
    chosen = _month(month, None, ctx.clock())
    site_ids = (
        list(session.scalars(select(Site.id)))
        if principal.all_sites
        else sorted(principal.site_ids)
    )
    rows = rankings.site_rankings(session, site_ids=site_ids, month=chosen)
    if format == "csv":
        return Response(rankings.sites_csv(chosen, rows), media_type=CSV_MEDIA_TYPE)
    return [SiteRankOut(**{f: getattr(r, f) for f in SiteRankOut.model_fields}) for r in rows]
