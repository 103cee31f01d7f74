"""The private InfluxDB 1.x and VictoriaMetrics accept and return what the product writes.

InfluxDB 1.x is the end-to-end path: line protocol to the v1 `/write` endpoint and
InfluxQL through `/query`, as the cloud's sink and the Grafana panels use it.
VictoriaMetrics only checks the InfluxDB 2.x wire path (`/api/v2/write`), which
it accepts and stores as `<measurement>_<field>` series.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

# A fixed, past instant with sub-millisecond digits, so precision loss would show.
TIME_NS = 1_700_000_000_123_456_789


def unique_measurement(prefix: str) -> str:
    """A measurement name no other test uses in the shared, session-wide database."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.mark.influxdb
def test_influxdb_v1_write_then_influxql_reads_it_back(influx_url: str, influx_db: str) -> None:
    measurement = unique_measurement("patrol_scan")
    line = (
        f"{measurement},site=site-1,checkpoint=cp-03 seq=42i,rssi_dbm=-61i,"
        f'verified=true,uid="04a1b2c3d4e5f6",score=0.75 {TIME_NS}\n'
    )

    written = httpx.post(
        f"{influx_url}/write", params={"db": influx_db, "precision": "ns"}, content=line
    )
    assert written.status_code == 204, written.text

    answer = httpx.get(
        f"{influx_url}/query",
        params={"db": influx_db, "epoch": "ns", "q": f'SELECT * FROM "{measurement}"'},
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "results": [
            {
                "statement_id": 0,
                "series": [
                    {
                        "name": measurement,
                        "columns": [
                            "time",
                            "checkpoint",
                            "rssi_dbm",
                            "score",
                            "seq",
                            "site",
                            "uid",
                            "verified",
                        ],
                        "values": [
                            [TIME_NS, "cp-03", -61, 0.75, 42, "site-1", "04a1b2c3d4e5f6", True]
                        ],
                    }
                ],
            }
        ]
    }


@pytest.mark.influxdb
def test_influxdb_rejects_malformed_line_protocol(influx_url: str, influx_db: str) -> None:
    answer = httpx.post(f"{influx_url}/write", params={"db": influx_db}, content="no fields here")
    assert answer.status_code == 400
    assert answer.json() == {"error": "unable to parse 'no fields here': invalid field format"}


@pytest.mark.influxdb
def test_influxdb_has_only_the_test_database(influx_url: str, influx_db: str) -> None:
    answer = httpx.get(f"{influx_url}/query", params={"q": "SHOW DATABASES"})
    assert answer.json()["results"][0]["series"][0]["values"] == [[influx_db]]


@pytest.mark.victoriametrics
def test_victoriametrics_accepts_influx_v2_write(vm_url: str) -> None:
    measurement = unique_measurement("patrol_heartbeat")
    line = f"{measurement},device=0000a001 battery_pct=87i,queue_depth=3i {TIME_NS}\n"

    written = httpx.post(
        f"{vm_url}/api/v2/write",
        params={"org": "patrol", "bucket": "patrol", "precision": "ns"},
        content=line,
    )
    assert written.status_code == 204, written.text
    # Make the just-written samples searchable now instead of within a second.
    assert httpx.get(f"{vm_url}/internal/force_flush").status_code == 200

    exported = httpx.get(
        f"{vm_url}/api/v1/export", params={"match[]": f'{{__name__=~"{measurement}_.*"}}'}
    )
    assert exported.status_code == 200
    series = sorted(
        (json.loads(row) for row in exported.text.splitlines() if row),
        key=lambda row: row["metric"]["__name__"],
    )
    # VictoriaMetrics stores milliseconds: the nanosecond digits are cut off.
    assert series == [
        {
            "metric": {"__name__": f"{measurement}_battery_pct", "device": "0000a001"},
            "values": [87],
            "timestamps": [TIME_NS // 1_000_000],
        },
        {
            "metric": {"__name__": f"{measurement}_queue_depth", "device": "0000a001"},
            "values": [3],
            "timestamps": [TIME_NS // 1_000_000],
        },
    ]
