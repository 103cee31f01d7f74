"""What gateway health costs on a large backlog: one snapshot (/healthz, the heartbeat) and
one /metrics scrape, beside the bare SQL they need.

A queue is filled with ``--items`` heartbeat frames (an uplink outage's backlog);
then, side by side in one run:

- baseline: counting the backlog with plain sqlite3 (``count(*)`` by priority, the
  oldest item, the dead-letter count), which is what a health look would cost if
  the queue did not keep its depth per priority in memory;
- :meth:`HealthMonitor.snapshot` (what ``/healthz`` and the heartbeat build);
- a full ``/metrics`` scrape over HTTP from the agent's own server, parsed.

Usage: ``.venv/bin/python bench/edge_health.py [--items 300000] [--repeat 20] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from edge_agent.clock import ClockWatch
from edge_agent.forwarder import Forwarder
from edge_agent.health import HealthMonitor
from edge_agent.inbound import ReceivedFrame
from edge_agent.metrics import AgentCollector, MetricsServer
from edge_agent.queue import EdgeQueue
from edge_agent.settings import EdgeSettings
from patrol_protocol.frames import Heartbeat, Kind, encode_body, encode_frame

BATCH = 20_000
KEY = bytes(range(32))


def fill(queue: EdgeQueue, items: int) -> None:
    body = encode_body(Heartbeat(battery_pct=80, battery_mv=3900, status=0, queue_depth=0))
    seq = 0
    devices = 50
    while seq < items:
        group = []
        for _ in range(min(BATCH, items - seq)):
            seq += 1
            device = 0x0000A000 + seq % devices
            dev_seq = seq // devices + 1
            raw = encode_frame(
                kind=Kind.HEARTBEAT, key_id=1, flags=0, device_id=device, seq=dev_seq,
                time_s=1_795_580_000 + dev_seq, time_ms=0, body=body, key=KEY,
            )  # fmt: skip
            group.append(
                ReceivedFrame(
                    device_id=device,
                    seq=dev_seq,
                    kind=Kind.HEARTBEAT,
                    raw=raw,
                    topic=f"patrol/v1/dev/{device:08x}/up",
                    received_at_ms=1_795_580_000_000 + seq,
                )
            )
        queue.append_many(group)


def timed_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="100k items, 5 repeats")
    args = parser.parse_args()
    items, repeat = (100_000, 5) if args.quick else (args.items, args.repeat)

    with tempfile.TemporaryDirectory() as tmp:
        settings = EdgeSettings(
            cloud_url="http://127.0.0.1:9",
            gateway_id="gw-bench",
            gateway_api_key=SecretStr("unused"),
            queue_path=Path(tmp) / "queue.sqlite3",
            queue_budget_bytes=None,
            metrics_port=0,
        )
        queue = EdgeQueue(settings.queue_path, synchronous="NORMAL")
        start = time.perf_counter()
        fill(queue, items)
        fill_s = time.perf_counter() - start
        file_mb = os.path.getsize(settings.queue_path) / 1e6

        bare = sqlite3.connect(settings.queue_path)

        def bare_queries() -> None:
            bare.execute("SELECT priority, count(*) FROM items GROUP BY priority").fetchall()
            bare.execute("SELECT received_at_ms FROM items ORDER BY gw_seq LIMIT 1").fetchone()
            bare.execute("SELECT count(*) FROM dead_letters").fetchone()

        clock = ClockWatch(queue)
        forwarder = Forwarder(settings, queue, clock=clock)
        monitor = HealthMonitor(
            settings, queue, forwarder, clock, ingest=lambda: None, ble=lambda: None
        )
        registry = CollectorRegistry()
        registry.register(AgentCollector(monitor, forwarder, ingest=lambda: None, ble=lambda: None))
        server = MetricsServer("127.0.0.1", 0, registry, monitor)
        server.start()
        client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}")

        def scrape() -> None:
            families = list(text_string_to_metric_families(client.get("/metrics").text))
            assert families

        try:
            base_med, base_max = timed_ms(bare_queries, repeat)
            snap_med, snap_max = timed_ms(monitor.snapshot, repeat)
            scrape_med, scrape_max = timed_ms(scrape, repeat)
        finally:
            client.close()
            server.stop()
            forwarder.stop()
            bare.close()
            queue.close()

    print(f"queue: {items:,} heartbeat frames ({file_mb:.1f} MB, filled in {fill_s:.1f} s, "
          f"synchronous=NORMAL for the fill only); {repeat} repeats, median / max")  # fmt: skip
    print(f"baseline, bare sqlite3 queries:   {base_med:8.1f} ms / {base_max:8.1f} ms")
    print(f"HealthMonitor.snapshot():         {snap_med:8.1f} ms / {snap_max:8.1f} ms  "
          f"({snap_med / base_med:.2f}x baseline)")  # fmt: skip
    print(f"/metrics scrape over HTTP+parse:  {scrape_med:8.1f} ms / {scrape_max:8.1f} ms  "
          f"({scrape_med / base_med:.2f}x baseline)")  # fmt: skip


if __name__ == "__main__":
    main()
