"""Both write paths against real servers: InfluxDB 1.6 `/write`, VictoriaMetrics `/api/v2/write`."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sinktest import closed_port_url, private_database, rows

from cloud_api.sink.schema import Point, encode_lines
from cloud_api.sink.writers import SinkWriteError, V1Writer, V2Writer, write_pipelined

BASE_NS = 1_795_579_200_123_000_000


@pytest.mark.influxdb
def test_v1_writer_stores_points_exactly(influx_url: str) -> None:
    points = [
        Point(
            "heartbeat", (("device", "0000a001"), ("site", "1")), (("battery_pct", n),), BASE_NS + n
        )
        for n in range(3)
    ]
    with private_database(influx_url) as db:
        writer = V1Writer(influx_url, database=db, retention_policy="autogen")
        writer.write(encode_lines(points).encode())
        writer.close()
        got = rows(influx_url, db, 'SELECT "battery_pct", "device", "site" FROM "heartbeat"')
    assert [(r["time"], r["battery_pct"], r["device"], r["site"]) for r in got] == [
        (BASE_NS + n, n, "0000a001", "1") for n in range(3)
    ]


@pytest.mark.influxdb
def test_v1_writer_classifies_failures(influx_url: str) -> None:
    down = V1Writer(closed_port_url(), database="x", timeout_s=2.0)
    with pytest.raises(SinkWriteError, match="unreachable") as outage:
        down.write(b"m v=1i 1")
    assert outage.value.retryable is True
    down.close()
    with private_database(influx_url) as db:
        writer = V1Writer(influx_url, database=db)
        with pytest.raises(SinkWriteError, match="HTTP 400") as bad:
            writer.write(b"m v=1i 1\nm v=oops 2")
        assert (bad.value.retryable, bad.value.status) == (False, 400)
        writer.close()
    missing = V1Writer(influx_url, database=f"missing_{uuid.uuid4().hex[:8]}")
    with pytest.raises(SinkWriteError, match="HTTP 404") as no_db:
        missing.write(b"m v=1i 1")
    assert (no_db.value.retryable, no_db.value.status) == (True, 404)
    missing.close()


@pytest.mark.influxdb
@pytest.mark.parametrize("in_flight", [1, 2])
def test_write_pipelined_writes_every_body(influx_url: str, in_flight: int) -> None:
    bodies = [
        encode_lines(
            Point("pipe", (("b", str(b)),), (("v", b * 10 + i),), BASE_NS + b * 10 + i)
            for i in range(10)
        ).encode()
        for b in range(5)
    ]
    with private_database(influx_url) as db:
        writer = V1Writer(influx_url, database=db)
        assert write_pipelined(writer, iter(bodies), in_flight=in_flight) == sum(
            len(b) for b in bodies
        )
        writer.close()
        got = rows(influx_url, db, 'SELECT "v" FROM "pipe" ORDER BY time')
    assert [r["v"] for r in got] == list(range(50))


def _vm_export(vm_url: str, match: str) -> list[dict[str, object]]:
    httpx.get(f"{vm_url}/internal/force_flush", timeout=10).raise_for_status()
    response = httpx.post(f"{vm_url}/api/v1/export", data={"match[]": match}, timeout=10)
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line]


@pytest.mark.victoriametrics
def test_v2_writer_through_influxdb_client_to_victoria_metrics(vm_url: str) -> None:
    run = uuid.uuid4().hex[:8]
    points = [
        Point(
            "scan",
            (("checkpoint", "3"), ("device", "0000a001"), ("method", "nfc"), ("run", run)),
            (("seq", 41 + n), ("delay_ms", 5377)),
            BASE_NS + n * 1_000_000,
        )
        for n in range(3)
    ]
    writer = V2Writer(vm_url, org="patrol", bucket="patrol", token="unused-by-vm")
    writer.write(encode_lines(points).encode())
    writer.close()
    got = sorted(
        _vm_export(vm_url, f'{{__name__=~"scan_.*",run="{run}"}}'),
        key=lambda s: str(s["metric"]),  # type: ignore[index]
    )
    assert got == [
        {
            "metric": {
                "__name__": "scan_delay_ms",
                "checkpoint": "3",
                "device": "0000a001",
                "method": "nfc",
                "run": run,
            },
            "values": [5377, 5377, 5377],
            "timestamps": [BASE_NS // 1_000_000 + n for n in range(3)],
        },
        {
            "metric": {
                "__name__": "scan_seq",
                "checkpoint": "3",
                "device": "0000a001",
                "method": "nfc",
                "run": run,
            },
            "values": [41, 42, 43],
            "timestamps": [BASE_NS // 1_000_000 + n for n in range(3)],
        },
    ]


@pytest.mark.victoriametrics
def test_v2_writer_outage_is_retryable() -> None:
    writer = V2Writer(closed_port_url(), org="o", bucket="b", token="t", timeout_s=2.0)
    with pytest.raises(SinkWriteError, match="unreachable") as outage:
        writer.write(b"m v=1i 1")
    assert outage.value.retryable is True
    writer.close()
