"""Company overview: compliance per site and post, the guards' league table, open
rectification items and the eight mechanisms of the quality-control article at a glance."""

# InfluxQL text built from this module's own constants, never from input: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import units

from patrol_dashboards.common import (
    COUNT_BAD_THRESHOLDS,
    COUNT_WARN_THRESHOLDS,
    GREEN,
    GUARD,
    ORANGE,
    POST,
    RED,
    SCORE_GOOD,
    SCORE_THRESHOLDS,
    SHIFTS,
    SITE,
    TO,
    alerts_link,
    dashboard,
    guard_variable,
    post_link,
    post_row_link,
    post_variable,
    query,
    site_link,
    site_variable,
    thresholds,
    where,
)
from patrol_dashboards.panels import bars, big_number, rows, time_series

UID = "patrol-overview"
SELF_RESTRAINT = "/^(absent_from_zone|inactive|too_fast|two_posts)$/"
"""The self-restraint rules (cloud_api.compliance.types.RuleId)."""
STAR = f'"score" >= {SCORE_GOOD:g}'
ACTIVE = '"active" = true'
ACKNOWLEDGED = "\"transition\" = 'acknowledged'"
NOT_TEST = "\"trigger\" != 'test'"
SCORE_FILTER = where(SHIFTS, SITE, POST, GUARD, "$timeFilter")


def build() -> dm.Dashboard:
    """The company overview dashboard."""
    score_by_post = time_series(
        "Compliance score by post",
        "Mean shift score (0-100) of the shifts starting in each interval, one line per "
        "site and post. Below 80 is poor, 95 and above is service-star level.",
        [
            query(
                f'SELECT mean("score") FROM "compliance" {SCORE_FILTER} '
                'GROUP BY time($__interval), "site", "post" fill(none)',
                alias="site $tag_site post $tag_post",
            )
        ],
        unit=units.Percent,
        thresholds=SCORE_THRESHOLDS,
        min_value=0,
        max_value=100,
        links=[post_link()],
    )
    score_by_site = big_number(
        "Compliance score by site",
        "Mean score of all shifts in the range, per site.",
        [
            query(
                f'SELECT mean("score") FROM "compliance" {SCORE_FILTER} GROUP BY "site"',
                alias="site $tag_site",
            )
        ],
        unit=units.Percent,
        thresholds=SCORE_THRESHOLDS,
        decimals=1,
        links=[site_link()],
    )
    league = rows(
        "League table of guards",
        "Guards ranked by their mean shift score in the range, with the number of shifts "
        "and of deductions behind it. The monthly ranking of record is the compliance "
        "report's; this is the live view.",
        [
            query(
                'SELECT mean("score") AS "score", count("score") AS "shifts", '
                f'sum("deductions") AS "deductions" FROM "compliance" {SCORE_FILTER} '
                'GROUP BY "guard"',
                table=True,
            )
        ],
        time_title=None,
        sort_by="score",
        units={"score": units.Percent},
        coloured=["score"],
        thresholds=SCORE_THRESHOLDS,
    )
    open_items = rows(
        "Open rectification items",
        "Items unresolved at the end of the range (opened or reopened, not yet resolved) "
        "and those of them past their due date, per post.",
        [
            query(
                'SELECT sum("open_delta") AS "open", sum("overdue_delta") AS "overdue" '
                f'FROM "rectification" {where(SITE, POST, TO)} GROUP BY "site", "post"',
                table=True,
            )
        ],
        time_title=None,
        sort_by="open",
        coloured=["overdue"],
        thresholds=COUNT_WARN_THRESHOLDS,
        links=[post_row_link()],
    )

    target = big_number(
        "1 Target: mean shift score",
        "Target mechanism: the mean score of the shifts in the range against the posts' targets.",
        [query(f'SELECT mean("score") FROM "compliance" {SCORE_FILTER}')],
        unit=units.Percent,
        thresholds=SCORE_THRESHOLDS,
        decimals=1,
    )
    incentive = big_number(
        "2 Incentive: service-star shifts",
        f"Incentive mechanism: shifts in the range scoring {SCORE_GOOD:g} or more.",
        [
            query(
                'SELECT count("score") FROM "compliance" '
                + where(SHIFTS, SITE, POST, GUARD, STAR, "$timeFilter")
            )
        ],
        unit=units.Short,
        thresholds=thresholds((None, "blue")),
        no_value="0",
    )
    supervision = big_number(
        "3 Supervision: open rectification items",
        "Supervision mechanism: rectification items unresolved at the end of the range.",
        [query(f'SELECT sum("open_delta") FROM "rectification" {where(SITE, POST, TO)}')],
        unit=units.Short,
        thresholds=COUNT_WARN_THRESHOLDS,
        no_value="0",
    )
    self_restraint = big_number(
        "4 Self-restraint: rule breaches",
        "Self-restraint mechanism: active breaches of the self-restraint rules (absence "
        "from the post zone, inactivity, taps faster than walking allows, two posts at once).",
        [
            query(
                'SELECT count("deviation") FROM "deviation" '
                + where(SITE, POST, GUARD, f'"rule" =~ {SELF_RESTRAINT}', ACTIVE, "$timeFilter")
            )
        ],
        unit=units.Short,
        thresholds=COUNT_BAD_THRESHOLDS,
        no_value="0",
    )
    return_visit = big_number(
        "5 Return visit: survey rating",
        "Return-visit mechanism: mean customer survey rating (1 to 5) in the range.",
        [query(f'SELECT mean("rating") FROM "survey" {where(SITE, POST, "$timeFilter")}')],
        unit=units.NoUnit,
        thresholds=thresholds((None, RED), (3.0, ORANGE), (4.0, GREEN)),
        decimals=2,
    )
    emergency = big_number(
        "6 Emergency: time to acknowledge",
        "Emergency mechanism: mean time from an alert to its acknowledgement (test alerts "
        "left out). Over a minute is orange, over five red.",
        [
            query(
                'SELECT mean("elapsed_s") FROM "sos_response" '
                + where(SITE, ACKNOWLEDGED, NOT_TEST, "$timeFilter")
            )
        ],
        unit=units.Seconds,
        thresholds=thresholds((None, GREEN), (60.0, ORANGE), (300.0, RED)),
    )
    guarantee = big_number(
        "7 Guarantee: equipment readiness",
        "Guarantee mechanism: mean equipment score of the shifts (required items near the "
        "guard and charged).",
        [query(f'SELECT mean("score_equipment") FROM "compliance" {SCORE_FILTER}')],
        unit=units.Percent,
        thresholds=SCORE_THRESHOLDS,
        decimals=1,
    )
    innovation = bars(
        "8 Innovation: scans by assurance",
        "Innovation mechanism: checkpoint scans by how strongly they are proven: high = NTAG "
        "424 DNA SUN, medium = device-signed frame or beacon MAC, low = plain NTAG21x.",
        [
            query(
                f'SELECT count("seq") FROM "scan" {where(SITE, POST, "$timeFilter")} '
                'GROUP BY "assurance"',
                alias="$tag_assurance",
            )
        ],
        unit=units.Short,
        thresholds=thresholds((None, "blue")),
    )
    return dashboard(
        uid=UID,
        title="Patrol: company overview",
        description="Compliance per site and post, the guards' league table, open "
        "rectification items and the eight quality-control mechanisms at a glance.",
        variables=[site_variable(), post_variable(), guard_variable()],
        links=[alerts_link()],
        panels=[
            (target, 3, 4),
            (incentive, 3, 4),
            (supervision, 3, 4),
            (self_restraint, 3, 4),
            (return_visit, 3, 4),
            (emergency, 3, 4),
            (guarantee, 3, 4),
            (innovation, 3, 4),
            (score_by_post, 16, 9),
            (score_by_site, 8, 9),
            (league, 12, 9),
            (open_items, 12, 9),
        ],
    )
