"""Scoring a month of a synthetic company vs the time the store takes just to read its rows.

Issue 6 target: scoring every shift of a 500-post company's month (about two
million checkpoint scans plus the heartbeats that go with them) within 3x of
the time the same store takes just to read those rows, and 4x the rows costing
at most 4.8x the time.

The company: ``--posts`` posts in sites of ten (time zones Europe/Berlin,
America/New_York and Asia/Tokyo in turn, so the month crosses the October DST
changes), each with six checkpoints on an hourly 24/7 plan (20 min rounds,
5 min grace) and a required radio; three eight-hour shifts a day, each guard
with a wearable that taps every checkpoint of every round (2 % missed, 3 % late,
a few out-of-zone spells and flat radios) and sends a heartbeat every
``--heartbeat-s`` seconds. The rows are written straight into ``events`` in
the form ingest stores them (the signatures are not recomputed: this measures
scoring, not verification), once, into a SQLite file under ``bench/.data/``
that later runs reuse.

Measured, side by side in one run, on the same database:

- baseline: one ``SELECT`` of exactly the evidence rows (visits, heartbeats,
  SOS of the month plus the shifts' margins), fetched through SQLAlchemy Core
  (the same type processing the scorer gets: UTC datetimes, JSON bodies), and
  the same read through the bare ``sqlite3`` cursor for reference;
- product: :func:`cloud_api.compliance.store.score_window` scoring every shift
  (reading the rows, building the engine's values, scoring, explaining); with
  ``--persist`` also storing every score (in a transaction rolled back at the
  end, so the cached database stays as generated).

Then the same at a quarter of the posts (``--no-scale`` skips it): the ratio
of the two product times against the 4.8x allowance for 4x the rows.

    .venv/bin/python bench/scoring.py                      # 500 posts x 30 days
    .venv/bin/python bench/scoring.py --posts 100 --days 7 # quicker
    .venv/bin/python bench/scoring.py --quick              # 40 posts x 7 days
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cloud_api.compliance import store
from cloud_api.db import init_db, make_engine, session_scope
from cloud_api.models import (
    Checkpoint,
    CompliancePlan,
    ComplianceTargets,
    Device,
    Event,
    Guard,
    Post,
    Site,
)
from cloud_api.provisioning import create_gateway
from patrol_protocol.frames import HEARTBEAT_IN_ZONE, Kind

DATA_DIR = Path(__file__).resolve().parent / ".data"
MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
POSTS_PER_SITE = 10
CHECKPOINTS = 6
SHIFT_HOURS = 8
ROUND_MINUTES = 60
TAP_EVERY_S = 120  # a guard walks two minutes between checkpoints
P_MISSED, P_LATE = 0.02, 0.03
P_OUT_OF_ZONE_SPELL, P_FLAT_RADIO = 0.05, 0.03  # per shift
INSERT_CHUNK = 50_000
GENERATOR_VERSION = 2  # bump when the generated data changes, so caches are rebuilt


@dataclass(frozen=True)
class Dataset:
    path: Path
    posts: int
    days: int
    heartbeat_s: int
    scans: int
    heartbeats: int
    shifts: int
    generate_s: float  # 0.0 when reused from the cache


def _ts(t: datetime) -> str:
    """How SQLAlchemy stores a UTC datetime on SQLite (naive text)."""
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def generate(posts: int, days: int, heartbeat_s: int, seed: int) -> Dataset:
    name = f"scoring-v{GENERATOR_VERSION}-p{posts}-d{days}-hb{heartbeat_s}-s{seed}.db"
    path = DATA_DIR / name
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        return Dataset(
            path, posts, days, heartbeat_s, info["scans"], info["heartbeats"], info["shifts"], 0.0
        )
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_suffix(".db-wal"), path.with_suffix(".db-shm")):
        stale.unlink(missing_ok=True)
    began = time.perf_counter()
    rng = random.Random(seed)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    init_db(engine)
    plan: list[
        tuple[int, int, int, list[int], int, list[int]]
    ] = []  # site, post, gw, cps, radio, guards
    with session_scope(engine) as s:
        for p in range(posts):
            if p % POSTS_PER_SITE == 0:
                site = Site(
                    name=f"Site {p // POSTS_PER_SITE:03d}",
                    timezone=ZONES[(p // POSTS_PER_SITE) % len(ZONES)],
                )
                s.add(site)
                s.flush()
                gateway, _key = create_gateway(s, gateway_id=f"gw-{site.id:03d}", site=site)
            post = Post(site_id=site.id, name=f"Post {p:03d}")
            s.add(post)
            s.flush()
            cps = []
            for c in range(CHECKPOINTS):
                checkpoint = Checkpoint(post_id=post.id, name=f"CP {c}")
                s.add(checkpoint)
                s.flush()
                cps.append(checkpoint.id)
            radio = 0xE0000000 + p
            s.add(
                ComplianceTargets(
                    post_id=post.id,
                    equipment=[{"name": "radio", "tag_ids": [radio], "min_battery_pct": 20}],
                )
            )
            s.add(
                CompliancePlan(
                    post_id=post.id,
                    name="hourly",
                    checkpoints=cps,
                    ordered=True,
                    schedule_kind="interval",
                    interval_s=ROUND_MINUTES * 60,
                    round_duration_s=20 * 60,
                    grace_s=5 * 60,
                    windows=[{"weekdays": list(range(7)), "start": "00:00", "end": "00:00"}],
                    default_walk_s=60,
                )
            )
            guards = []
            for slot in range(3):
                s.add(Device(kind="wearable", device_id=0xA0000000 + 4 * p + slot, site_id=site.id))
                guard = Guard(site_id=site.id, name=f"Guard {p:03d}-{slot}")
                s.add(guard)
                s.flush()
                guards.append(guard.id)
            plan.append((site.id, post.id, gateway.id, cps, radio, guards))
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    device_pk = dict(con.execute("SELECT device_id, id FROM devices"))
    cols = [c.name for c in Event.__table__.columns if c.name != "id"]
    insert = f"INSERT INTO events ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    shift_rows: list[tuple[Any, ...]] = []
    pending: list[tuple[Any, ...]] = []
    scans = heartbeats = 0
    seqs: dict[int, int] = {}
    gw_seq = 0
    nfc, hb = int(Kind.NFC_SCAN), int(Kind.HEARTBEAT)
    now_text = _ts(datetime.now(UTC))
    raw = bytes(60)

    def event(device: int, kind: int, at: datetime, gw: int, cp: int | None, body: str) -> None:
        nonlocal gw_seq
        seqs[device] = seqs.get(device, 0) + 1
        gw_seq += 1
        row = {
            "device_id": device,
            "seq": seqs[device],
            "device_pk": device_pk[device],
            "kind": kind,
            "key_id": 1,
            "frame_flags": 0,
            "device_time": _ts(at),
            "gateway_pk": gw,
            "gw_seq": gw_seq,
            "received_at": _ts(at + timedelta(seconds=2)),
            "gateway_clock_synced": 1,
            "ingested_at": now_text,
            "raw": raw,
            "assurance": "high" if kind == nfc else "medium",
            "flags": "[]",
            "body": body,
            "checkpoint_id": cp,
            "nfc_tag_id": None,
            "sun_read_counter": None,
            "beacon_id": None,
            "beacon_step": None,
        }
        pending.append(tuple(row[c] for c in cols))
        if len(pending) >= INSERT_CHUNK:
            con.executemany(insert, pending)
            pending.clear()

    scan_body = json.dumps({"tag_type": 2, "uid": "04a1b2c3d4e5f6"})
    # Time order across the company, as ingest would interleave the wearables.
    for day in range(days):
        for slot in range(3):
            start = MONTH_START + timedelta(days=day, hours=SHIFT_HOURS * slot)
            end = start + timedelta(hours=SHIFT_HOURS)
            for p, (site_id, post_id, gw, cps, radio, guards) in enumerate(plan):
                device = 0xA0000000 + 4 * p + slot
                shift_rows.append(
                    (site_id, post_id, guards[slot], device, _ts(start), _ts(end), now_text)
                )
                out_at = (
                    start + timedelta(seconds=rng.randrange(SHIFT_HOURS * 3600))
                    if rng.random() < P_OUT_OF_ZONE_SPELL
                    else None
                )
                flat_at = (
                    start + timedelta(seconds=rng.randrange(SHIFT_HOURS * 3600))
                    if rng.random() < P_FLAT_RADIO
                    else None
                )
                t = start
                hb_step = timedelta(seconds=heartbeat_s)
                while t < end:
                    out = out_at is not None and out_at <= t < out_at + timedelta(minutes=25)
                    flat = flat_at is not None and flat_at <= t < flat_at + timedelta(hours=2)
                    body = json.dumps(
                        {
                            "battery_pct": 70,
                            "battery_mv": 3900,
                            "status": 0 if out else HEARTBEAT_IN_ZONE,
                            "queue_depth": 0,
                            "items": [
                                {
                                    "tag_id": radio,
                                    "rssi_dbm": -50,
                                    "battery_pct": 10 if flat else 80,
                                }
                            ],
                        }
                    )
                    event(device, hb, t, gw, None, body)
                    heartbeats += 1
                    t += hb_step
                for r in range(SHIFT_HOURS * 60 // ROUND_MINUTES):
                    round_start = start + timedelta(minutes=ROUND_MINUTES * r)
                    for i, cp in enumerate(cps):
                        roll = rng.random()
                        if roll < P_MISSED:
                            continue
                        at = round_start + timedelta(seconds=60 + TAP_EVERY_S * i)
                        if roll < P_MISSED + P_LATE:
                            at = round_start + timedelta(minutes=20, seconds=rng.randrange(290))
                        event(device, nfc, at, gw, cp, scan_body)
                        scans += 1
    if pending:
        con.executemany(insert, pending)
    con.executemany(
        "INSERT INTO compliance_shifts (site_id, post_id, guard_id, device_id, start_at, end_at,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        shift_rows,
    )
    con.commit()
    con.execute("ANALYZE")
    con.close()
    engine.dispose()
    info = {"scans": scans, "heartbeats": heartbeats, "shifts": len(shift_rows)}
    meta.write_text(json.dumps(info))
    return Dataset(
        path,
        posts,
        days,
        heartbeat_s,
        scans,
        heartbeats,
        len(shift_rows),
        time.perf_counter() - began,
    )


def _window(ds: Dataset) -> tuple[datetime, datetime]:
    return MONTH_START, MONTH_START + timedelta(days=ds.days)


def read_rows(engine: Engine, ds: Dataset) -> tuple[int, float]:
    """Baseline: fetch exactly the evidence rows the scorer reads (SQLAlchemy Core, typed)."""
    start, end = _window(ds)
    margin = timedelta(seconds=store.EVIDENCE_MARGIN_S)
    began = time.perf_counter()
    n = 0
    with engine.connect() as conn:
        result = conn.execute(
            select(Event.device_id, *store.EVIDENCE_COLUMNS)
            .where(
                Event.kind.in_(store.EVIDENCE_KINDS),
                Event.device_time >= start - margin,
                Event.device_time < end + margin,
            )
            .execution_options(yield_per=5000)
        )
        for _row in result:
            n += 1
    return n, time.perf_counter() - began


def read_rows_raw(ds: Dataset) -> tuple[int, float]:
    """The same rows through the bare sqlite3 cursor (no type processing), for reference."""
    start, end = _window(ds)
    margin = timedelta(seconds=store.EVIDENCE_MARGIN_S)
    kinds = ", ".join(str(k) for k in store.EVIDENCE_KINDS)
    con = sqlite3.connect(ds.path)
    began = time.perf_counter()
    n = 0
    cur = con.execute(
        "SELECT device_id, id, kind, device_time, checkpoint_id, assurance, flags, body "
        f"FROM events WHERE kind IN ({kinds}) AND device_time >= ? AND device_time < ?",
        (_ts(start - margin), _ts(end + margin)),
    )
    while rows := cur.fetchmany(5000):
        n += len(rows)
    con.close()
    return n, time.perf_counter() - began


def score(engine: Engine, ds: Dataset, *, persist: bool) -> tuple[store.WindowResult, float]:
    start, end = _window(ds)
    now = end + timedelta(days=1)
    began = time.perf_counter()
    with Session(engine) as s:
        s.begin()
        result = store.score_window(
            s, start=start, end=end, now=now, hooks=store.Hooks(), persist=persist
        )
        if persist:
            s.flush()
        s.rollback()  # keep the cached database as generated
    return result, time.perf_counter() - began


@dataclass(frozen=True)
class Run:
    ds: Dataset
    rows: int
    read_s: float
    raw_rows: int
    raw_s: float
    result: store.WindowResult
    score_s: float
    persist_s: float | None


def run(posts: int, days: int, heartbeat_s: int, seed: int, persist: bool) -> Run:
    """Measure one dataset, printing each figure as soon as it is known."""
    ds = generate(posts, days, heartbeat_s, seed)
    print(
        f"dataset: {ds.posts} posts x {ds.days} days, {ds.shifts:,} shifts, {ds.scans:,} scans, "
        f"{ds.heartbeats:,} heartbeats (every {ds.heartbeat_s} s); SQLite {ds.path.name} "
        f"({ds.path.stat().st_size / 2**20:,.0f} MiB)"
        + (f", generated in {ds.generate_s:.1f} s" if ds.generate_s else ", cached"),
        flush=True,
    )
    engine = make_engine(f"sqlite:///{ds.path}")
    read_rows_raw(ds)  # warms the page cache for both sides alike
    raw_rows, raw_s = read_rows_raw(ds)
    print(
        f"  bare sqlite3 read (reference):          {raw_rows:,} rows in {raw_s:.2f} s "
        f"({raw_rows / raw_s:,.0f} rows/s)",
        flush=True,
    )
    rows, read_s = read_rows(engine, ds)
    print(
        f"  baseline read (SQLAlchemy Core, typed): {rows:,} rows in {read_s:.2f} s "
        f"({rows / read_s:,.0f} rows/s)",
        flush=True,
    )
    result, score_s = score(engine, ds, persist=False)
    mean = sum(result.scores.values()) / len(result.scores) if result.scores else 0.0
    print(
        f"  scoring (read + values + score + explain): {result.shifts:,} shifts, "
        f"{result.rows_read:,} rows in {score_s:.2f} s ({result.shifts / score_s:,.0f} "
        f"shifts/s); mean score {mean:.2f}",
        flush=True,
    )
    print(
        f"  ratio scoring / typed read: {score_s / read_s:.2f}x (target <= 3x); "
        f"vs bare sqlite3 read: {score_s / raw_s:.2f}x",
        flush=True,
    )
    persist_s = None
    if persist:
        persist_s = score(engine, ds, persist=True)[1]
        print(
            f"  scoring + storing every score (rolled back): {persist_s:.2f} s; "
            f"ratio / typed read {persist_s / read_s:.2f}x",
            flush=True,
        )
    engine.dispose()
    return Run(ds, rows, read_s, raw_rows, raw_s, result, score_s, persist_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--heartbeat-s",
        type=int,
        default=300,
        help="seconds between a wearable's heartbeats (default 300)",
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--persist", action="store_true", help="also time storing the scores")
    parser.add_argument("--no-scale", action="store_true", help="skip the quarter-size run")
    parser.add_argument("--quick", action="store_true", help="40 posts x 7 days")
    args = parser.parse_args()
    if args.quick:
        args.posts, args.days = 40, 7
    if args.posts < 4 or args.days < 1:
        parser.error("--posts must be at least 4 and --days at least 1")
    print(
        f"bench/scoring.py: SQLite (synchronous=OFF while generating; WAL), 1 process; "
        f"plan: {CHECKPOINTS} checkpoints, a round every {ROUND_MINUTES} min, "
        f"{SHIFT_HOURS} h shifts"
    )
    big = run(args.posts, args.days, args.heartbeat_s, args.seed, args.persist)
    if args.no_scale:
        return
    small = run(args.posts // 4, args.days, args.heartbeat_s, args.seed, False)
    rows_ratio = big.rows / small.rows
    time_ratio = big.score_s / small.score_s
    print(
        f"scaling: {rows_ratio:.2f}x the rows took {time_ratio:.2f}x the time "
        f"(allowed {1.2 * rows_ratio:.2f}x, i.e. 4.8x for 4x); read alone "
        f"{big.read_s / small.read_s:.2f}x"
    )


if __name__ == "__main__":
    main()
