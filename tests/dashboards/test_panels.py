"""Every panel's every query, run against the real InfluxDB 1.x on a known scenario.

The scenario (dashboards_scenario.py) goes through the product's serialisers, outbox and
InfluxDB 1.x writer. For each target of each dashboard the query is interpolated
the way Grafana does it (grafana_rules.py: template variables, ``$timeFilter``,
``${__to}``, ``$__interval``), run, and its rows compared with the numbers the
scenario implies, exactly. A panel added without an expectation here fails
``test_every_target_has_an_expectation``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dashboards_scenario as scenario
import pytest
from dashboards_scenario import run
from grafana_rules import TimeRange, Variable, calculate_interval, interpolate
from patrol_dashboards.build import JSON_DIR
from sinktest import private_database

pytestmark = pytest.mark.influxdb

RANGE = TimeRange(scenario.FROM_MS, scenario.TO_MS)
SITE_1 = {
    "site": Variable("site", values=("1",)),
    "post": Variable("post", all_selected=True, all_value=".*"),
    "guard": Variable("guard", all_selected=True, all_value=".*"),
    "gateway": Variable("gateway", all_selected=True, all_value=".*"),
}
"""The selection every panel is checked with: site 1, every post, guard and gateway."""

Row = dict[str, Any]


def _dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(JSON_DIR.glob("*.json"))]


def _targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for dashboard in _dashboards():
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                yield dashboard["uid"], panel, target


def query_for(panel: dict[str, Any], target: dict[str, Any], variables: dict[str, Variable]) -> str:
    interval_ms = calculate_interval(
        RANGE.to_ms - RANGE.from_ms, int(panel["maxDataPoints"]), panel.get("interval")
    )
    return interpolate(
        target["query"], variables=variables, time_range=RANGE, interval_ms=interval_ms
    )


def hourly(column: str, values: dict[int, Any], **tags: str) -> list[Row]:
    """24 hourly buckets of ``fill(0)``: ``values`` by hour, 0 elsewhere."""
    return [
        {"time": f"{hour:02d}:00:00", column: values.get(hour, 0), **tags} for hour in range(24)
    ]


def hourly2(columns: tuple[str, str], values: dict[int, tuple[Any, Any]]) -> list[Row]:
    return [
        {"time": f"{hour:02d}:00:00", **dict(zip(columns, values.get(hour, (0, 0)), strict=True))}
        for hour in range(24)
    ]


EPOCH = "1970-01-01T00:00:00+00:00"
START = "00:00:00"
"""An aggregate without GROUP BY time() is stamped with the range's start."""

EXPECTED: dict[tuple[str, str, str], list[Row]] = {
    # ------------------------------------------------------------ company overview
    ("patrol-overview", "1 Target: mean shift score", "A"): [
        {"time": START, "mean": 91.25},  # shifts 100, 80, 90, 95 of site 1
    ],
    ("patrol-overview", "2 Incentive: service-star shifts", "A"): [
        {"time": START, "count": 2},  # 100 and 95
    ],
    ("patrol-overview", "3 Supervision: open rectification items", "A"): [
        {"time": EPOCH, "sum": 3},  # items 2, 3 and 4 (opened the day before); 1 resolved
    ],
    ("patrol-overview", "4 Self-restraint: rule breaches", "A"): [
        {"time": START, "count": 2},  # absent_from_zone, too_fast; inactive withdrawn
    ],
    ("patrol-overview", "5 Return visit: survey rating", "A"): [
        {"time": START, "mean": 4.5},
    ],
    ("patrol-overview", "6 Emergency: time to acknowledge", "A"): [
        {"time": START, "mean": 60.0},  # 30 s and 90 s; the test alarm's 10 s left out
    ],
    ("patrol-overview", "7 Guarantee: equipment readiness", "A"): [
        {"time": START, "mean": 81.25},  # 100, 50, 100, 75
    ],
    ("patrol-overview", "8 Innovation: scans by assurance", "A"): [
        {"time": START, "count": 5, "assurance": "high"},
        {"time": START, "count": 1, "assurance": "low"},
        {"time": START, "count": 2, "assurance": "medium"},
    ],
    ("patrol-overview", "Compliance score by post", "A"): [
        {"time": "06:00:00", "mean": 100.0, "site": "1", "post": "11"},
        {"time": "18:00:00", "mean": 90.0, "site": "1", "post": "11"},
        {"time": "06:00:00", "mean": 80.0, "site": "1", "post": "12"},
        {"time": "14:00:00", "mean": 95.0, "site": "1", "post": "12"},
    ],
    ("patrol-overview", "Compliance score by site", "A"): [
        {"time": START, "mean": 91.25, "site": "1"},
    ],
    ("patrol-overview", "League table of guards", "A"): [
        {"time": START, "score": 97.5, "shifts": 2, "deductions": 1, "guard": "101"},
        {"time": START, "score": 80.0, "shifts": 1, "deductions": 2, "guard": "102"},
        {"time": START, "score": 90.0, "shifts": 1, "deductions": 1, "guard": "103"},
    ],
    ("patrol-overview", "Open rectification items", "A"): [
        {"time": EPOCH, "open": 0, "overdue": 0, "site": "1", "post": ""},  # site-wide, withdrawn
        {"time": EPOCH, "open": 2, "overdue": 1, "site": "1", "post": "11"},
        {"time": EPOCH, "open": 1, "overdue": 0, "site": "1", "post": "12"},
    ],
    # ------------------------------------------------------------ post timeline
    ("patrol-post-timeline", "Expected checkpoint visits and verified visits", "A"): hourly(
        "expected", {6: 4, 7: 4, 18: 2}
    ),
    ("patrol-post-timeline", "Expected checkpoint visits and verified visits", "B"): hourly(
        "verified", {6: 4, 7: 3, 18: 1}
    ),
    ("patrol-post-timeline", "Missed and late checkpoints", "A"): hourly2(
        ("missed", "late"), {7: (1, 1)}
    ),
    ("patrol-post-timeline", "Rounds", "A"): [  # series in tag order: guard, then post
        {
            "time": "06:00:00",
            "round": 0,
            "outcome": "complete",
            "checkpoints_expected": 2,
            "checkpoints_on_time": 2,
            "checkpoints_late": 0,
            "checkpoints_missed": 0,
            "missed_ids": "",
            "late_ids": "",
            "post": "11",
            "guard": "101",
        },
        {
            "time": "07:00:00",
            "round": 1,
            "outcome": "complete",
            "checkpoints_expected": 2,
            "checkpoints_on_time": 1,
            "checkpoints_late": 1,
            "checkpoints_missed": 0,
            "missed_ids": "",
            "late_ids": "112",
            "post": "11",
            "guard": "101",
        },
        {
            "time": "06:00:00",
            "round": 0,
            "outcome": "complete",
            "checkpoints_expected": 2,
            "checkpoints_on_time": 2,
            "checkpoints_late": 0,
            "checkpoints_missed": 0,
            "missed_ids": "",
            "late_ids": "",
            "post": "12",
            "guard": "102",
        },
        {
            "time": "07:00:00",
            "round": 1,
            "outcome": "partial",
            "checkpoints_expected": 2,
            "checkpoints_on_time": 1,
            "checkpoints_late": 0,
            "checkpoints_missed": 1,
            "missed_ids": "122",
            "late_ids": "",
            "post": "12",
            "guard": "102",
        },
        {
            "time": "18:00:00",
            "round": 0,
            "outcome": "pending",
            "checkpoints_expected": 2,
            "checkpoints_on_time": 1,
            "checkpoints_late": 0,
            "checkpoints_missed": 0,
            "missed_ids": "",
            "late_ids": "",
            "post": "11",
            "guard": "103",
        },
    ],
    ("patrol-post-timeline", "Verified visits per checkpoint", "A"): [
        {"time": START, "visits": 3, "post": "11", "checkpoint": "111", "method": "nfc"},
        {"time": START, "visits": 1, "post": "11", "checkpoint": "112", "method": "ble"},
        {"time": START, "visits": 1, "post": "11", "checkpoint": "112", "method": "nfc"},
        {"time": START, "visits": 2, "post": "12", "checkpoint": "121", "method": "nfc"},
        {"time": START, "visits": 1, "post": "12", "checkpoint": "122", "method": "ble"},
    ],
    ("patrol-post-timeline", "Flagged events", "A"): [
        {
            "time": "18:10:00",
            "flags": "low_assurance_tag",
            "flag_count": 1,
            "delay_ms": 1500,
            "device": "0000a003",
            "checkpoint": "111",
            "assurance": "low",
        },
        {
            "time": "07:15:00",
            "flags": "device_clock_unsynced,clock_skew",
            "flag_count": 2,
            "delay_ms": 1500,
            "device": "0000a002",
            "checkpoint": "121",
            "assurance": "high",
        },
    ],
    # ------------------------------------------------------------ equipment
    ("patrol-equipment", "Items missing from on-duty guards", "A"): [
        {
            "time": START,
            "missing": 1,
            "items": "0000e002",
            "site": "1",
            "post": "11",
            "guard": "103",
        },
    ],
    ("patrol-equipment", "Battery per item", "A"): [
        {"time": "18:30:00", "battery": 75, "equipment": "0000e001"},
        {"time": "20:00:00", "battery": 55, "equipment": "0000e002"},
        {"time": "10:00:00", "battery": 15, "equipment": "0000e005"},
    ],
    ("patrol-equipment", "Battery over time", "A"): [
        {"time": "06:00:00", "min": 80, "equipment": "0000e001"},
        {"time": "18:00:00", "min": 75, "equipment": "0000e001"},
        {"time": "06:00:00", "min": 60, "equipment": "0000e002"},
        {"time": "20:00:00", "min": 55, "equipment": "0000e002"},
        {"time": "10:00:00", "min": 15, "equipment": "0000e005"},
    ],
    ("patrol-equipment", "Last heard, by whom", "A"): [
        {"time": "18:30:00", "rssi_dbm": -55, "equipment": "0000e001", "source": "wearable"},
        {"time": "20:00:00", "rssi_dbm": -70, "equipment": "0000e002", "source": "gateway"},
        {"time": "06:30:00", "rssi_dbm": -60, "equipment": "0000e002", "source": "wearable"},
        {"time": "10:00:00", "rssi_dbm": -80, "equipment": "0000e005", "source": "gateway"},
    ],
    ("patrol-equipment", "Wearable battery", "A"): [
        {"time": "06:30:00", "battery": 90, "device": "0000a001"},
        {"time": "06:40:00", "battery": 40, "device": "0000a002"},
        {"time": "18:30:00", "battery": 70, "device": "0000a003"},
    ],
    # ------------------------------------------------------------ emergencies
    ("patrol-emergencies", "Time to acknowledge", "A"): [
        {"time": START, "mean": 60.0, "longest": 90.0},
    ],
    ("patrol-emergencies", "Time to resolve", "A"): [
        {"time": START, "mean": 1200.0, "longest": 1800.0},
    ],
    ("patrol-emergencies", "Escalations", "A"): [{"time": START, "count": 1}],
    ("patrol-emergencies", "SOS and man-down", "A"): [
        {"time": "08:00:00", "count": 1, "trigger": "button"},
        {"time": "19:00:00", "count": 1, "trigger": "man_down"},
    ],
    ("patrol-emergencies", "Response times", "A"): [
        {"time": "08:00:30", "elapsed_s": 30.0, "transition": "acknowledged"},
        {"time": "19:01:30", "elapsed_s": 90.0, "transition": "acknowledged"},
        {"time": "19:01:00", "elapsed_s": 60.0, "transition": "escalated"},
        {"time": "08:10:00", "elapsed_s": 600.0, "transition": "resolved"},
        {"time": "19:30:00", "elapsed_s": 1800.0, "transition": "resolved"},
    ],
    ("patrol-emergencies", "Emergencies", "A"): [
        {
            "time": "19:00:00",
            "seq": 6,
            "delay_ms": 1500,
            "flags": "",
            "device": "0000a003",
            "trigger": "man_down",
            "assurance": "medium",
        },
        {
            "time": "12:00:00",
            "seq": 5,
            "delay_ms": 1500,
            "flags": "",
            "device": "0000a002",
            "trigger": "test",
            "assurance": "medium",
        },
        {
            "time": "08:00:00",
            "seq": 7,
            "delay_ms": 1500,
            "flags": "",
            "device": "0000a001",
            "trigger": "button",
            "assurance": "medium",
        },
    ],
    # ------------------------------------------------------------ edge health
    ("patrol-edge-health", "Gateway online", "A"): [
        *hourly("count", {6: 1, 7: 1, 8: 1, 9: 1}, gateway="gw-1"),
        *hourly("count", {6: 1, 7: 1}, gateway="gw-2"),
    ],
    ("patrol-edge-health", "Dead letters", "A"): [
        {"time": "09:00:00", "last": 1.0, "gateway": "gw-1"},
        {"time": "07:00:00", "last": 0.0, "gateway": "gw-2"},
    ],
    ("patrol-edge-health", "BLE adapter", "A"): [
        {"time": "09:00:00", "last": "unavailable", "gateway": "gw-1"},
        {"time": "07:00:00", "last": "scanning", "gateway": "gw-2"},
    ],
    ("patrol-edge-health", "Tags not heard", "A"): [
        {"time": START, "went quiet": 2, "gateway": "gw-1"},
    ],
    ("patrol-edge-health", "Tags not heard", "B"): [
        {"time": START, "heard again": 1, "gateway": "gw-1"},
    ],
    ("patrol-edge-health", "Eviction records", "A"): [
        {"time": START, "count": 1, "gateway": "gw-1"},
    ],
    ("patrol-edge-health", "Queue depth", "A"): [
        {"time": "06:00:00", "max": 0.0, "gateway": "gw-1", "site": "1"},
        {"time": "07:00:00", "max": 5.0, "gateway": "gw-1", "site": "1"},
        {"time": "08:00:00", "max": 12.0, "gateway": "gw-1", "site": "1"},
        {"time": "09:00:00", "max": 3.0, "gateway": "gw-1", "site": "1"},
        {"time": "06:00:00", "max": 0.0, "gateway": "gw-2", "site": "1"},
        {"time": "07:00:00", "max": 0.0, "gateway": "gw-2", "site": "1"},
    ],
    ("patrol-edge-health", "Oldest unsent event", "A"): [
        # 06:00 reports had nothing unsent (null age): no value, no bucket
        {"time": "07:00:00", "max": 30.0, "gateway": "gw-1"},
        {"time": "08:00:00", "max": 400.0, "gateway": "gw-1"},
        {"time": "09:00:00", "max": 10.0, "gateway": "gw-1"},
        {"time": "07:00:00", "max": 0.5, "gateway": "gw-2"},
    ],
    ("patrol-edge-health", "Last report", "A"): [
        {"time": "09:00:00", "gw_seq": 40, "gateway": "gw-1"},
        {"time": "07:00:00", "gw_seq": 4, "gateway": "gw-2"},
        {"time": "2026-11-22T18:00:00+00:00", "gw_seq": 7, "gateway": "gw-3"},
    ],
}

# Other selections: multi-value and single values, formatted as Grafana formats them.
OTHER_SELECTIONS: list[tuple[str, str, dict[str, Variable], list[Row]]] = [
    (
        "patrol-overview",
        "Compliance score by site",
        {**SITE_1, "site": Variable("site", values=("1", "2"))},  # -> (1|2)
        [
            {"time": START, "mean": 91.25, "site": "1"},
            {"time": START, "mean": 60.0, "site": "2"},
        ],
    ),
    (
        "patrol-overview",
        "Compliance score by post",
        {**SITE_1, "post": Variable("post", values=("12",))},
        [
            {"time": "06:00:00", "mean": 80.0, "site": "1", "post": "12"},
            {"time": "14:00:00", "mean": 95.0, "site": "1", "post": "12"},
        ],
    ),
    (
        "patrol-overview",
        "League table of guards",
        {**SITE_1, "guard": Variable("guard", values=("101", "103"))},
        [
            {"time": START, "score": 97.5, "shifts": 2, "deductions": 1, "guard": "101"},
            {"time": START, "score": 90.0, "shifts": 1, "deductions": 1, "guard": "103"},
        ],
    ),
    (
        "patrol-overview",
        "3 Supervision: open rectification items",
        {**SITE_1, "site": Variable("site", all_selected=True, all_value=".*")},
        [{"time": EPOCH, "sum": 4}],  # site 2's item 6 as well
    ),
    (
        "patrol-edge-health",
        "Dead letters",
        {**SITE_1, "gateway": Variable("gateway", values=("gw-2",))},
        [{"time": "07:00:00", "last": 0.0, "gateway": "gw-2"}],
    ),
]


@pytest.fixture(scope="module")
def loaded(influx_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with private_database(influx_url) as db:
        written = scenario.load(influx_url, db, tmp_path_factory.mktemp("outbox"))
        assert written == len(scenario.evidence_lines()) + len(scenario.derived_lines())
        yield influx_url, db


def _keys() -> list[tuple[str, str, str]]:
    return [(uid, panel["title"], target["refId"]) for uid, panel, target in _targets()]


def test_every_target_has_an_expectation() -> None:
    keys = _keys()
    assert len(keys) == len(set(keys)), "two panels of one dashboard share a title"
    assert sorted(keys) == sorted(EXPECTED)


@pytest.mark.parametrize(
    ("uid", "title", "ref_id"), sorted(EXPECTED), ids=["/".join(k) for k in sorted(EXPECTED)]
)
def test_panel_query(loaded: tuple[str, str], uid: str, title: str, ref_id: str) -> None:
    url, db = loaded
    (panel, target) = next(
        (p, t) for u, p, t in _targets() if (u, p["title"], t["refId"]) == (uid, title, ref_id)
    )
    q = query_for(panel, target, SITE_1)
    assert not re.search(r"\$(\w|\{)", q), f"a variable was left in: {q}"
    actual = run(url, db, q)
    assert actual == EXPECTED[(uid, title, ref_id)], f"{q}\nACTUAL {actual!r}"
    # Column settings (units, colours, hidden time) name columns the query really returns.
    columns = {"Time", *(key for row in actual for key in row)}
    for override in panel["fieldConfig"]["overrides"]:
        assert override["matcher"]["options"].replace("Time", "time") in columns | {"time"}, (
            title,
            override["matcher"]["options"],
        )


@pytest.mark.parametrize(
    ("uid", "title", "variables", "expected"),
    OTHER_SELECTIONS,
    ids=[f"{uid}/{title}" for uid, title, _, _ in OTHER_SELECTIONS],
)
def test_panel_query_other_selection(
    loaded: tuple[str, str],
    uid: str,
    title: str,
    variables: dict[str, Variable],
    expected: list[Row],
) -> None:
    url, db = loaded
    (panel, target) = next((p, t) for u, p, t in _targets() if (u, p["title"]) == (uid, title))
    assert run(url, db, query_for(panel, target, variables)) == expected


VARIABLE_VALUES: dict[str, list[str]] = {
    "site": ["1", "2"],
    "post": ["11", "12"],
    "guard": ["101", "102", "103"],
    "gateway": ["gw-1", "gw-2", "gw-3"],
}
"""What each variable offers with site 1 selected (the others set to All)."""


def test_template_variable_queries(loaded: tuple[str, str]) -> None:
    url, db = loaded
    seen: set[str] = set()
    for dashboard in _dashboards():
        for variable in dashboard["templating"]["list"]:
            q = interpolate(
                variable["query"], variables=SITE_1, time_range=RANGE, interval_ms=3_600_000
            )
            values = sorted({row["value"] for row in run(url, db, q)})
            assert values == VARIABLE_VALUES[variable["name"]], (dashboard["uid"], q)
            seen.add(variable["name"])
    assert seen == set(VARIABLE_VALUES)


def test_interval_follows_the_documented_rule() -> None:
    """24 h over 200 points is 432 s, rounded to 5m; the panels' 1h minimum wins."""
    assert calculate_interval(86_400_000, 200, None) == 300_000
    assert calculate_interval(86_400_000, 200, "1h") == 3_600_000
    assert calculate_interval(30 * 86_400_000, 200, "1h") == 10_800_000  # 30 d: 12960 s -> 3h


def test_scenario_lines_are_the_products(tmp_path: Path) -> None:
    """Sanity: the scenario writes every measurement the dashboards read."""
    measurements = {
        line.split(",", 1)[0] for line in scenario.evidence_lines() + scenario.derived_lines()
    }
    assert measurements == {
        "scan",
        "heartbeat",
        "equipment",
        "sos",
        "gateway_health",
        "compliance",
        "round",
        "deviation",
        "rectification",
        "survey",
        "sos_response",
    }
    del tmp_path
