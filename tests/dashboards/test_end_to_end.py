"""End to end: what the product itself writes is what the dashboards read.

A shift of the compliance tests' depot (tests/compliance/storetest.py): taps and
heartbeats go through the real ingest API (which fills the InfluxDB outbox), the
real scoring writes the shift's score and rounds (``sink=True``), the product's
drain delivers everything to the real InfluxDB 1.x, and the dashboards' own
queries, interpolated as Grafana does, read it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dashboards_scenario import run
from grafana_rules import TimeRange, Variable, calculate_interval, interpolate
from patrol_dashboards.build import JSON_DIR
from sinktest import closed_port_url, private_database
from storetest import SHIFT_START, Depot, depot

from cloud_api.compliance import store
from cloud_api.db import session_scope
from cloud_api.sink.worker import DrainPolicy, drain_once
from cloud_api.sink.writers import V1Writer

pytestmark = pytest.mark.influxdb

DAY_FROM_MS = int(datetime(2026, 11, 24, tzinfo=UTC).timestamp() * 1000)
RANGE = TimeRange(DAY_FROM_MS, DAY_FROM_MS + 86_400_000 - 1)
assert SHIFT_START.date() == datetime(2026, 11, 24).date()


def _panel(uid: str, title: str) -> tuple[dict[str, Any], dict[str, Any]]:
    dashboard = json.loads((JSON_DIR / f"{uid}.json").read_text(encoding="utf-8"))
    panel = next(p for p in dashboard["panels"] if p["title"] == title)
    return panel, panel["targets"][0]


@pytest.fixture
def scored(influx_url: str, tmp_path: Path) -> Iterator[tuple[str, str, Depot]]:
    with private_database(influx_url) as db:
        for site in depot(f"sqlite:///{tmp_path}/cloud.db", influx_url=closed_port_url()):
            site.ingest(site.rounds(range(3)) + site.heartbeats())
            shift_id = site.shift()
            with session_scope(site.engine) as s:
                store.score_shift_row(
                    s, shift_id, now=datetime.now(UTC), hooks=store.Hooks(), sink=True
                )
            writer = V1Writer(influx_url, database=db)
            try:
                while drain_once(
                    site.engine, writer, owner="e2e", policy=DrainPolicy()
                ).claimed_rows:
                    pass
            finally:
                writer.close()
            yield influx_url, db, site


def _rows(url: str, db: str, uid: str, title: str, site: Depot) -> list[dict[str, Any]]:
    """The panel's first target for site ``site`` (post and guard: All), run."""
    panel, target = _panel(uid, title)
    variables = {
        "site": Variable("site", values=(str(site.site_id),)),
        "post": Variable("post", all_selected=True, all_value=".*"),
        "guard": Variable("guard", all_selected=True, all_value=".*"),
    }
    interval_ms = calculate_interval(86_400_000, panel["maxDataPoints"], panel.get("interval"))
    q = interpolate(target["query"], variables=variables, time_range=RANGE, interval_ms=interval_ms)
    return run(url, db, q)


def test_scored_shift_reaches_the_dashboards(scored: tuple[str, str, Depot]) -> None:
    url, db, site = scored
    site_tag, post_tag, guard_tag = str(site.site_id), str(site.post_id), str(site.guard_id)

    assert _rows(url, db, "patrol-overview", "Compliance score by post", site) == [
        {"time": "21:00:00", "mean": 100.0, "site": site_tag, "post": post_tag}
    ]
    assert _rows(url, db, "patrol-overview", "League table of guards", site) == [
        {"time": "00:00:00", "score": 100.0, "shifts": 1, "deductions": 0, "guard": guard_tag}
    ]
    rounds = _rows(url, db, "patrol-post-timeline", "Rounds", site)
    assert [(r["time"], r["outcome"], r["checkpoints_on_time"]) for r in rounds] == [
        ("21:00:00", "complete", 3),
        ("22:00:00", "complete", 3),
        ("23:00:00", "complete", 3),
    ]
    visits = _rows(url, db, "patrol-post-timeline", "Verified visits per checkpoint", site)
    assert sorted(r["visits"] for r in visits) == [3, 3, 3]  # doors A, B, C, one tap a round
    assert {r["checkpoint"] for r in visits} == {str(c) for c in site.checkpoints.values()}
    wearables = _rows(url, db, "patrol-equipment", "Wearable battery", site)
    assert [r["battery"] for r in wearables] == [80]
