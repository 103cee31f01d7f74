"""Emergencies: the SOS and man-down timeline, acknowledgement and resolution times."""

# InfluxQL text built from this module's own constants, never from input: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import units

from patrol_dashboards.common import (
    COUNT_BAD_THRESHOLDS,
    GREEN,
    ORANGE,
    RED,
    SITE,
    alerts_link,
    dashboard,
    query,
    site_variable,
    thresholds,
    where,
)
from patrol_dashboards.panels import big_number, rows, time_series

UID = "patrol-emergencies"
NOT_TEST = "\"trigger\" != 'test'"
ACKNOWLEDGED = "\"transition\" = 'acknowledged'"
RESOLVED = "\"transition\" = 'resolved'"
ESCALATED = "\"transition\" = 'escalated'"
ACK_THRESHOLDS = thresholds((None, GREEN), (60.0, ORANGE), (300.0, RED))
"""An alarm acknowledged within a minute is fine; after five minutes it is a failure."""
RESOLVE_THRESHOLDS = thresholds((None, GREEN), (900.0, ORANGE), (3600.0, RED))


def build() -> dm.Dashboard:
    """The emergencies dashboard."""
    timeline = time_series(
        "SOS and man-down",
        "Emergencies raised per interval by trigger (test alarms left out).",
        [
            query(
                f'SELECT count("seq") FROM "sos" {where(SITE, NOT_TEST, "$timeFilter")} '
                'GROUP BY time($__interval), "trigger" fill(none)',
                alias="$tag_trigger",
            )
        ],
        unit=units.Short,
        bars=True,
        links=[alerts_link()],
    )
    alerts = rows(
        "Emergencies",
        "Every SOS frame accepted in the range, test alarms included, newest first: the "
        "wearable, the trigger, how long it took to reach the cloud.",
        [
            query(
                'SELECT "seq", "delay_ms", "flags", "device"::tag, "trigger"::tag, '
                f'"assurance"::tag FROM "sos" {where(SITE, "$timeFilter")} ORDER BY time DESC',
                table=True,
            )
        ],
        time_title="Time",
        units={"delay_ms": units.Milliseconds},
        links=[alerts_link()],
    )
    to_ack = big_number(
        "Time to acknowledge",
        "Mean and longest time from an alert to its acknowledgement by a person (test "
        "alarms left out).",
        [
            query(
                'SELECT mean("elapsed_s") AS "mean", max("elapsed_s") AS "longest" FROM '
                f'"sos_response" {where(SITE, ACKNOWLEDGED, NOT_TEST, "$timeFilter")}',
                alias="$col",
            )
        ],
        unit=units.Seconds,
        thresholds=ACK_THRESHOLDS,
        links=[alerts_link()],
    )
    to_resolve = big_number(
        "Time to resolve",
        "Mean and longest time from an alert to its resolution (test alarms left out).",
        [
            query(
                'SELECT mean("elapsed_s") AS "mean", max("elapsed_s") AS "longest" FROM '
                f'"sos_response" {where(SITE, RESOLVED, NOT_TEST, "$timeFilter")}',
                alias="$col",
            )
        ],
        unit=units.Seconds,
        thresholds=RESOLVE_THRESHOLDS,
    )
    escalations = big_number(
        "Escalations",
        "Alerts escalated along the chain because nobody acknowledged them in time.",
        [
            query(
                'SELECT count("alert") FROM "sos_response" '
                f"{where(SITE, ESCALATED, NOT_TEST, '$timeFilter')}"
            )
        ],
        unit=units.Short,
        thresholds=COUNT_BAD_THRESHOLDS,
        no_value="0",
    )
    response_times = time_series(
        "Response times",
        "Each acknowledgement, escalation and resolution at its time, with the seconds it "
        "came after the alert.",
        [
            query(
                f'SELECT "elapsed_s" FROM "sos_response" {where(SITE, NOT_TEST, "$timeFilter")} '
                'GROUP BY "transition"',
                alias="$tag_transition",
            )
        ],
        unit=units.Seconds,
        points=True,
        thresholds=ACK_THRESHOLDS,
    )
    return dashboard(
        uid=UID,
        title="Patrol: emergencies",
        description="SOS and man-down timeline, acknowledgement and resolution times.",
        variables=[site_variable()],
        links=[alerts_link()],
        panels=[
            (to_ack, 8, 5),
            (to_resolve, 8, 5),
            (escalations, 8, 5),
            (timeline, 12, 8),
            (response_times, 12, 8),
            (alerts, 24, 8),
        ],
    )
