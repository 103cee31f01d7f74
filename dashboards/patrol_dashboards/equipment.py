"""Equipment readiness: battery per item, where and when each item was last heard, and
the required items missing from guards on duty."""

# InfluxQL text built from this module's own constants, never from input: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import units

from patrol_dashboards.common import (
    COUNT_BAD_THRESHOLDS,
    GREEN,
    GUARD,
    ORANGE,
    POST,
    RED,
    SHIFTS,
    SITE,
    dashboard,
    guard_variable,
    post_row_link,
    post_variable,
    query,
    site_variable,
    thresholds,
    where,
)
from patrol_dashboards.panels import rows, time_series

UID = "patrol-equipment"
BATTERY_THRESHOLDS = thresholds((None, RED), (20.0, ORANGE), (40.0, GREEN))
"""Under 20 % an item will not last a shift; under 40 % it should go on the charger."""
ON_DUTY = '"on_duty" = true'
MISSING = '"equipment_missing" > 0'
MISSING_FILTER = where(SHIFTS, SITE, POST, GUARD, ON_DUTY, MISSING, "$timeFilter")


def build() -> dm.Dashboard:
    """The equipment readiness dashboard."""
    battery = rows(
        "Battery per item",
        "Each equipment tag's last reported battery and when it was last heard (the row's "
        "time), by the guard's wearable or by the site gateway.",
        [
            query(
                'SELECT last("battery_pct") AS "battery" FROM "equipment" '
                f'{where(SITE, "$timeFilter")} GROUP BY "equipment"',
                table=True,
            )
        ],
        time_title="Last heard",
        sort_by="battery",
        descending=False,
        units={"battery": units.Percent},
        coloured=["battery"],
        thresholds=BATTERY_THRESHOLDS,
    )
    battery_trend = time_series(
        "Battery over time",
        "Lowest battery reported per item in each interval.",
        [
            query(
                f'SELECT min("battery_pct") FROM "equipment" {where(SITE, "$timeFilter")} '
                'GROUP BY time($__interval), "equipment" fill(none)',
                alias="$tag_equipment",
            )
        ],
        unit=units.Percent,
        thresholds=BATTERY_THRESHOLDS,
        min_value=0,
        max_value=100,
    )
    last_seen = rows(
        "Last heard, by whom",
        "When each item was last heard by a guard's wearable (carried: source wearable) and "
        "by the gateway (on the charger or in the guard room: source gateway), with its RSSI.",
        [
            query(
                'SELECT last("rssi_dbm") AS "rssi_dbm" FROM "equipment" '
                f'{where(SITE, "$timeFilter")} GROUP BY "equipment", "source"',
                table=True,
            )
        ],
        time_title="Last heard",
        units={"rssi_dbm": units.DecibelMilliWatt},
    )
    missing = rows(
        "Items missing from on-duty guards",
        "Guards on a shift in progress whose required equipment was not near them at the "
        "last heartbeat: how many items and which tags.",
        [
            query(
                'SELECT last("equipment_missing") AS "missing", last("equipment_missing_ids") AS '
                f'"items" FROM "compliance" {MISSING_FILTER} '
                'GROUP BY "site", "post", "guard"',
                table=True,
            )
        ],
        time_title=None,
        coloured=["missing"],
        thresholds=COUNT_BAD_THRESHOLDS,
        links=[post_row_link()],
    )
    wearables = rows(
        "Wearable battery",
        "Each guard wearable's last reported battery in the range.",
        [
            query(
                'SELECT last("battery_pct") AS "battery" FROM "heartbeat" '
                f'{where(SITE, "$timeFilter")} GROUP BY "device"',
                table=True,
            )
        ],
        time_title="Last heartbeat",
        sort_by="battery",
        descending=False,
        units={"battery": units.Percent},
        coloured=["battery"],
        thresholds=BATTERY_THRESHOLDS,
    )
    return dashboard(
        uid=UID,
        title="Patrol: equipment readiness",
        description="Battery per item, when and by whom each item was last heard, and "
        "required items missing from guards on duty.",
        variables=[site_variable(), post_variable(), guard_variable()],
        panels=[
            (missing, 12, 8),
            (battery, 12, 8),
            (battery_trend, 24, 8),
            (last_seen, 12, 8),
            (wearables, 12, 8),
        ],
    )
