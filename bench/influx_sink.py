"""InfluxDB sink throughput against a raw HTTP POST of the same line protocol.

Baseline: the line protocol is built BEFORE the clock starts, cut into
5,000-line batches, and POSTed with a bare ``httpx.Client`` to InfluxDB 1.x
``/write?precision=ns``, one batch after another (the brief's baseline).
``raw_x2``: the same raw POSTs with as many requests in flight as the sink
uses (two), a stricter comparison printed beside it.

Sink: the same points from stored event rows (dicts shaped like rows of
``events``): the sink's line builder (``lines_for_event``) serialises them,
5,000 lines per body, and :func:`cloud_api.sink.writers.write_pipelined` sends
them through the :class:`~cloud_api.sink.writers.V1Writer`, two writes in
flight while the next body is serialised. Optionally (``--outbox``) also the
full outbox drain from a SQLite file: rows written as ingest writes them (one
per 500 events), drained by the worker's ``drain`` (claim, write, delete).

Each path writes into its own fresh database; rounds alternate (baseline,
sink, baseline, ...) and the best round of each is reported, with the ratio.
Every run checks that InfluxDB holds exactly the expected number of points.

Run: ``.venv/bin/python bench/influx_sink.py`` (starts a private influxd from
Debian's package, as scripts/test does) or ``--influx-url http://host:8086``;
``--quick`` for a smaller run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud_api.sink.schema import lines_for_event
from cloud_api.sink.worker import WRITES_IN_FLIGHT
from cloud_api.sink.writers import V1Writer, write_pipelined
from patrol_protocol.frames import Kind

BATCH_LINES = 5000
"""InfluxDB's documented optimum batch size, and the brief's."""
START_TIMEOUT_S = 30.0
DEVICES = 200
T0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@contextmanager
def private_influxd() -> Iterator[str]:
    """A throwaway influxd like scripts/lib/services.sh start_influxdb: loopback, temp dirs."""
    binary = shutil.which("influxd")
    if binary is None:
        sys.exit("influxd not found: install Debian's influxdb or pass --influx-url")
    folder = Path(tempfile.mkdtemp(prefix="bench-influx-"))
    http_port, rpc_port = free_ports(2)
    (folder / "influxdb.conf").write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{folder}/meta"
[data]
  dir = "{folder}/data"
  wal-dir = "{folder}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  unix-socket-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
""",
        encoding="utf-8",
    )
    log = (folder / "influxd.log").open("wb")
    process = subprocess.Popen(
        [binary, "run", "-config", str(folder / "influxdb.conf")],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/ping", timeout=1).status_code == 204:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                sys.exit(f"influxd did not start; log in {folder}/influxd.log")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def influxql(url: str, q: str, db: str | None = None) -> Any:
    data = {"q": q}
    if db:
        data["db"] = db
    response = httpx.post(f"{url}/query", data=data, timeout=60)
    response.raise_for_status()
    return response.json()["results"][0]


def count_points(url: str, db: str) -> int:
    result = influxql(url, 'SELECT count("seq") FROM "scan", "heartbeat"', db)
    return sum(series["values"][0][1] for series in result.get("series", []))


def event_rows(n: int) -> list[dict[str, Any]]:
    """Stored scan and heartbeat rows, round-robin over DEVICES wearables."""
    rows = []
    for i in range(n):
        device = 0xA000 + i % DEVICES
        seq = i // DEVICES + 1
        heartbeat = i % 4 == 3
        rows.append(
            {
                "kind": int(Kind.HEARTBEAT if heartbeat else Kind.NFC_SCAN),
                "device_id": device,
                "seq": seq,
                "device_time": T0 + timedelta(milliseconds=seq * 1500),
                "received_at": T0 + timedelta(milliseconds=seq * 1500 + 900),
                "assurance": "high",
                "flags": [],
                "body": {
                    "battery_pct": 80,
                    "battery_mv": 3900,
                    "status": 0,
                    "queue_depth": 1,
                    "items": [],
                }
                if heartbeat
                else {"tag_type": 1, "uid": "04de5f1eacc040"},
                "sun_read_counter": None if heartbeat else seq,
                "checkpoint_id": None if heartbeat else 1 + i % 40,
            }
        )
    return rows


def sink_bodies(rows: list[dict[str, Any]]) -> Iterator[bytes]:
    """The sink's path from stored rows to 5,000-line bodies."""
    lines: list[str] = []
    for row in rows:
        post = None if row["checkpoint_id"] is None else 1 + row["checkpoint_id"] % 8
        lines += lines_for_event(row, site_id=1, post_id=post)
        if len(lines) >= BATCH_LINES:
            yield "\n".join(lines).encode()
            lines = []
    if lines:
        yield "\n".join(lines).encode()


def run_baseline(url: str, db: str, bodies: list[bytes]) -> float:
    with httpx.Client(base_url=url, params={"db": db, "precision": "ns"}, timeout=60) as client:
        start = time.perf_counter()
        for body in bodies:
            response = client.post("/write", content=body)
            if response.status_code != 204:
                raise RuntimeError(f"baseline write: HTTP {response.status_code} {response.text}")
        return time.perf_counter() - start


def run_raw_concurrent(url: str, db: str, bodies: list[bytes]) -> float:
    """The baseline with as many POSTs in flight as the sink uses: the stricter comparison."""
    with (
        httpx.Client(base_url=url, params={"db": db, "precision": "ns"}, timeout=60) as client,
        ThreadPoolExecutor(max_workers=WRITES_IN_FLIGHT) as pool,
    ):
        start = time.perf_counter()
        for response in pool.map(lambda body: client.post("/write", content=body), bodies):
            if response.status_code != 204:
                raise RuntimeError(f"raw write: HTTP {response.status_code} {response.text}")
        return time.perf_counter() - start


def run_sink(url: str, db: str, rows: list[dict[str, Any]]) -> float:
    writer = V1Writer(url, database=db, timeout_s=60)
    start = time.perf_counter()
    write_pipelined(writer, sink_bodies(rows), in_flight=WRITES_IN_FLIGHT)
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed


def run_outbox(url: str, db: str, rows: list[dict[str, Any]], folder: Path) -> float:
    """Outbox rows as ingest writes them (one per 500-event batch), then a timed drain."""
    from cloud_api.db import init_db, make_engine, session_scope
    from cloud_api.sink.outbox import enqueue
    from cloud_api.sink.worker import DrainPolicy, drain

    engine = make_engine(f"sqlite:///{folder}/outbox-{uuid.uuid4().hex[:6]}.db")
    init_db(engine)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for first in range(0, len(rows), 500):
            lines = [
                line
                for row in rows[first : first + 500]
                for line in lines_for_event(row, site_id=1, post_id=None)
            ]
            enqueue(session, lines="\n".join(lines), n_points=len(lines), now=now)
    writer = V1Writer(url, database=db, timeout_s=60)
    start = time.perf_counter()
    drain(engine, writer, owner="bench", policy=DrainPolicy(batch_points=BATCH_LINES))
    elapsed = time.perf_counter() - start
    writer.close()
    engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--influx-url", help="use this InfluxDB 1.x instead of a private one")
    parser.add_argument("--points", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100,000 points, 2 rounds")
    parser.add_argument("--outbox", action="store_true", help="also time the outbox drain")
    args = parser.parse_args()
    if args.quick:
        args.points, args.rounds = 100_000, 2

    rows = event_rows(args.points)
    bodies = list(sink_bodies(rows))  # the baseline's pre-built line protocol (untimed)
    n_points = sum(body.count(b"\n") + 1 for body in bodies)

    server = nullcontext(args.influx_url) if args.influx_url else private_influxd()
    with server as url:
        version = httpx.get(f"{url}/ping", timeout=5).headers.get("X-Influxdb-Version", "?")
        print(f"InfluxDB {version} at {url}, /write precision=ns")
        print(
            f"points: {n_points:,} ({len(bodies)} batches of <= {BATCH_LINES:,} lines, "
            f"{sum(map(len, bodies)) / n_points:.0f} bytes/line), rounds: {args.rounds}, "
            f"cpus: {os.cpu_count()}"
        )
        best: dict[str, float] = {}
        folder = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
        paths = ["baseline", "raw_x2", "sink"] + (["outbox"] if args.outbox else [])
        for round_no in range(args.rounds):
            for path in paths:
                db = f"bench_{path}_{uuid.uuid4().hex[:8]}"
                influxql(url, f'CREATE DATABASE "{db}"')
                if path == "baseline":
                    elapsed = run_baseline(url, db, bodies)
                elif path == "raw_x2":
                    elapsed = run_raw_concurrent(url, db, bodies)
                elif path == "sink":
                    elapsed = run_sink(url, db, rows)
                else:
                    elapsed = run_outbox(url, db, rows, folder)
                stored = count_points(url, db)
                influxql(url, f'DROP DATABASE "{db}"')
                if stored != n_points:
                    sys.exit(f"{path}: InfluxDB holds {stored} points, expected {n_points}")
                rate = n_points / elapsed
                print(f"  round {round_no + 1} {path:8s} {elapsed:6.2f} s  {rate:10,.0f} points/s")
                best[path] = max(best.get(path, 0.0), rate)
        shutil.rmtree(folder, ignore_errors=True)
        print("best of rounds (ratio to the raw POST, and to the raw POST with as many in flight):")
        for path in paths:
            ratio = best[path] / best["baseline"]
            ratio_x2 = best[path] / best["raw_x2"]
            print(f"  {path:8s} {best[path]:10,.0f} points/s  {ratio:.2f}x  {ratio_x2:.2f}x")
        print("target: sink >= 0.80x the raw POST")


if __name__ == "__main__":
    main()
