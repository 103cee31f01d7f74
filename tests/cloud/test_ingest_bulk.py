"""Ingest's bulk insert stores exactly what the ORM stores (cloud_api.bulk).

The events rows of a batch go through one DBAPI ``executemany`` with its own
fast conversions for SQLite's datetimes and JSON; the stored values must be the
ones SQLAlchemy itself would write, byte for byte where SQLite keeps text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

from cloudtest import (
    BEACON_ID,
    BEACON_KEY,
    COMPANY_ID,
    DEVICE,
    T0,
    TAG2_FILE_KEY,
    TAG2_META_KEY,
    TAG2_UID,
    World,
    frame_item,
    make_frame,
    make_sun,
)
from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session

from cloud_api import bulk
from cloud_api.models import Device, Event, Gateway
from patrol_protocol.adverts import encode_beacon_payload
from patrol_protocol.frames import TAG_NTAG424_SUN, BleVisit, EquipmentNear, Heartbeat, NfcScan

WHEN = datetime(2026, 11, 25, 4, 0, 0, 0, tzinfo=UTC)
COLUMNS = [c.name for c in Event.__table__.columns if c.name != "id"]


def row(session: Session, seq: int) -> dict[str, Any]:
    device_pk = session.execute(
        select(Device.id).where(Device.device_id == DEVICE, Device.kind == "wearable")
    ).scalar_one()
    gateway_pk = session.execute(select(Gateway.id).limit(1)).scalar_one()
    return {
        "device_id": DEVICE,
        "seq": seq,
        "device_pk": device_pk,
        "kind": 3,
        "key_id": 1,
        "frame_flags": 0,
        # whole seconds (no microseconds), another zone, and microseconds: the three
        # spellings SQLAlchemy's SQLite text must match
        "device_time": WHEN,
        "gateway_pk": gateway_pk,
        "gw_seq": seq,
        "received_at": (WHEN + timedelta(microseconds=7)).astimezone(timezone(timedelta(hours=2))),
        "gateway_clock_synced": True,
        "ingested_at": WHEN + timedelta(seconds=1, microseconds=123456),
        "raw": bytes([seq, 0, 255]),
        "assurance": "medium",
        "flags": [] if seq % 10 == 1 else ["clock_skew", "topic_mismatch"],
        "body": {"battery_pct": 81, "items": [{"tag_id": 1, "uid": "04ab"}], "s": 'é"\\'},
        "checkpoint_id": None,
        "nfc_tag_id": None,
        "sun_read_counter": None,
        "beacon_id": None,
        "beacon_step": None,
    }


def stored(world: World, seq: int) -> tuple[Any, ...]:
    """Every column as the database itself returns it to plain SQL (text on SQLite)."""
    return tuple(
        world.rows(f"SELECT {', '.join(COLUMNS)} FROM events WHERE seq = :seq", seq=seq)[0]
    )


def test_bulk_rows_equal_orm_rows(world: World) -> None:
    for seq in (1, 2):
        with Session(world.engine) as session, session.begin():
            session.add(Event(**row(session, seq)))
        with Session(world.engine) as session, session.begin():
            bulk.insert_many(
                session, cast(Table, Event.__table__), [row(session, seq + 10)], columns=COLUMNS
            ).close()
        orm, fast = stored(world, seq), stored(world, seq + 10)
        differing = [
            name
            for name, a, b in zip(COLUMNS, orm, fast, strict=True)
            if a != b and name not in ("seq", "gw_seq", "raw")
        ]
        assert differing == []
        assert bytes(fast[COLUMNS.index("raw")]) == bytes([seq + 10, 0, 255])
    if world.engine.dialect.name == "sqlite":
        with world.engine.connect() as conn:
            texts = conn.execute(
                text("SELECT device_time, received_at, ingested_at FROM events WHERE seq = 11")
            ).one()
        assert tuple(texts) == (
            "2026-11-25 04:00:00.000000",
            "2026-11-25 04:00:00.000007",
            "2026-11-25 04:00:01.123456",
        )


def _scan(seq: int, counter: int) -> dict[str, Any]:
    picc_enc, mac = make_sun(TAG2_META_KEY, TAG2_FILE_KEY, TAG2_UID, counter)
    body = NfcScan(tag_type=TAG_NTAG424_SUN, uid=TAG2_UID, picc_enc=picc_enc, sdmmac=mac)
    return frame_item(seq, make_frame(body, seq=seq))


def _visit(seq: int) -> dict[str, Any]:
    adv = encode_beacon_payload(
        key_id=1,
        beacon_id=BEACON_ID,
        step=T0 // 10,
        tx_power_dbm=-59,
        battery_pct=93,
        company_id=COMPANY_ID,
        key=BEACON_KEY,
    )
    return frame_item(
        seq, make_frame(BleVisit(rssi_dbm=-60, dwell_s=30, company_id=COMPANY_ID, adv=adv), seq=seq)
    )


def _heartbeat(seq: int) -> dict[str, Any]:
    body = Heartbeat(
        battery_pct=81,
        battery_mv=3912,
        status=2,
        queue_depth=3,
        items=(EquipmentNear(0x00E00001, -50, 87),),
    )
    return frame_item(seq, make_frame(body, seq=seq))


def _bodies(world: World) -> dict[int, str]:
    """Each event's body column as the text the database holds."""
    cast_text = "CAST(body AS TEXT)"
    return {r[0]: r[1] for r in world.rows(f"SELECT seq, {cast_text} FROM events ORDER BY seq")}


def test_body_json_built_during_parsing_is_what_json_dumps_writes(world: World) -> None:
    # A SUN scan and a BLE visit get fields added after verification (read counter,
    # beacon): their JSON is spliced from the text built while parsing; it must be
    # exactly json.dumps of the stored object, on both stores.
    results = world.results(_scan(1, 7), _visit(2), _heartbeat(3))
    assert [r["status"] for r in results] == ["accepted"] * 3
    bodies = _bodies(world)
    assert set(bodies) == {1, 2, 3}
    for text_value in bodies.values():
        assert text_value == json.dumps(json.loads(text_value))
    assert json.loads(bodies[1])["sun_read_counter"] == 7
    assert json.loads(bodies[2])["beacon"]["step"] == T0 // 10


def test_a_conflict_in_the_bulk_insert_falls_back_and_keeps_objects(world: World) -> None:
    # On SQLite the batch's rows go in with ids assigned under the write lock; a SUN
    # counter stored by an earlier batch makes that insert fail, and the rows then go
    # through INSERT ... ON CONFLICT DO NOTHING: the replay is refused, the others are
    # stored with their bodies as JSON objects (not strings).
    assert world.results(_scan(1, 7))[0]["status"] == "accepted"
    results = world.results(_heartbeat(2), _scan(3, 7), _visit(4))
    assert [(r["status"], r["reason"]) for r in results] == [
        ("accepted", None),
        ("rejected", "replayed_counter"),
        ("accepted", None),
    ]
    bodies = _bodies(world)
    assert json.loads(bodies[2])["items"][0]["tag_id"] == 0x00E00001
    assert json.loads(bodies[4])["beacon"]["beacon_id"] == BEACON_ID
    events = {e.seq: e for e in world.events()}
    assert isinstance(events[2].body, dict) and isinstance(events[4].body, dict)
