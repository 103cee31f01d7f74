"""The outbox on SQLite and PostgreSQL: filled with the evidence, drained only on success.

The InfluxDB outage is real: the writer points at a closed port, then at the
private InfluxDB 1.6 ("recovery"); the points are read back with InfluxQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cloudtest import (
    DEVICE,
    NTAG21X_UID,
    SERVER_NOW,
    T0,
    World,
    frame_item,
    make_frame,
    observation_item,
)
from sinktest import closed_port_url, private_database, rows
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cloud_api.db import init_db, make_engine, session_scope
from cloud_api.models import InfluxOutbox, InfluxOutboxLines
from cloud_api.sink.outbox import backoff_s, claim, complete, enqueue, pending_points
from cloud_api.sink.worker import DrainPolicy, SinkWorker, drain, drain_once
from cloud_api.sink.writers import V1Writer
from patrol_protocol.frames import TAG_NTAG21X, EquipmentNear, Heartbeat, NfcScan, Sos

T0_NS = T0 * 1_000_000_000
POLICY = DrainPolicy(batch_points=5000, lease_s=60, retry_initial_s=2, retry_max_s=300)


@pytest.fixture
def influx(influx_url: str) -> Iterator[tuple[str, str]]:
    with private_database(influx_url) as db:
        yield influx_url, db


def _sink_world(make_world: Callable[..., World]) -> World:
    # The outbox is filled (influx_url set) but this process runs no worker: the test drains.
    return make_world(influx_url=closed_port_url(), sink_run_worker=False)


def _three_events() -> list[dict[str, object]]:
    scan = make_frame(NfcScan(tag_type=TAG_NTAG21X, uid=NTAG21X_UID), seq=1, time_ms=250)
    heartbeat = make_frame(
        Heartbeat(
            battery_pct=80,
            battery_mv=3900,
            status=0,
            queue_depth=2,
            items=(EquipmentNear(tag_id=0xE001, rssi_dbm=-60, battery_pct=55),),
        ),
        seq=2,
        time_ms=250,  # the same millisecond as the scan
    )
    sos = make_frame(Sos(trigger=1), seq=3, time_ms=251)
    return [frame_item(1, scan), frame_item(2, heartbeat), frame_item(3, sos)]


def _outbox_rows(world: World) -> list[tuple[int, int, str | None]]:
    return [
        (r.n_points, r.attempts, r.last_error)
        for r in world.rows("SELECT n_points, attempts, last_error FROM influx_outbox ORDER BY id")
    ]


def test_no_sink_no_outbox_rows(world: World) -> None:
    assert [r["status"] for r in world.results(*_three_events())] == ["accepted"] * 3
    assert world.scalar("SELECT count(*) FROM influx_outbox") == 0


def test_ingest_fills_one_outbox_row_per_batch_with_exact_lines(
    make_world: Callable[..., World],
) -> None:
    world = _sink_world(make_world)
    results = world.results(*_three_events(), observation_item(4, {"kind": "health", "cpu": 5}))
    assert [r["status"] for r in results] == ["accepted"] * 4
    site = world.scalar("SELECT id FROM sites WHERE name = 'Harbour depot'")
    post = world.scalar("SELECT id FROM posts WHERE name = 'Main gate'")
    cp = world.checkpoint_ids["plain"]
    ms = T0_NS + 250_000_000
    lines = world.scalar("SELECT lines FROM influx_outbox_lines")
    assert lines.split("\n") == [
        f"scan,assurance=low,checkpoint={cp},device={DEVICE:08x},method=nfc,post={post},"
        f'site={site} seq=1i,delay_ms=4750i,flag_count=1i,flags="low_assurance_tag" {ms + 1}',
        f"heartbeat,device={DEVICE:08x},site={site} seq=2i,battery_pct=80i,battery_mv=3900i,"
        f"status=0i,queue_depth=2i,equipment_count=1i,delay_ms=4750i,flag_count=0i {ms + 2}",
        f"equipment,device={DEVICE:08x},equipment=0000e001,site={site},source=wearable "
        f"rssi_dbm=-60i,battery_pct=55i,seq=2i {ms + 2}",
        f"sos,assurance=medium,device={DEVICE:08x},site={site},trigger=button "
        f'seq=3i,trigger_code=1i,delay_ms=4749i,flags="" {ms + 1_000_000 + 3}',
        f"gateway_health,gateway=gw-test-1,kind=health,site={site} "
        f"gw_seq=4i,clock_synced=true,obs_cpu=5.0 {T0_NS + 5_000_000_000 + 4}",
    ]
    assert _outbox_rows(world) == [(5, 0, None)]
    # A retried batch is all duplicates: nothing new to send.
    assert [r["status"] for r in world.results(*_three_events())] == ["duplicate"] * 3
    assert world.scalar("SELECT count(*) FROM influx_outbox") == 1


@pytest.mark.influxdb
def test_outage_loses_nothing_and_recovery_writes_each_point_once(
    make_world: Callable[..., World], influx: tuple[str, str]
) -> None:
    world = _sink_world(make_world)
    world.results(*_three_events())
    url, db = influx
    down = V1Writer(closed_port_url(), database=db, timeout_s=2.0)
    owner = "worker-a"

    failed = drain_once(world.engine, down, owner=owner, policy=POLICY, clock=lambda: SERVER_NOW)
    assert (failed.claimed_rows, failed.written_points, failed.failed_rows) == (1, 0, 1)
    assert _outbox_rows(world)[0][:2] == (4, 1)
    assert "unreachable" in (_outbox_rows(world)[0][2] or "")
    # Backing off: not due again before 2 s.
    soon = drain_once(
        world.engine,
        down,
        owner=owner,
        policy=POLICY,
        clock=lambda: SERVER_NOW + timedelta(seconds=1),
    )
    assert soon.claimed_rows == 0
    again = drain_once(
        world.engine,
        down,
        owner=owner,
        policy=POLICY,
        clock=lambda: SERVER_NOW + timedelta(seconds=3),
    )
    assert again.failed_rows == 1
    assert _outbox_rows(world)[0][:2] == (4, 2)
    down.close()

    up = V1Writer(url, database=db)
    later = SERVER_NOW + timedelta(seconds=60)
    done = drain(world.engine, up, owner=owner, policy=POLICY, clock=lambda: later)
    assert (done.written_points, done.written_rows, done.failed_rows) == (4, 1, 0)
    assert world.scalar("SELECT count(*) FROM influx_outbox") == 0
    assert (
        drain(world.engine, up, owner=owner, policy=POLICY, clock=lambda: later).claimed_rows == 0
    )
    up.close()

    ms = T0_NS + 250_000_000
    got = rows(url, db, 'SELECT "seq" FROM "scan", "heartbeat", "equipment", "sos"')
    assert sorted((r["time"], r["seq"]) for r in got) == [
        (ms + 1, 1),
        (ms + 2, 2),
        (ms + 2, 2),
        (ms + 1_000_000 + 3, 3),
    ]
    counts = rows(url, db, 'SELECT count("seq") FROM "scan", "heartbeat", "equipment", "sos"')
    assert sorted(r["count"] for r in counts) == [1, 1, 1, 1]


def _fill(engine: Engine, n_rows: int, *, points_per_row: int = 2) -> None:
    with session_scope(engine) as session:
        for r in range(n_rows):
            text = "\n".join(
                f"fill,row={r} v={p}i {T0_NS + r * 1000 + p}" for p in range(points_per_row)
            )
            enqueue(session, lines=text, n_points=text.count("\n") + 1, now=SERVER_NOW)


def test_claims_are_leased_disjoint_and_expire(db_url: str) -> None:
    engine = make_engine(db_url)
    init_db(engine)
    _fill(engine, 5)
    with session_scope(engine) as s:
        first = claim(s, owner="a", now=SERVER_NOW, lease_s=60, max_rows=3)
    with session_scope(engine) as s:
        second = claim(s, owner="b", now=SERVER_NOW, lease_s=60, max_rows=3)
    with session_scope(engine) as s:
        third = claim(s, owner="c", now=SERVER_NOW, lease_s=60, max_rows=3)
    assert [len(first), len(second), len(third)] == [3, 2, 0]
    assert {r.id for r in first}.isdisjoint({r.id for r in second})
    # a's lease expires; d takes its rows over, and a can no longer delete them.
    expired = SERVER_NOW + timedelta(seconds=61)
    with session_scope(engine) as s:
        taken = claim(s, owner="d", now=expired, lease_s=60, max_rows=10)
    assert sorted(r.id for r in taken) == sorted(r.id for r in [*first, *second])
    with session_scope(engine) as s:
        assert complete(s, owner="a", ids=[r.id for r in first]) == 0
        assert complete(s, owner="d", ids=[r.id for r in first]) == 3
        assert pending_points(s) == 4
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgres_concurrent_claims_skip_locked_rows(db_url: str) -> None:
    """SKIP LOCKED is PostgreSQL's (SQLite has a single writer, BEGIN IMMEDIATE)."""
    engine = make_engine(db_url)
    init_db(engine)
    _fill(engine, 4)
    with Session(engine) as s1, s1.begin():
        mine = claim(s1, owner="a", now=SERVER_NOW, lease_s=60, max_rows=2)
        # s1 still holds its row locks (not committed): s2 must skip, not wait.
        with Session(engine) as s2, s2.begin():
            theirs = claim(s2, owner="b", now=SERVER_NOW, lease_s=60, max_rows=4)
    assert [r.id for r in mine] == [1, 2]
    assert [r.id for r in theirs] == [3, 4]
    engine.dispose()


def test_backoff_doubles_up_to_the_ceiling() -> None:
    assert [backoff_s(a, initial_s=1, max_s=10) for a in range(1, 7)] == [1, 2, 4, 8, 10, 10]


@pytest.mark.influxdb
def test_refused_row_is_buried_with_reason_and_others_written(
    db_url: str, influx: tuple[str, str]
) -> None:
    url, db = influx
    engine = make_engine(db_url)
    init_db(engine)
    _fill(engine, 1)
    with session_scope(engine) as s:
        enqueue(s, lines="fill,row=bad v=notanumber 1", n_points=1, now=SERVER_NOW)
    _fill(engine, 1)
    writer = V1Writer(url, database=db)
    result = drain(engine, writer, owner="a", policy=POLICY, clock=lambda: SERVER_NOW)
    writer.close()
    assert (result.written_rows, result.buried_rows, result.written_points) == (2, 1, 4)
    with engine.connect() as conn:
        dead = conn.execute(
            select(InfluxOutbox.attempts, InfluxOutbox.last_error, InfluxOutboxLines.lines)
            .join(InfluxOutboxLines, InfluxOutboxLines.outbox_id == InfluxOutbox.id)
            .where(InfluxOutbox.dead_at.is_not(None))
        ).all()
    assert [(d.lines, d.attempts) for d in dead] == [("fill,row=bad v=notanumber 1", 1)]
    assert "HTTP 400" in dead[0].last_error
    got = rows(url, db, 'SELECT "v" FROM "fill"')
    assert sorted((r["time"], r["v"]) for r in got) == [
        (T0_NS, 0),
        (T0_NS + 1, 1),
    ]
    engine.dispose()


@pytest.mark.influxdb
def test_two_workers_drain_concurrently_each_point_once(
    db_url: str, influx: tuple[str, str]
) -> None:
    """Two workers, each with its own engine (as two API processes would), one store."""
    url, db = influx
    engine = make_engine(db_url)
    init_db(engine)
    n_rows = 200
    with session_scope(engine) as session:
        for r in range(n_rows):
            text = "\n".join(
                f"multi,row={r % 7} v={r * 3 + p}i {T0_NS + r * 3 + p}" for p in range(3)
            )
            enqueue(session, lines=text, n_points=text.count("\n") + 1, now=SERVER_NOW)
    small = DrainPolicy(batch_points=30, lease_s=60, claim_rows=10)
    results: list[int] = []

    def run() -> None:
        own_engine = make_engine(db_url)
        writer = V1Writer(url, database=db)
        total = drain(own_engine, writer, owner=threading.current_thread().name, policy=small)
        results.append(total.written_points)
        writer.close()
        own_engine.dispose()

    threads = [threading.Thread(target=run, name=f"w{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(results) == n_rows * 3
    with engine.connect() as conn:
        assert conn.execute(select(InfluxOutbox.id)).all() == []
        assert conn.execute(select(InfluxOutboxLines.outbox_id)).all() == []
    got = rows(url, db, 'SELECT "v" FROM "multi"')
    assert sorted(r["v"] for r in got) == list(range(n_rows * 3))
    engine.dispose()


@pytest.mark.influxdb
def test_app_worker_drains_in_the_background(
    make_world: Callable[..., World], influx: tuple[str, str]
) -> None:
    url, db = influx
    world = make_world(influx_url=url, influx_db=db, sink_poll_interval_s=0.05)
    world.results(*_three_events())
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while world.scalar("SELECT count(*) FROM influx_outbox") and datetime.now(UTC) < deadline:
        threading.Event().wait(0.05)
    assert world.scalar("SELECT count(*) FROM influx_outbox") == 0
    got = rows(url, db, 'SELECT "seq" FROM "scan", "heartbeat", "equipment", "sos"')
    assert sorted(r["seq"] for r in got) == [1, 2, 2, 3]


def test_worker_stops_cleanly(db_url: str) -> None:
    engine = make_engine(db_url)
    init_db(engine)
    worker = SinkWorker(
        engine, V1Writer(closed_port_url(), database="x"), policy=POLICY, poll_interval_s=0.05
    )
    worker.start()
    worker.stop(timeout_s=10)
    assert worker.points_written == 0
    engine.dispose()


_DRAIN_SCRIPT = """
import sys, time
from pathlib import Path
from cloud_api.db import make_engine
from cloud_api.sink.worker import DrainPolicy, drain
from cloud_api.sink.writers import V1Writer
db_url, influx_url, database, owner, go = sys.argv[1:]
engine = make_engine(db_url)
writer = V1Writer(influx_url, database=database)
while not Path(go).exists():
    time.sleep(0.01)
result = drain(engine, writer, owner=owner, policy=DrainPolicy(batch_points=30, claim_rows=5))
print(result.written_points)
"""


@pytest.mark.influxdb
def test_two_processes_drain_one_store_each_point_once(
    db_url: str, influx: tuple[str, str], tmp_path: Path
) -> None:
    """Two OS processes, as two API processes behind a load balancer would be."""
    url, db = influx
    engine = make_engine(db_url)
    init_db(engine)
    n_rows = 300
    with session_scope(engine) as session:
        for r in range(n_rows):
            text = "\n".join(
                f"proc,row={r % 5} v={r * 3 + p}i {T0_NS + r * 3 + p}" for p in range(3)
            )
            enqueue(session, lines=text, n_points=text.count("\n") + 1, now=SERVER_NOW)
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _DRAIN_SCRIPT, db_url, url, db, f"proc-{i}", str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    go.touch()
    outputs = [p.communicate(timeout=60)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    assert sum(int(out) for out in outputs) == n_rows * 3
    with engine.connect() as conn:
        assert conn.execute(select(InfluxOutbox.id)).all() == []
        assert conn.execute(select(InfluxOutboxLines.outbox_id)).all() == []
    got = rows(url, db, 'SELECT "v" FROM "proc"')
    assert sorted(r["v"] for r in got) == list(range(n_rows * 3))
    engine.dispose()


@pytest.mark.victoriametrics
def test_app_worker_writes_through_v2_to_victoria_metrics(
    make_world: Callable[..., World], vm_url: str
) -> None:
    world = make_world(influx_url=vm_url, influx_api="v2", sink_poll_interval_s=0.05)
    world.results(*_three_events())
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while world.scalar("SELECT count(*) FROM influx_outbox") and datetime.now(UTC) < deadline:
        threading.Event().wait(0.05)
    assert world.scalar("SELECT count(*) FROM influx_outbox") == 0
    httpx.get(f"{vm_url}/internal/force_flush", timeout=10).raise_for_status()
    response = httpx.post(
        f"{vm_url}/api/v1/export",
        data={"match[]": f'{{__name__=~"(scan|sos)_seq",device="{DEVICE:08x}",run=""}}'},
        timeout=10,
    )
    response.raise_for_status()
    samples = {
        (series["metric"]["__name__"], ts, value)
        for series in map(json.loads, response.text.splitlines())
        for ts, value in zip(series["timestamps"], series["values"], strict=True)
    }
    ms = T0 * 1000 + 250
    assert samples == {("scan_seq", ms, 1), ("sos_seq", ms + 1, 3)}


@pytest.mark.parametrize(("max_points", "expected_rows"), [(1, 1), (3, 1), (4, 2), (None, 5)])
def test_claim_stops_at_the_point_budget(
    db_url: str, max_points: int | None, expected_rows: int
) -> None:
    engine = make_engine(db_url)
    init_db(engine)
    _fill(engine, 5)  # 2 points a row
    with session_scope(engine) as s:
        claimed = claim(
            s, owner="a", now=SERVER_NOW, lease_s=60, max_rows=10, max_points=max_points
        )
    assert [r.id for r in claimed] == list(range(1, expected_rows + 1))
    engine.dispose()
