"""``patrol-cloud compliance ...``: targets, shifts and scores from the command line.

    patrol-cloud compliance targets POST_ID                 targets and plans as JSON
    patrol-cloud compliance plan-add POST_ID FILE.json      add a plan (the API's PlanIn body)
    patrol-cloud compliance shift-add --post 3 --guard 7 --device 0000a001 \\
        --start 2026-11-24T21:00:00Z --end 2026-11-25T05:00:00Z
    patrol-cloud compliance score SHIFT_ID [--now ISO]      (re)score one shift, print why
    patrol-cloud compliance rescore [--now ISO]             score every shift that is due
    patrol-cloud compliance window --start ISO --end ISO [--site N]   bulk: a month at once
    patrol-cloud compliance scores --site N --start ISO --end ISO      current scores (CSV)
    patrol-cloud compliance worker [--interval-s 60]        rescore due shifts forever

The database comes from ``PATROL_CLOUD_DATABASE_URL`` or ``--database-url``.
Scores are written to InfluxDB's outbox when ``PATROL_CLOUD_INFLUX_URL`` is set.
Exit status: 0 done, 2 bad arguments or data (the reason on stderr).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import Engine

from cloud_api.compliance import explain, store
from cloud_api.compliance.targets import PostTargets
from cloud_api.db import init_db, make_engine, session_scope
from patrol_protocol.ids import parse_device_id

log = logging.getLogger(__name__)


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time zone (e.g. Z)")
    return value.astimezone(UTC)


def _engine(url: str | None) -> Engine:
    if url is None:
        from cloud_api.settings import get_settings

        url = get_settings().database_url
    engine = make_engine(url)
    init_db(engine)
    return engine


def _sink_enabled() -> bool:
    import os

    return bool(os.environ.get("PATROL_CLOUD_INFLUX_URL"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patrol-cloud compliance", description=__doc__)
    p.add_argument("--database-url", default=None)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("targets", help="a post's targets and plans as JSON")
    t.add_argument("post_id", type=int)
    a = sub.add_parser("plan-add", help="add a patrol plan from a JSON file")
    a.add_argument("post_id", type=int)
    a.add_argument("file")
    s = sub.add_parser("shift-add", help="plan a shift")
    s.add_argument("--post", type=int, required=True)
    s.add_argument("--guard", type=int, required=True)
    s.add_argument("--device", required=True, help="wearable id, 8 hex digits")
    s.add_argument("--start", type=_when, required=True)
    s.add_argument("--end", type=_when, required=True)
    one = sub.add_parser("score", help="(re)score one shift and print the explanation")
    one.add_argument("shift_id", type=int)
    one.add_argument("--now", type=_when, default=None)
    due = sub.add_parser("rescore", help="score every shift that is due")
    due.add_argument("--now", type=_when, default=None)
    w = sub.add_parser("window", help="score every shift starting in [start, end)")
    w.add_argument("--start", type=_when, required=True)
    w.add_argument("--end", type=_when, required=True)
    w.add_argument("--site", type=int, default=None)
    w.add_argument("--now", type=_when, default=None)
    ls = sub.add_parser("scores", help="current scores of a site as CSV")
    ls.add_argument("--site", type=int, required=True)
    ls.add_argument("--start", type=_when, required=True)
    ls.add_argument("--end", type=_when, required=True)
    wk = sub.add_parser("worker", help="rescore due shifts every --interval-s")
    wk.add_argument("--interval-s", type=float, default=60.0)
    return p


def rescore_due(engine: Engine, *, now: datetime) -> tuple[int, int]:
    """Score every due shift, one transaction each; returns (scored, changed)."""
    with session_scope(engine) as s:
        due = store.due_for_scoring(s, now=now)
    changed = 0
    for shift_id in due:
        with session_scope(engine) as s:
            changed += store.score_shift_row(s, shift_id, now=now, sink=_sink_enabled()).changed
    return len(due), changed


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _run(args)
    except (store.ComplianceError, ValueError, ValidationError) as exc:
        print(f"patrol-cloud compliance: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    engine = _engine(args.database_url)
    now = getattr(args, "now", None) or datetime.now(UTC)
    if args.command == "targets":
        with session_scope(engine) as s:
            t = store.targets_for_post(s, args.post_id)
            print(json.dumps(_targets_json(t), indent=2, sort_keys=True))
    elif args.command == "plan-add":
        from cloud_api.api.routes.compliance import PlanIn

        with open(args.file, encoding="utf-8") as handle:
            body = PlanIn.model_validate_json(handle.read())
        with session_scope(engine) as s:
            row = body.to_row(args.post_id)
            s.add(row)
            s.flush()
            store.plan_from_row(row)
            print(f"plan {row.id} added to post {args.post_id}")
    elif args.command == "shift-add":
        with session_scope(engine) as s:
            shift = store.create_shift(
                s,
                post_id=args.post,
                guard_id=args.guard,
                device_id=parse_device_id(args.device),
                start=args.start,
                end=args.end,
            )
            print(f"shift {shift.id}")
    elif args.command == "score":
        with session_scope(engine) as s:
            stored = store.score_shift_row(s, args.shift_id, now=now, sink=_sink_enabled())
            state = "changed" if stored.changed else "unchanged"
            print(f"shift {args.shift_id} version {stored.row.version} ({state})")
            print(explain.explanation_text(stored.result))
    elif args.command == "rescore":
        scored, changed = rescore_due(engine, now=now)
        print(f"{scored} shifts due, {changed} scores changed")
    elif args.command == "window":
        began = time.perf_counter()
        with session_scope(engine) as s:
            result = store.score_window(
                s,
                start=args.start,
                end=args.end,
                now=now,
                site_id=args.site,
                sink=_sink_enabled(),
            )
        print(
            f"{result.shifts} shifts, {result.rows_read} rows, {result.changed} scores changed "
            f"in {time.perf_counter() - began:.2f} s"
        )
    elif args.command == "scores":
        with session_scope(engine) as s:
            rows = store.current_scores(s, site_id=args.site, start=args.start, end=args.end)
        out = csv.writer(sys.stdout)
        out.writerow(
            [
                "shift_id",
                "post_id",
                "guard_id",
                "start",
                "end",
                "version",
                "final",
                "score",
                "rounds_expected",
                "rounds_completed",
                "rounds_partial",
                "rounds_missed",
                "presence_share",
                "breaches",
            ]
        )
        for r in rows:
            out.writerow(
                [
                    r.shift_id,
                    r.post_id,
                    r.guard_id,
                    r.start.isoformat(),
                    r.end.isoformat(),
                    r.version,
                    r.final,
                    f"{r.score:.2f}",
                    r.rounds_expected,
                    r.rounds_completed,
                    r.rounds_partial,
                    r.rounds_missed,
                    f"{r.presence_share:.4f}",
                    r.breaches,
                ]
            )
    elif args.command == "worker":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        failing = False
        while True:
            try:
                scored, changed = rescore_due(engine, now=datetime.now(UTC))
                if failing:
                    log.info("compliance worker recovered")
                failing = False
                if changed:
                    log.info("rescored %d shifts, %d changed", scored, changed)
            except Exception:  # the outer loop: log once per failure run, keep going
                if not failing:
                    log.exception(
                        "compliance worker failed; retrying every %.0f s", args.interval_s
                    )
                failing = True
            time.sleep(args.interval_s)
    return 0


def _targets_json(t: PostTargets) -> dict[str, object]:
    return {
        "post_id": t.post_id,
        "timezone": t.timezone,
        "max_absence_s": t.max_absence_s,
        "max_inactivity_s": t.max_inactivity_s,
        "sos_ack_target_s": t.sos_ack_target_s,
        "rectification_target_h": t.rectification_target_h,
        "weights": {k.value: round(v, 4) for k, v in t.weights.budget.items()},
        "equipment": [
            {
                "name": e.name,
                "tag_ids": [f"{x:08x}" for x in sorted(e.tag_ids)],
                "min_battery_pct": e.min_battery_pct,
            }
            for e in t.equipment
        ],
        "plans": [
            {
                "id": p.plan_id,
                "name": p.name,
                "checkpoints": list(p.checkpoints),
                "ordered": p.ordered,
                "schedule": p.schedule.kind.value,
                "round_duration_s": p.round_duration_s,
                "grace_s": p.grace_s,
            }
            for p in t.plans
        ],
    }
