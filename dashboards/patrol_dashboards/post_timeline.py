"""Post patrol timeline: expected rounds against verified checkpoint visits, missed and
late checkpoints, flagged events."""

# InfluxQL text built from this module's own constants, never from input: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import units

from patrol_dashboards.common import (
    BLUE,
    COUNT_WARN_THRESHOLDS,
    GREEN,
    GUARD,
    ORANGE,
    POST,
    RED,
    SITE,
    dashboard,
    guard_variable,
    link,
    post_row_link,
    post_variable,
    query,
    site_variable,
    where,
)
from patrol_dashboards.panels import rows, text_map, time_series

UID = "patrol-post-timeline"
ROUND_FILTER = where(SITE, POST, GUARD, "$timeFilter")
SCAN_FILTER = where(SITE, POST, "$timeFilter")
FLAGGED = '"flag_count" > 0'


def build() -> dm.Dashboard:
    """The post patrol timeline dashboard."""
    expected_vs_visits = time_series(
        "Expected checkpoint visits and verified visits",
        "Bars per interval: checkpoint visits the patrol plan expected in rounds starting "
        "then (A), against checkpoint scans the cloud verified and accepted (B).",
        [
            query(
                f'SELECT sum("checkpoints_expected") AS "expected" FROM "round" {ROUND_FILTER} '
                "GROUP BY time($__interval) fill(0)",
                "A",
                alias="expected",
            ),
            query(
                f'SELECT count("seq") AS "verified" FROM "scan" {SCAN_FILTER} '
                "GROUP BY time($__interval) fill(0)",
                "B",
                alias="verified visits",
            ),
        ],
        unit=units.Short,
        bars=True,
    )
    missed_late = time_series(
        "Missed and late checkpoints",
        "Checkpoints of the rounds starting in each interval that were missed or visited late.",
        [
            query(
                'SELECT sum("checkpoints_missed") AS "missed", sum("checkpoints_late") AS "late" '
                f'FROM "round" {ROUND_FILTER} GROUP BY time($__interval) fill(0)',
                alias="$col",
            )
        ],
        unit=units.Short,
        bars=True,
    )
    rounds_table = rows(
        "Rounds",
        "Every expected round: its outcome (pending until its window closed), checkpoints on "
        "time, late and missed, and which ones.",
        [
            query(
                'SELECT "round", "outcome", "checkpoints_expected", "checkpoints_on_time", '
                '"checkpoints_late", "checkpoints_missed", "missed_ids", "late_ids" '
                f'FROM "round" {ROUND_FILTER} GROUP BY "post", "guard"',
                table=True,
            )
        ],
        time_title="Round start",
        coloured=["outcome"],
        mappings=[
            text_map(
                ("complete", "complete", GREEN),
                ("partial", "partial", ORANGE),
                ("missed", "missed", RED),
                ("pending", "pending", BLUE),
            )
        ],
        links=[post_row_link()],
    )
    visits = rows(
        "Verified visits per checkpoint",
        "Accepted scans per checkpoint and method (NFC tap or BLE visit) in the range.",
        [
            query(
                f'SELECT count("seq") AS "visits" FROM "scan" {SCAN_FILTER} '
                'GROUP BY "post", "checkpoint", "method"',
                table=True,
            )
        ],
        time_title=None,
        sort_by="visits",
    )
    flagged = rows(
        "Flagged events",
        "Accepted scans that carry review flags (clock not synchronised, SUN counter jump, "
        "low-assurance tag, ...), newest first.",
        [
            query(
                'SELECT "flags", "flag_count", "delay_ms", "device"::tag, "checkpoint"::tag, '
                f'"assurance"::tag FROM "scan" {where(SITE, POST, FLAGGED, "$timeFilter")} '
                "ORDER BY time DESC",
                table=True,
            )
        ],
        time_title="Time",
        units={"delay_ms": units.Milliseconds},
        coloured=["flag_count"],
        thresholds=COUNT_WARN_THRESHOLDS,
    )
    return dashboard(
        uid=UID,
        title="Patrol: post timeline",
        description="Expected rounds against verified checkpoint visits, missed and late "
        "checkpoints and flagged events, per post.",
        variables=[site_variable(), post_variable(), guard_variable()],
        links=[link("Open the selected post in the console", "/console/posts/${post}")],
        panels=[
            (expected_vs_visits, 12, 9),
            (missed_late, 12, 9),
            (rounds_table, 24, 9),
            (visits, 10, 8),
            (flagged, 14, 8),
        ],
    )
