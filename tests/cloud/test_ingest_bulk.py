"""Ingest's bulk insert stores exactly what the ORM stores (cloud_api.bulk).

The events rows of a batch go through one DBAPI ``executemany`` with its own
fast conversions for SQLite's datetimes and JSON; the stored values must be the
ones SQLAlchemy itself would write, byte for byte where SQLite keeps text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

from cloudtest import DEVICE, World
from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session

from cloud_api import bulk
from cloud_api.models import Device, Event, Gateway

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
