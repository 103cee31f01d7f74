"""Edge health: gateways online, queue depth, oldest unsent event, dead letters, BLE
adapter and tags not heard, from the gateways' own health observations."""

# InfluxQL text built from this module's own constants, never from input: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

from grafana_foundation_sdk.builders import statetimeline
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import units

from patrol_dashboards.common import (
    COUNT_BAD_THRESHOLDS,
    COUNT_WARN_THRESHOLDS,
    GATEWAY,
    GREEN,
    ORANGE,
    RED,
    SITE,
    dashboard,
    gateway_variable,
    query,
    site_link,
    site_variable,
    thresholds,
    where,
)
from patrol_dashboards.panels import big_number, rows, text_map, time_series

UID = "patrol-edge-health"
HEALTH = "\"kind\" = 'gateway_health'"
EVICTED = "\"kind\" = 'evicted'"
HEALTH_FILTER = where(SITE, GATEWAY, HEALTH, "$timeFilter")
LAST_BY_GATEWAY = 'GROUP BY "gateway"'


def _online() -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title("Gateway online")
        .description(
            "Health reports received per interval: a gateway that sent none in an interval "
            "was offline (or cut off from the cloud) then."
        )
        .targets(
            [
                query(
                    f'SELECT count("gw_seq") FROM "gateway_health" {HEALTH_FILTER} '
                    'GROUP BY time($__interval), "gateway" fill(0)',
                    alias="$tag_gateway",
                )
            ]
        )
        .interval("1h")
        .mappings(
            [
                dm.RangeMap(
                    options=dm.DashboardRangeMapOptions(
                        from_val=0,
                        to=0,
                        result=dm.ValueMappingResult(text="offline", color=RED, index=0),
                    )
                ),
                dm.RangeMap(
                    options=dm.DashboardRangeMapOptions(
                        from_val=1,
                        to=1_000_000,
                        result=dm.ValueMappingResult(text="online", color=GREEN, index=1),
                    )
                ),
            ]
        )
        .merge_values(True)
    )


def build() -> dm.Dashboard:
    """The edge health dashboard."""
    queue = time_series(
        "Queue depth",
        "Items waiting in each gateway's durable queue (highest report per interval).",
        [
            query(
                f'SELECT max("obs_queue_depth") FROM "gateway_health" {HEALTH_FILTER} '
                'GROUP BY time($__interval), "gateway" fill(none)',
                alias="$tag_gateway",
            )
        ],
        unit=units.Short,
        links=[site_link()],
    )
    oldest = time_series(
        "Oldest unsent event",
        "Age of the oldest item not yet delivered to the cloud (highest report per "
        "interval). Over a minute the uplink is struggling; over five it is down.",
        [
            query(
                f'SELECT max("obs_oldest_unsent_s") FROM "gateway_health" {HEALTH_FILTER} '
                'GROUP BY time($__interval), "gateway" fill(none)',
                alias="$tag_gateway",
            )
        ],
        unit=units.Seconds,
        thresholds=thresholds((None, GREEN), (60.0, ORANGE), (300.0, RED)),
    )
    dead = big_number(
        "Dead letters",
        "Items the gateway gave up on (refused by the cloud), last report per gateway.",
        [
            query(
                'SELECT last("obs_dead_letters") FROM "gateway_health" '
                f"{HEALTH_FILTER} {LAST_BY_GATEWAY}",
                alias="$tag_gateway",
            )
        ],
        unit=units.Short,
        thresholds=COUNT_BAD_THRESHOLDS,
    )
    ble = big_number(
        "BLE adapter",
        "Whether the gateway's Bluetooth adapter was working at its last report.",
        [
            query(
                f'SELECT last("obs_ble_adapter_ok") FROM "gateway_health" '
                f"{HEALTH_FILTER} {LAST_BY_GATEWAY}",
                alias="$tag_gateway",
            )
        ],
        unit=units.NoUnit,
        thresholds=thresholds((None, "text")),
        mappings=[text_map(("true", "OK", GREEN), ("false", "DOWN", RED))],
    )
    not_heard = big_number(
        "Tags not heard",
        "Provisioned BLE tags (beacons, equipment) the gateway has not heard for a day, at "
        "its last report.",
        [
            query(
                'SELECT last("obs_tags_not_heard") FROM "gateway_health" '
                f"{HEALTH_FILTER} {LAST_BY_GATEWAY}",
                alias="$tag_gateway",
            )
        ],
        unit=units.Short,
        thresholds=COUNT_WARN_THRESHOLDS,
    )
    evictions = big_number(
        "Eviction records",
        "Times a gateway's full disk made it drop queued items (each record names the "
        "sequence ranges lost).",
        [
            query(
                'SELECT count("gw_seq") FROM "gateway_health" '
                f"{where(SITE, GATEWAY, EVICTED, '$timeFilter')} {LAST_BY_GATEWAY}",
                alias="$tag_gateway",
            )
        ],
        unit=units.Short,
        thresholds=COUNT_BAD_THRESHOLDS,
        no_value="0",
        calc="sum",
    )
    last_report = rows(
        "Last report",
        "When each gateway last reported its health (the row's time) and its sequence number.",
        [
            query(
                f'SELECT last("gw_seq") AS "gw_seq" FROM "gateway_health" {HEALTH_FILTER} '
                f"{LAST_BY_GATEWAY}",
                table=True,
            )
        ],
    )
    return dashboard(
        uid=UID,
        title="Patrol: edge health",
        description="Gateways online, queue depth, oldest unsent event, dead letters, BLE "
        "adapter status and tags not heard, from the gateways' own health reports.",
        variables=[site_variable(), gateway_variable()],
        panels=[
            (_online(), 24, 6),
            (dead, 6, 5),
            (ble, 6, 5),
            (not_heard, 6, 5),
            (evictions, 6, 5),
            (queue, 12, 8),
            (oldest, 12, 8),
            (last_report, 24, 6),
        ],
    )
