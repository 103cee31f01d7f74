"""The monthly site report as one RFC 4180 CSV in long form: ``section,key,field,value``.

Long form keeps every section in one file that a spreadsheet or a script reads
without knowing the layout: filter on ``section``, pivot on ``field``. Times are
ISO 8601 in the site's own time zone (with its offset), scores have two
decimals, shares are fractions with four.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime

from cloud_api.compliance.report.data import SiteMonthReport
from cloud_api.compliance.report.period import site_zone

HEADER = ("section", "key", "field", "value")

Row = tuple[str, str, str, str]


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _rows(report: SiteMonthReport) -> Iterator[Row]:
    zone = site_zone(report.timezone)

    def at(moment: datetime | None) -> str:
        return "" if moment is None else moment.astimezone(zone).isoformat(timespec="seconds")

    site = str(report.site_id)
    yield ("site", site, "name", report.site_name)
    yield ("site", site, "month", str(report.month))
    yield ("site", site, "timezone", report.timezone)
    yield ("site", site, "period_start", at(report.start))
    yield ("site", site, "period_end", at(report.end))
    yield ("site", site, "generated_at", at(report.generated_at))
    yield ("summary", "", "shifts", str(report.shifts))
    yield ("summary", "", "mean_score", _score(report.mean_score))
    yield ("summary", "", "rounds_expected", str(report.rounds_expected))
    yield ("summary", "", "rounds_completed", str(report.rounds_completed))
    for severity, n in report.deviations_by_severity.items():
        yield ("summary", "", f"deviations_{severity}", str(n))
    for day in report.days:
        if day.shifts:
            yield ("score_trend", day.day.isoformat(), "shifts", str(day.shifts))
            yield ("score_trend", day.day.isoformat(), "mean_score", _score(day.mean_score))
    for post in report.posts:
        key = post.name
        for field in (
            "shifts",
            "rounds_expected",
            "rounds_completed",
            "rounds_partial",
            "rounds_missed",
            "checkpoints_on_time",
            "checkpoints_late",
            "checkpoints_missed",
        ):
            yield ("post", key, field, str(getattr(post, field)))
        yield ("post", key, "mean_score", _score(post.mean_score))
        for item, share in post.equipment:
            yield ("equipment", key, item, f"{share:.4f}")
    for d in report.deviations:
        key = str(d.deviation_id)
        yield ("deviation", key, "occurred_at", at(d.occurred_at))
        yield ("deviation", key, "post", d.post)
        yield ("deviation", key, "guard", d.guard)
        yield ("deviation", key, "rule", d.rule)
        yield ("deviation", key, "severity", d.severity)
        yield ("deviation", key, "detail", d.detail)
        yield ("deviation", key, "status", d.status)
        yield ("deviation", key, "owner", d.owner)
        yield ("deviation", key, "due_at", at(d.due_at))
        yield ("deviation", key, "resolved_at", at(d.resolved_at))
        yield ("deviation", key, "verified_at", at(d.verified_at))
        yield ("deviation", key, "escalation_level", str(d.escalation_level))
    r = report.rectification
    for field in (
        "opened",
        "resolved_on_time",
        "resolved_late",
        "verified",
        "unresolved",
        "overdue_now",
    ):
        yield ("rectification", "", field, str(getattr(r, field)))
    median_h = r.median_hours_to_resolve
    yield (
        "rectification",
        "",
        "median_hours_to_resolve",
        "" if median_h is None else f"{median_h}",
    )
    for n, i in enumerate(report.inspections, 1):
        yield ("inspection", str(n), "inspected_at", at(i.inspected_at))
        yield ("inspection", str(n), "post", i.post)
        yield ("inspection", str(n), "result", i.result)
        yield ("inspection", str(n), "notes", i.notes)
    for c in report.complaints:
        key = str(c.complaint_id)
        yield ("complaint", key, "received_at", at(c.received_at))
        yield ("complaint", key, "channel", c.channel)
        yield ("complaint", key, "post", c.post)
        yield ("complaint", key, "status", c.status)
        yield ("complaint", key, "description", c.description)
        yield ("complaint", key, "resolution", c.resolution)
    e = report.emergencies
    for field in ("sos_events", "acknowledged", "unacknowledged", "untracked"):
        yield ("emergencies", "", field, str(getattr(e, field)))
    for field in ("median_response_s", "max_response_s"):
        value = getattr(e, field)
        yield ("emergencies", "", field, "" if value is None else f"{value}")
    s = report.surveys
    yield ("survey", "", "responses", str(s.responses))
    yield ("survey", "", "mean_rating", "" if s.mean is None else f"{s.mean:.2f}")
    for rating, n in enumerate(s.distribution, 1):
        yield ("survey", "", f"rated_{rating}", str(n))
    for n, comment in enumerate(s.comments, 1):
        yield ("survey_comment", str(n), "submitted_at", at(comment.submitted_at))
        yield ("survey_comment", str(n), "rating", str(comment.rating))
        yield ("survey_comment", str(n), "text", comment.text)
    yield ("chain", "", "length", str(report.chain_length))
    yield ("chain", "", "head_sha256", report.chain_head)


def render_csv(report: SiteMonthReport) -> str:
    """The report as CSV text (CRLF line ends, as RFC 4180 asks)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(_rows(report))
    return out.getvalue()
