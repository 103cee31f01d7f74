"""Edge health: gateways online, queue depth, oldest unsent event, dead letters, BLE
adapter and tags not heard, from the gateways' own observations.

Field names are those of the edge agent's ``gateway_health`` observation
(``edge_agent.health.Health.observation_body``: ``queue_depth``,
``oldest_unsent_age_s``, ``dead_letters``, ``ble_state``, ...), which the sink
stores as ``obs_<key>``, and its BLE tracker's ``ble_tag_away`` / ``ble_tag_back``
observations (``kind`` tag).
"""

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
    TO,
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
AWAY = "\"kind\" = 'ble_tag_away'"
BACK = "\"kind\" = 'ble_tag_back'"
HEALTH_FILTER = where(SITE, GATEWAY, HEALTH, "$timeFilter")
LAST_BY_GATEWAY = 'GROUP BY "gateway"'


def _online() -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title("Gateway online")
        .description(
            "Health reports received per interval: a gateway that sent none in an interval "
            "was offline (or cut off from the cloud) then. One silent for the whole range "
            "is not drawn: see Last report."
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
                'GROUP BY time($__interval), "site", "gateway" fill(none)',
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
                f'SELECT max("obs_oldest_unsent_age_s") FROM "gateway_health" {HEALTH_FILTER} '
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
        "State of the gateway's Bluetooth scanner at its last report: scanning (working), "
        "starting or stopped, unavailable (adapter missing or failed), disabled (no BLE).",
        [
            query(
                f'SELECT last("obs_ble_state") FROM "gateway_health" '
                f"{HEALTH_FILTER} {LAST_BY_GATEWAY}",
                alias="$tag_gateway",
            )
        ],
        unit=units.NoUnit,
        thresholds=thresholds((None, "text")),
        mappings=[
            text_map(
                ("scanning", "scanning", GREEN),
                ("starting", "starting", ORANGE),
                ("stopped", "stopped", ORANGE),
                ("unavailable", "UNAVAILABLE", RED),
                ("disabled", "disabled", "text"),
            )
        ],
    )
    not_heard = big_number(
        "Tags not heard",
        "BLE tags (off-the-shelf beacons and tags) each gateway reported as gone quiet in the "
        "range (not heard for its away_after_s), and how many of those were heard again.",
        [
            query(
                'SELECT count("gw_seq") AS "went quiet" FROM "gateway_health" '
                f"{where(SITE, GATEWAY, AWAY, '$timeFilter')} {LAST_BY_GATEWAY}",
                "A",
                alias="$tag_gateway went quiet",
            ),
            query(
                'SELECT count("gw_seq") AS "heard again" FROM "gateway_health" '
                f"{where(SITE, GATEWAY, BACK, '$timeFilter')} {LAST_BY_GATEWAY}",
                "B",
                alias="$tag_gateway heard again",
            ),
        ],
        unit=units.Short,
        thresholds=COUNT_WARN_THRESHOLDS,
        no_value="0",
        calc="sum",
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
        "When each gateway last reported its health (the row's time) and its sequence "
        "number, looking back beyond the range: a gateway silent for days shows here with "
        "its old time, while it is absent from the panels above.",
        [
            query(
                'SELECT last("gw_seq") AS "gw_seq" FROM "gateway_health" '
                f"{where(SITE, GATEWAY, HEALTH, TO)} {LAST_BY_GATEWAY}",
                table=True,
            )
        ],
        time_title="Last report",
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
