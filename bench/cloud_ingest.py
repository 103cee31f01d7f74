"""Cloud ingest with full verification vs a bare ``executemany`` of the same rows.

Issue 5 target: the full path (parse the JSON batch, HMAC of every frame, NTAG 424
SUN decryption and CMAC, beacon advert MAC and clock window, idempotency by unique
constraints, hash chain, sequence state, InfluxDB outbox row, one transaction per
batch) at >= 0.25x a bare DBAPI ``executemany`` of the very rows it stored, into
the same table of an identical fresh database, with the same batch size and one
commit per batch. A second baseline copies every row the ingest inserted, in every
table (events, chain entries, outbox, ingest log), and is printed beside it.

The measured path is :func:`cloud_api.ingest.ingest_batch` called in-process (no
HTTP) after :func:`~cloud_api.ingest.parse_batch`, as the route calls them, by 1
and by 2 worker processes (``--processes``; two is the machine's two cores, as a
deployment behind a load balancer would use them) sharing the batches. SQLite
serialises the two writers (``BEGIN IMMEDIATE`` for the whole transaction); only
the parsing runs outside the write lock. Each setting runs ``--rounds`` times and
the best round of each path is compared; CPU seconds are printed too (on SQLite
all the work of both paths is in these processes, so their ratio does not depend
on what else runs on the machine).

    .venv/bin/python bench/cloud_ingest.py                 # 20k events, SQLite and PostgreSQL
    .venv/bin/python bench/cloud_ingest.py --count 5000 --only sqlite --processes 1
    .venv/bin/python bench/cloud_ingest.py --pg-url postgresql+psycopg://u:p@host:5432/postgres

PostgreSQL: ``--pg-url`` names a server and a role that may CREATE DATABASE; the
benchmark creates its scratch databases there and drops them at the end.
"""

from __future__ import annotations

import argparse
import base64
import inspect
import json
import multiprocessing
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty
from typing import Any

import psycopg
from pydantic import SecretStr
from sqlalchemy import JSON, Engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cloud_api.crypto_store import SecretBox
from cloud_api.db import SchemaError, init_db, make_engine, session_scope
from cloud_api.ingest import ingest_batch, parse_batch
from cloud_api.models import Base, Event, Gateway
from cloud_api.provisioning import (
    create_checkpoint,
    create_gateway,
    create_post,
    create_site,
    register_beacon,
    register_ntag424,
    register_wearable,
)
from cloud_api.settings import Settings
from cloud_api.verify import VerifyPolicy
from patrol_protocol.adverts import encode_beacon_payload
from patrol_protocol.frames import (
    TAG_NTAG424_SUN,
    BleVisit,
    Body,
    Heartbeat,
    NfcScan,
    encode_body,
    encode_frame,
    kind_of,
)
from patrol_sim.ntag424 import SimNtag424

DEFAULT_COUNT = 20_000
DEFAULT_BATCH = 500
"""Items per batch: what an edge gateway sends after a backlog (well under the batch limit)."""
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WEARABLES = 50
TAGS = 40
BEACONS = 20
COMPANY_ID = 0xFFFF
BEACON_STEP_S = 10
"""Beacon time step (s) used to build the beacon adverts inside BLE visits."""
MIX = {"heartbeat": 0.60, "nfc_scan": 0.25, "ble_visit": 0.15}
"""Share of each event kind: heartbeats dominate a real day, then tag scans, then visits."""
SERVER_KEY = bytes(range(32))
STARTUP_TIMEOUT_S = 60.0
"""An ingest process that has not connected by then has failed."""
MAX_BATCH_ATTEMPTS = 5
"""A batch the database aborted (deadlock) is retried like a gateway would, this often."""
EVENT_COLUMNS = [c.name for c in Event.__table__.columns if c.name != "id"]


def _device_key(index: int) -> bytes:
    return bytes((index * 7 + i) % 256 for i in range(32))


def _beacon_key(index: int) -> bytes:
    return bytes((index * 11 + i) % 256 for i in range(16))


def _beacon_payload(beacon_id: int, step: int, key: bytes) -> bytes:
    kwargs: dict[str, Any] = {
        "key_id": 1,
        "beacon_id": beacon_id,
        "step": step,
        "tx_power_dbm": -59,
        "company_id": COMPANY_ID,
        "key": key,
    }
    if "battery_pct" in inspect.signature(encode_beacon_payload).parameters:
        kwargs["battery_pct"] = 90
    return encode_beacon_payload(**kwargs)


@dataclass(frozen=True)
class Workload:
    bodies: list[bytes]
    kinds: Counter[str]
    tags: list[SimNtag424]


def make_workload(count: int, batch_size: int, seed: int = 5) -> Workload:
    """Signed frames in gateway batches (JSON bytes), built before any timing."""
    rng = random.Random(seed)
    tags = [
        SimNtag424(
            uid=bytes([0x04]) + (0x100000 + i).to_bytes(6, "big"),
            meta_read_key=bytes((i + j) % 256 for j in range(16)),
            file_read_key=bytes((i * 3 + j) % 256 for j in range(16)),
        )
        for i in range(TAGS)
    ]
    seqs = [0] * WEARABLES
    start_s = int(time.time()) - 600
    kinds: Counter[str] = Counter()
    items: list[dict[str, Any]] = []
    names, weights = list(MIX), list(MIX.values())
    for n in range(count):
        w = rng.randrange(WEARABLES)
        seqs[w] += 1
        t_ms = start_s * 1000 + n * 20
        time_s, time_ms = divmod(t_ms, 1000)
        kind = rng.choices(names, weights)[0]
        kinds[kind] += 1
        body: Body
        if kind == "heartbeat":
            body = Heartbeat(battery_pct=80, battery_mv=3900, status=0, queue_depth=0)
        elif kind == "nfc_scan":
            tag = tags[rng.randrange(TAGS)]
            picc_enc, mac = tag.sun(padding=bytes(5))
            body = NfcScan(tag_type=TAG_NTAG424_SUN, uid=tag.uid, picc_enc=picc_enc, sdmmac=mac)
        else:
            b = rng.randrange(BEACONS)
            adv = _beacon_payload(0x5000 + b, time_s // BEACON_STEP_S, _beacon_key(b))
            body = BleVisit(rssi_dbm=-60, dwell_s=30, company_id=COMPANY_ID, adv=adv)
        device_id = 0xA0000 + w
        raw = encode_frame(
            kind=kind_of(body),
            key_id=1,
            flags=0,
            device_id=device_id,
            seq=seqs[w],
            time_s=time_s,
            time_ms=time_ms,
            body=encode_body(body),
            key=_device_key(w),
        )
        received = datetime.fromtimestamp(time_s + 1, UTC)
        items.append(
            {
                "type": "device_frame",
                "gw_seq": n + 1,
                "received_at": received.isoformat(),
                "topic": f"patrol/v1/dev/{device_id:08x}/up",
                "frame_b64": base64.b64encode(raw).decode(),
            }
        )
    bodies = []
    for i in range(0, len(items), batch_size):
        batch = {
            "v": 1,
            "gateway_id": "gw-bench",
            "batch_id": str(uuid.uuid4()),
            "sent_at": datetime.now(UTC).isoformat(),
            "clock_synced": True,
            "items": items[i : i + batch_size],
        }
        bodies.append(json.dumps(batch).encode())
    return Workload(bodies, kinds, tags)


def provision(engine: Engine, tags: list[SimNtag424]) -> None:
    box = SecretBox(SERVER_KEY)
    with session_scope(engine) as s:
        site = create_site(s, name="Bench site")
        post = create_post(s, site=site, name="Bench post")
        create_gateway(s, gateway_id="gw-bench", site=site)
        for w in range(WEARABLES):
            register_wearable(s, box=box, device_id=0xA0000 + w, key=_device_key(w), site=site)
        for i, tag in enumerate(tags):
            cp = create_checkpoint(s, post=post, name=f"tag {i}")
            register_ntag424(
                s,
                box=box,
                uid=tag.uid,
                meta_read_key=tag.meta_read_key,
                file_read_key=tag.file_read_key,
                checkpoint=cp,
            )
        for b in range(BEACONS):
            cp = create_checkpoint(s, post=post, name=f"beacon {b}")
            register_beacon(s, box=box, beacon_id=0x5000 + b, key=_beacon_key(b), checkpoint=cp)


def _ingest_worker(url: str, bodies: list[bytes], out: Any, ready: Any, go: Any) -> None:
    """One API-like process: parse, verify and store its share of the batches."""
    engine = make_engine(url)
    settings = Settings(
        database_url=url, server_key=SecretStr(base64.b64encode(SERVER_KEY).decode())
    )
    box = SecretBox(settings.server_key_bytes())
    policy = VerifyPolicy(
        clock_skew_tolerance_s=settings.clock_skew_tolerance_s,
        max_future_skew_s=settings.max_future_skew_s,
        sun_counter_jump_flag=settings.sun_counter_jump_flag,
    )
    statuses: Counter[str] = Counter()
    with Session(engine) as probe:
        gateway_pk = probe.execute(select(Gateway.id)).scalar_one()
    # A running API process has imported everything and holds a connection already.
    ready.put(os.getpid())
    go.wait()
    cpu_started = time.process_time()
    for body in bodies:
        # As the route does: the body is parsed (and its frames decoded) before the
        # transaction, then verified and stored in one transaction with the outbox row.
        batch = parse_batch(body)
        for attempt in range(1, MAX_BATCH_ATTEMPTS + 1):
            try:
                with Session(engine, expire_on_commit=False) as session, session.begin():
                    gateway = session.get_one(Gateway, gateway_pk)
                    response = ingest_batch(
                        session,
                        gateway=gateway,
                        batch=batch,
                        box=box,
                        policy=policy,
                        outbox=True,
                    )
                break
            except DBAPIError as exc:  # e.g. a deadlock: a gateway retries the whole batch
                statuses[f"batch_retry:{type(exc.orig).__name__}"] += 1
                if attempt == MAX_BATCH_ATTEMPTS:
                    raise
        statuses.update(
            r.status if r.reason is None else f"{r.status}:{r.reason}" for r in response.results
        )
    cpu = time.process_time() - cpu_started
    engine.dispose()
    out.put((dict(statuses), cpu))


def measure_ingest(
    url: str, bodies: list[bytes], processes: int
) -> tuple[float, Counter[str], float]:
    """Seconds for ``processes`` workers to ingest all batches (interleaved shares), the
    item results, and the CPU seconds the workers used (summed)."""
    ctx = multiprocessing.get_context("spawn")
    queue, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [bodies[i::processes] for i in range(processes)]
    procs = [
        ctx.Process(target=_ingest_worker, args=(url, share, queue, ready, go)) for share in shares
    ]
    for proc in procs:
        proc.start()
    for _ in procs:  # process start-up (imports, first connection) is not ingest work
        ready.get(timeout=STARTUP_TIMEOUT_S)
    started = time.perf_counter()
    go.set()
    totals: Counter[str] = Counter()
    cpu = 0.0
    for _ in procs:
        while True:
            try:
                statuses, worker_cpu = queue.get(timeout=1.0)
                totals.update(statuses)
                cpu += worker_cpu
                break
            except Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    for proc in procs:
                        proc.kill()
                    raise SystemExit("an ingest process failed (traceback above)") from None
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    return elapsed, totals, cpu


def stored_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """Exactly the events rows the ingest stored, as DBAPI parameter tuples."""
    return _table_rows(engine, "events", EVENT_COLUMNS)


def _table_rows(engine: Engine, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        order = ", ".join(c.name for c in Base.metadata.tables[table].primary_key)
        cursor.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
        rows = cursor.fetchall()
    finally:
        raw.close()
    return [tuple(json.dumps(v) if isinstance(v, dict | list) else v for v in row) for row in rows]


ALL_ROWS_TABLES = ("events", "chain_entries", "influx_outbox", "influx_outbox_lines", "ingest_log")
"""Every table the ingest inserts rows into (besides updates of chain heads, sequence
state, beacon clocks and tag counters): the second, wider baseline copies all their rows."""


@dataclass(frozen=True)
class StoredRows:
    """Per table, its columns and every row the ingest stored, ids included."""

    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]]

    @property
    def total(self) -> int:
        return sum(len(rows) for _, rows in self.tables.values())


def all_stored_rows(engine: Engine) -> StoredRows:
    tables = {}
    for name in ALL_ROWS_TABLES:
        columns = [c.name for c in Base.metadata.tables[name].columns]
        tables[name] = (columns, _table_rows(engine, name, columns))
    return StoredRows(tables)


def _insert_sql(engine: Engine, table: str, columns: list[str]) -> str:
    sqlite = engine.dialect.name == "sqlite"
    json_columns = {c.name for c in Base.metadata.tables[table].columns if isinstance(c.type, JSON)}
    markers = ["?" if sqlite else ("%s::json" if c in json_columns else "%s") for c in columns]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(markers)})"


def measure_executemany(
    engine: Engine, rows: list[tuple[Any, ...]], batch_size: int
) -> tuple[float, float]:
    """Bare DBAPI executemany into the events table, one commit per batch: wall and CPU s."""
    sqlite = engine.dialect.name == "sqlite"
    sql = _insert_sql(engine, "events", EVENT_COLUMNS)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(0, len(rows), batch_size):
            if sqlite:  # the engine's connections are in autocommit mode (db.make_engine)
                cursor.execute("BEGIN")
            cursor.executemany(sql, rows[i : i + batch_size])
            raw.commit()
        return time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        raw.close()


def measure_all_rows(engine: Engine, stored: StoredRows, batches: int) -> float:
    """Bare DBAPI executemany of every row of every table the ingest wrote, the rows of
    each table cut into ``batches`` equal shares, one executemany per table and one
    commit per batch (what the ingest's transactions wrote, without any of its work)."""
    sqlite = engine.dialect.name == "sqlite"
    plans = [
        (_insert_sql(engine, name, columns), rows, -(-len(rows) // batches))
        for name, (columns, rows) in stored.tables.items()
    ]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        started = time.perf_counter()
        for b in range(batches):
            if sqlite:
                cursor.execute("BEGIN")
            for sql, rows, per_batch in plans:
                share = rows[b * per_batch : (b + 1) * per_batch]
                if share:
                    cursor.executemany(sql, share)
            raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()


def _schema(engine: Engine) -> None:
    """The Alembic schema; tables of work in progress that has no revision yet (another
    area's, none that ingest touches) are created from the models, and said so."""
    try:
        init_db(engine)
    except SchemaError as exc:
        print(f"   note: {str(exc).split(';')[0]}; created from the models")
        Base.metadata.create_all(engine)


def _settings_line(engine: Engine) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sync = conn.execute(text("PRAGMA synchronous")).scalar()
            journal = conn.execute(text("PRAGMA journal_mode")).scalar()
            return f"SQLite {journal}, synchronous={sync} (0 off, 1 normal, 2 full)"
        version = conn.execute(text("SHOW server_version")).scalar()
        commit = conn.execute(text("SHOW synchronous_commit")).scalar()
        return f"PostgreSQL {version}, synchronous_commit={commit}"


@dataclass
class Best:
    """Best (shortest) seconds of each path over the rounds."""

    ingest: float = float("inf")
    events: float = float("inf")
    all_rows: float = float("inf")
    ingest_cpu: float = float("inf")
    events_cpu: float = float("inf")


def run_store(
    name: str,
    make_url_for: Callable[[str], str],
    workload: Workload,
    batch_size: int,
    processes: int,
    rounds: int,
) -> float:
    """Rounds of (ingest, events baseline, all-rows baseline), each into a fresh database;
    the best of each path is compared (the machine is shared: best-of-rounds is the
    least disturbed run of each)."""
    best = Best()
    rows: list[tuple[Any, ...]] = []
    stored = StoredRows({})
    settings = ""
    for round_no in range(1, rounds + 1):
        labels = [f"{label}{processes}r{round_no}" for label in ("ingest", "events", "all")]
        urls = [make_url_for(label) for label in labels]
        engines = [make_engine(url) for url in urls]
        try:
            for engine in engines:  # identical ids in all, so the rows' foreign keys hold
                _schema(engine)
                provision(engine, workload.tags)
            seconds, statuses, cpu = measure_ingest(urls[0], workload.bodies, processes)
            rows = stored_rows(engines[0])
            stored = all_stored_rows(engines[0])
            settings = _settings_line(engines[0])
            base_seconds, base_cpu = measure_executemany(engines[1], rows, batch_size)
            all_seconds = measure_all_rows(engines[2], stored, len(workload.bodies))
        finally:
            for engine in engines:
                engine.dispose()
        print(
            f"   round {round_no}: ingest {seconds:7.3f} s, events executemany "
            f"{base_seconds:6.3f} s, all-rows executemany {all_seconds:6.3f} s; "
            f"results {dict(sorted(statuses.items()))}"
        )
        best.ingest = min(best.ingest, seconds)
        best.events = min(best.events, base_seconds)
        best.all_rows = min(best.all_rows, all_seconds)
        best.ingest_cpu = min(best.ingest_cpu, cpu)
        best.events_cpu = min(best.events_cpu, base_cpu)
    n = len(rows)
    ingest_rate, base_rate = n / best.ingest, n / best.events
    all_rate = stored.total / best.all_rows
    print(f"== {name}, {processes} ingest process(es): {settings}; best of {rounds} round(s)")
    print(
        f"   bare executemany, events rows only   : {n:>7} rows in {best.events:7.3f} s "
        f"= {base_rate:>9,.0f} rows/s"
    )
    detail = ", ".join(f"{t} {len(r)}" for t, (_, r) in stored.tables.items())
    print(
        f"   bare executemany, every row it stored : {stored.total:>7} rows in "
        f"{best.all_rows:7.3f} s = {all_rate:>9,.0f} rows/s ({detail})"
    )
    print(
        f"   full ingest                           : {n:>7} events in {best.ingest:7.3f} s "
        f"= {ingest_rate:>9,.0f} events/s"
    )
    ratio = best.events / best.ingest
    print(
        f"   ratio to the events-only executemany: {ratio:.3f}x (target >= 0.25x); "
        f"to the every-row executemany: {best.all_rows / best.ingest:.3f}x"
    )
    where = "all of SQLite's work" if name == "SQLite" else "client side only"
    print(
        f"   CPU seconds ({where}): ingest {best.ingest_cpu:.3f} (workers summed), events "
        f"executemany {best.events_cpu:.3f}; CPU ratio {best.events_cpu / best.ingest_cpu:.3f}x"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="events (frames)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="items per batch")
    parser.add_argument(
        "--processes",
        default="1,2",
        help="ingest process counts to measure, comma-separated (default 1,2)",
    )
    parser.add_argument("--pg-url", default=os.environ.get("PATROL_BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--only", choices=["sqlite", "postgresql"], default=None)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per setting (best of)")
    args = parser.parse_args()
    process_counts = [int(p) for p in args.processes.split(",")]

    started = time.perf_counter()
    workload = make_workload(args.count, args.batch)
    print(
        f"cloud ingest benchmark: {args.count} events in {len(workload.bodies)} batches of "
        f"{args.batch}; mix {dict(workload.kinds)}; {WEARABLES} wearables, {TAGS} NTAG 424 "
        f"tags (real SUN), {BEACONS} beacons; built in {time.perf_counter() - started:.1f} s"
    )
    print(
        f"measured: cloud_api.ingest.ingest_batch in {process_counts} process(es), parse + "
        "verify (HMAC, SUN, beacon MAC and clock) + store (idempotency, hash chain, sequence "
        "state, InfluxDB outbox row), one transaction per batch. Baselines, each into a fresh "
        "identical database: DBAPI executemany of (1) the very events rows the ingest stored, "
        "same batch size, one commit per batch; (2) every row the ingest inserted, in every "
        "table, one executemany per table and one commit per batch"
    )
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
            for processes in process_counts:
                run_store(
                    "SQLite",
                    lambda label: f"sqlite:///{Path(tmp) / label}.db",
                    workload,
                    args.batch,
                    processes,
                    args.rounds,
                )
    if args.only in (None, "postgresql"):
        admin = make_url(args.pg_url)
        conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
        prefix = f"patrol_bench_{uuid.uuid4().hex[:8]}"
        names = {
            f"{label}{n}r{r}": f"{prefix}_{label}{n}r{r}"
            for label in ("ingest", "events", "all")
            for n in process_counts
            for r in range(1, args.rounds + 1)
        }
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for db in names.values():
                conn.execute(f'CREATE DATABASE "{db}"')
        try:
            for processes in process_counts:
                run_store(
                    "PostgreSQL",
                    lambda label: admin.set(database=names[label]).render_as_string(
                        hide_password=False
                    ),
                    workload,
                    args.batch,
                    processes,
                    args.rounds,
                )
        finally:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                for db in names.values():
                    conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
