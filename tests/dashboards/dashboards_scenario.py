"""A known day of two sites, written through the product's own sink.

Everything is serialised by the product (``cloud_api.sink.schema`` for evidence,
``cloud_api.sink.compliance_lines`` for derived points), queued in the product's
outbox tables and delivered by its drain with the InfluxDB 1.x writer. The
numbers each panel must show follow from the table below; test_panels.py lists
them, panel by panel.

Site 1 has posts 11 (checkpoints 111, 112) and 12 (121, 122), guards 101, 102,
103 with wearables 0000a001..3 and gateways gw-1, gw-2. Site 2 (post 21, guard
201, gateway gw-9) and points outside the range are there to be filtered out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Table

from cloud_api.db import make_engine, session_scope
from cloud_api.models import InfluxOutbox, InfluxOutboxLines
from cloud_api.sink import compliance_lines as cl
from cloud_api.sink.outbox import enqueue, pending_points
from cloud_api.sink.schema import (
    encode_line,
    lines_for_event,
    points_for_advert,
    points_for_observation,
)
from cloud_api.sink.worker import DrainPolicy, drain_once
from cloud_api.sink.writers import V1Writer
from edge_agent.health import Health
from patrol_protocol.frames import Kind, SosTrigger

DAY = datetime(2026, 11, 24, tzinfo=UTC)
FROM_MS = int(DAY.timestamp() * 1000)
TO_MS = FROM_MS + 86_400_000 - 1
"""The dashboards' range in the tests: 2026-11-24 00:00:00.000 to 23:59:59.999 UTC."""
Row = dict[str, Any]
"""One result row: columns and ``GROUP BY`` tags by name."""
QUERY_TIMEOUT_S = 30.0
RECEIVE_DELAY = timedelta(milliseconds=1500)
"""Every device event reaches the cloud 1.5 s after the device's own time."""


def at(hour: int, minute: int = 0, second: int = 0, *, day: int = 24) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


def _event(
    kind: Kind,
    *,
    device: int,
    seq: int,
    time: datetime,
    body: dict[str, Any],
    flags: tuple[str, ...] = (),
    checkpoint: int | None = None,
    assurance: str = "medium",
) -> dict[str, Any]:
    """A row as ingest stores it in ``events`` (what ``lines_for_event`` reads)."""
    return {
        "kind": int(kind),
        "seq": seq,
        "device_id": device,
        "device_time": time,
        "received_at": time + RECEIVE_DELAY,
        "body": body,
        "flags": list(flags),
        "checkpoint_id": checkpoint,
        "assurance": assurance,
        "sun_read_counter": 40 + seq if assurance == "high" else None,
    }


A001, A002, A003, B001 = 0xA001, 0xA002, 0xA003, 0xB001

# (site, post, checkpoint, device, seq, time, method, assurance, flags)
SCANS: list[tuple[int, int, int, int, int, datetime, str, str, tuple[str, ...]]] = [
    (1, 11, 111, A001, 1, at(6, 10), "nfc", "high", ()),
    (1, 11, 112, A001, 2, at(6, 20), "nfc", "high", ()),
    (1, 11, 111, A001, 5, at(7, 10), "nfc", "high", ()),
    (1, 11, 112, A001, 6, at(7, 20), "ble", "medium", ()),
    (1, 11, 111, A003, 3, at(18, 10), "nfc", "low", ("low_assurance_tag",)),
    (1, 12, 121, A002, 1, at(6, 15), "nfc", "high", ()),
    (1, 12, 122, A002, 2, at(6, 25), "ble", "medium", ()),
    (1, 12, 121, A002, 4, at(7, 15), "nfc", "high", ("device_clock_unsynced", "clock_skew")),
    (2, 21, 211, B001, 1, at(6, 5), "nfc", "high", ()),
    (1, 11, 111, A001, 100, at(23, 0, day=23), "nfc", "high", ()),  # before the range
]

# (site, device, seq, time, battery_pct, [(equipment tag, rssi, battery)])
HEARTBEATS: list[tuple[int, int, int, datetime, int, list[tuple[int, int, int]]]] = [
    (1, A001, 3, at(6, 30), 90, [(0xE001, -50, 80), (0xE002, -60, 60)]),
    (1, A002, 3, at(6, 40), 40, []),
    (1, A003, 4, at(18, 30), 70, [(0xE001, -55, 75)]),
    (2, B001, 2, at(6, 30), 10, [(0xE009, -40, 5)]),
]

# (site, device, seq, time, trigger)
SOS: list[tuple[int, int, int, datetime, SosTrigger]] = [
    (1, A001, 7, at(8), SosTrigger.BUTTON),
    (1, A003, 6, at(19), SosTrigger.MAN_DOWN),
    (1, A002, 5, at(12), SosTrigger.TEST),
    (2, B001, 3, at(9), SosTrigger.BUTTON),
]

# (site, gateway, tag, counter, battery, rssi, time)
ADVERTS = [
    (1, "gw-1", 0xE002, 5, 55, -70, at(20)),
    (1, "gw-1", 0xE005, 9, 15, -80, at(10)),
]


def health(queue: int, oldest_s: float | None, dead: int, ble_state: str) -> dict[str, Any]:
    """A ``gateway_health`` observation exactly as the edge agent builds it."""
    return Health(
        status="ok",
        problems=(),
        agent_version="0.1.0",
        uptime_s=3600,
        queue_depth=queue,
        queue_urgent=0,
        queue_scan=queue,
        queue_event=0,
        queue_bulk=0,
        queue_bytes=200 * queue,
        queue_budget_bytes=None,
        oldest_unsent_age_s=oldest_s,
        dead_letters=dead,
        evicted_total=0,
        duplicates_total=0,
        forwarded_total=100,
        cloud_failing=False,
        cloud_failing_for_s=None,
        cloud_last_error=None,
        broker_connected=True,
        ble_state=ble_state,
        ble_error=None,
        disk_free_bytes=10**9,
        disk_total_bytes=10**10,
        cpu_temp_c=None,
        clock_ntp_synced=True,
        clock_source="ntp",
        clock_unsynced_open=False,
        clock_unsynced_upto_gw_seq=None,
    ).observation_body()


def tag_event(kind: str, tag: str) -> dict[str, Any]:
    """The edge's BLE tracker's away/back observation (the fields the sink keeps)."""
    return {"kind": kind, "source": "gateway", "tag": tag, "format": "ibeacon", "rssi_dbm": -80}


# (site, gateway, kind, gw_seq, time, observation)
OBSERVATIONS: list[tuple[int, str, str, int, datetime, dict[str, Any]]] = [
    (1, "gw-1", "gateway_health", 10, at(6), health(0, None, 0, "scanning")),
    (1, "gw-1", "gateway_health", 20, at(7), health(5, 30.0, 0, "scanning")),
    (1, "gw-1", "gateway_health", 30, at(8), health(12, 400.0, 1, "scanning")),
    (1, "gw-1", "gateway_health", 40, at(9), health(3, 10.0, 1, "unavailable")),
    (1, "gw-1", "evicted", 35, at(8, 30), {"kind": "evicted", "first_seq": 1, "count": 12}),
    (1, "gw-1", "ble_tag_away", 36, at(8, 40), tag_event("ble_tag_away", "ibeacon:a")),
    (1, "gw-1", "ble_tag_away", 37, at(8, 45), tag_event("ble_tag_away", "ibeacon:b")),
    (1, "gw-1", "ble_tag_back", 38, at(8, 50), tag_event("ble_tag_back", "ibeacon:a")),
    (1, "gw-2", "gateway_health", 3, at(6), health(0, None, 0, "scanning")),
    (1, "gw-2", "gateway_health", 4, at(7), health(0, 0.5, 0, "scanning")),
    (
        1,
        "gw-3",
        "gateway_health",
        7,
        at(18, day=22),
        health(0, None, 0, "scanning"),
    ),  # silent since
    (2, "gw-9", "gateway_health", 1, at(6), health(99, 999.0, 9, "disabled")),
    (2, "gw-9", "ble_tag_away", 2, at(6, 5), tag_event("ble_tag_away", "ibeacon:z")),
]

# (site, post, guard, shift, start, score, equipment score, deductions, on duty, missing ids)
SHIFTS: list[tuple[int, int, int, int, datetime, float, float, int, bool, tuple[str, ...]]] = [
    (1, 11, 101, 1001, at(6), 100.0, 100.0, 0, False, ()),
    (1, 12, 102, 1002, at(6), 80.0, 50.0, 2, False, ()),
    (1, 11, 103, 1003, at(18), 90.0, 100.0, 1, True, ("0000e002",)),
    (1, 12, 101, 1004, at(14), 95.0, 75.0, 1, False, ()),
    (2, 21, 201, 2001, at(6), 60.0, 0.0, 4, True, ("0000e003", "0000e004")),
    (1, 11, 101, 1000, at(6, day=23), 0.0, 0.0, 9, False, ()),  # before the range
]

# (site, post, guard, shift, index, start, outcome, expected, on time, late, missed,
#  missed ids, late ids)
ROUNDS = [
    (1, 11, 101, 1001, 0, at(6), "complete", 2, 2, 0, 0, (), ()),
    (1, 11, 101, 1001, 1, at(7), "complete", 2, 1, 1, 0, (), (112,)),
    (1, 12, 102, 1002, 0, at(6), "complete", 2, 2, 0, 0, (), ()),
    (1, 12, 102, 1002, 1, at(7), "partial", 2, 1, 0, 1, (122,), ()),
    (1, 11, 103, 1003, 0, at(18), "pending", 2, 1, 0, 0, (), ()),
    (2, 21, 201, 2001, 0, at(6), "missed", 1, 0, 0, 1, (211,), ()),
]

# (site, post, guard, id, rule, severity, time, active, checkpoint)
DEVIATIONS = [
    (1, 11, 103, 1, "absent_from_zone", "minor", at(19), True, None),
    (1, 12, 102, 2, "too_fast", "major", at(7, 30), True, None),
    (1, 12, 102, 3, "inactive", "minor", at(8), False, None),  # withdrawn by a re-score
    (1, 12, 102, 4, "missed_checkpoint", "major", at(7, 45), True, 122),
    (2, 21, 201, 5, "two_posts", "critical", at(9), True, None),
]

# (site, post, item, severity, transition, time, open delta, overdue delta)
RECTIFICATION = [
    (1, 12, 1, "major", "opened", at(7), 1, 0),
    (1, 12, 1, "major", "escalated", at(9), 0, 1),
    (1, 12, 1, "major", "resolved", at(12), -1, -1),
    (1, 12, 1, "major", "verified", at(13), 0, 0),
    (1, 12, 2, "minor", "opened", at(8), 1, 0),
    (1, 12, 2, "minor", "started", at(8, 30), 0, 0),
    (1, 11, 3, "critical", "opened", at(10), 1, 0),
    (1, 11, 3, "critical", "escalated", at(20), 0, 1),
    (1, 11, 3, "critical", "escalated", at(21), 0, 0),  # level 2: counted once
    (1, 11, 4, "minor", "opened", at(10, day=23), 1, 0),  # before the range: still open
    (1, 11, 5, "minor", "opened", at(6, day=25), 1, 0),  # after the range
    (2, 21, 6, "major", "opened", at(9), 1, 0),
    (1, None, 7, "minor", "opened", at(11), 1, 0),  # site-wide complaint
    (1, None, 7, "minor", "withdrawn", at(15), -1, 0),
]

SURVEYS = [(1, 11, 1, 4, at(10)), (1, None, 2, 5, at(11)), (2, 21, 3, 1, at(10))]

# (site, alert, trigger, transition, time, elapsed, device, level)
SOS_RESPONSES = [
    (1, 1, "button", "acknowledged", at(8, 0, 30), 30.0, "0000a001", 0),
    (1, 1, "button", "resolved", at(8, 10), 600.0, "0000a001", 0),
    (1, 2, "man_down", "escalated", at(19, 1), 60.0, "0000a003", 1),
    (1, 2, "man_down", "acknowledged", at(19, 1, 30), 90.0, "0000a003", 1),
    (1, 2, "man_down", "resolved", at(19, 30), 1800.0, "0000a003", 1),
    (1, 3, "test", "acknowledged", at(12, 0, 10), 10.0, "0000a002", 0),
    (1, 3, "test", "resolved", at(12, 1), 60.0, "0000a002", 0),
    (2, 4, "button", "acknowledged", at(9, 8, 20), 500.0, "0000b001", 0),
]


def evidence_lines() -> list[str]:
    """Scans, heartbeats (+ equipment near the guard), SOS, adverts, gateway observations."""
    lines: list[str] = []
    for site, post, checkpoint, device, seq, time, method, assurance, flags in SCANS:
        if method == "nfc":
            row = _event(
                Kind.NFC_SCAN,
                device=device,
                seq=seq,
                time=time,
                body={},
                flags=flags,
                checkpoint=checkpoint,
                assurance=assurance,
            )
        else:
            row = _event(
                Kind.BLE_VISIT,
                device=device,
                seq=seq,
                time=time,
                body={"rssi_dbm": -67, "dwell_s": 12},
                flags=flags,
                checkpoint=checkpoint,
                assurance=assurance,
            )
        lines += lines_for_event(row, site_id=site, post_id=post)
    for site, device, seq, time, battery, items in HEARTBEATS:
        body = {
            "battery_pct": battery,
            "battery_mv": 3700,
            "status": 0,
            "queue_depth": 0,
            "items": [{"tag_id": t, "rssi_dbm": r, "battery_pct": b} for t, r, b in items],
        }
        row = _event(Kind.HEARTBEAT, device=device, seq=seq, time=time, body=body)
        lines += lines_for_event(row, site_id=site, post_id=None)
    for site, device, seq, time, trigger in SOS:
        row = _event(Kind.SOS, device=device, seq=seq, time=time, body={"trigger": int(trigger)})
        lines += lines_for_event(row, site_id=site, post_id=None)
    for site, gateway, tag, counter, battery, rssi, time in ADVERTS:
        advert = {
            "fields": {"tag_id": tag, "counter": counter, "battery_pct": battery, "flags": 0},
            "rssi_dbm": rssi,
            "received_at": time,
        }
        lines += [
            encode_line(p) for p in points_for_advert(advert, site_id=site, gateway_id=gateway)
        ]
    for site, gateway, kind, gw_seq, time, observation in OBSERVATIONS:
        obs_row = {
            "gw_seq": gw_seq,
            "gateway_clock_synced": True,
            "observation": observation,
            "kind": kind,
            "received_at": time,
        }
        lines += [
            encode_line(p)
            for p in points_for_observation(obs_row, site_id=site, gateway_id=gateway)
        ]
    return lines


def derived_lines() -> list[str]:
    """What the compliance engine, the workflow and the emergency path write."""
    lines: list[str] = []
    for site, post, guard, shift, start, score, equipment, deductions, on_duty, missing in SHIFTS:
        common: dict[str, Any] = dict(
            site_id=site,
            post_id=post,
            guard_id=guard,
            period="shift",
            period_start=start,
            key_id=shift,
            components={"equipment": equipment, "rounds": 100.0},
            deductions=deductions,
            deduction_points=5.0 * deductions,
            rounds_expected=2,
            rounds_completed=2,
            rounds_partial=0,
            rounds_missed=0,
            checkpoints_on_time=4,
            checkpoints_late=0,
            checkpoints_missed=0,
            order_violations=0,
            flagged_events=0,
            equipment_missing=len(missing),
            equipment_missing_ids=missing,
            on_duty=on_duty,
        )
        # A first, live score later recomputed: the same key, so the second overwrites it.
        lines.append(cl.compliance_line(**{**common, "score": 50.0}))
        lines.append(cl.compliance_line(**{**common, "score": score}))
    lines.append(
        cl.compliance_line(  # a day score: the dashboards read shifts only
            site_id=1,
            post_id=11,
            guard_id=101,
            period="day",
            period_start=DAY,
            key_id=0,
            score=10.0,
            components={},
            deductions=0,
            deduction_points=0.0,
            rounds_expected=0,
            rounds_completed=0,
            rounds_partial=0,
            rounds_missed=0,
            checkpoints_on_time=0,
            checkpoints_late=0,
            checkpoints_missed=0,
            order_violations=0,
            flagged_events=0,
        )
    )
    for site, post, guard, shift, index, start, outcome, exp, ok, late, miss, mids, lids in ROUNDS:
        lines.append(
            cl.round_line(
                site_id=site,
                post_id=post,
                guard_id=guard,
                shift_id=shift,
                round_index=index,
                window_start=start,
                outcome=outcome,
                checkpoints_expected=exp,
                checkpoints_on_time=ok,
                checkpoints_late=late,
                checkpoints_missed=miss,
                order_violations=0,
                missed_ids=mids,
                late_ids=lids,
            )
        )
    for site, post, guard, dev_id, rule, severity, time, active, checkpoint in DEVIATIONS:
        lines.append(
            cl.deviation_line(
                site_id=site,
                post_id=post,
                guard_id=guard,
                deviation_id=dev_id,
                rule=rule,
                severity=severity,
                occurred_at=time,
                active=active,
                deduction_points=5.0,
                checkpoint_id=checkpoint,
            )
        )
    for site, post, item, severity, transition, time, open_delta, overdue_delta in RECTIFICATION:
        lines.append(
            cl.rectification_line(
                site_id=site,
                post_id=post,
                item_id=item,
                severity=severity,
                transition=transition,
                at=time,
                open_delta=open_delta,
                overdue_delta=overdue_delta,
                age_s=0.0,
            )
        )
    for site, post, survey, rating, time in SURVEYS:
        lines.append(
            cl.survey_line(site_id=site, post_id=post, survey_id=survey, rating=rating, at=time)
        )
    for site, alert, trigger, transition, time, elapsed, device, level in SOS_RESPONSES:
        lines.append(
            cl.sos_response_line(
                site_id=site,
                alert_id=alert,
                trigger=trigger,
                transition=transition,
                at=time,
                elapsed_s=elapsed,
                device=device,
                level=level,
            )
        )
    return lines


def load(influx_url: str, database: str, work_dir: Path) -> int:
    """Queue every line in the product's outbox (SQLite) and drain it into InfluxDB.

    Batches of at most 7 lines, so the drain really claims, writes and deletes
    several rows; returns the number of points written.
    """
    engine = make_engine(f"sqlite:///{work_dir / 'outbox.db'}")
    for model in (InfluxOutbox, InfluxOutboxLines):
        table = model.__table__
        assert isinstance(table, Table)
        table.create(engine)
    lines = evidence_lines() + derived_lines()
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for start in range(0, len(lines), 7):
            batch = lines[start : start + 7]
            enqueue(session, lines="\n".join(batch), n_points=len(batch), now=now)
    writer = V1Writer(influx_url, database=database)
    written = 0
    try:
        while True:
            result = drain_once(
                engine,
                writer,
                owner="dashboards-test",
                policy=DrainPolicy(batch_points=50, claim_rows=4),
            )
            assert result.error is None, result.error
            written += result.written_points
            if result.claimed_rows == 0:
                break
        with session_scope(engine) as session:
            assert pending_points(session) == 0
    finally:
        writer.close()
        engine.dispose()
    assert written == len(lines)
    return written


def clock(ms: int) -> str:
    """Row time for comparison: ``HH:MM:SS`` on the scenario's day, else ISO 8601."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    if moment.date() == DAY.date():
        return moment.strftime("%H:%M:%S")
    return moment.isoformat()


def run(url: str, db: str, q: str) -> list[Row]:
    """Rows of every series (``GROUP BY`` tags merged in), times as :func:`clock`."""
    response = httpx.post(
        f"{url}/query", data={"q": q, "db": db, "epoch": "ms"}, timeout=QUERY_TIMEOUT_S
    )
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, (q, result["error"])
    out: list[Row] = []
    for series in result.get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            if "time" in row:
                row["time"] = clock(row["time"])
            row.update(series.get("tags") or {})
            out.append(row)
    return out
