"""Line protocol and the tie-break rule: exact strings, then read back from InfluxDB 1.6."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sinktest import private_database, rows

from cloud_api.sink.schema import (
    LineProtocolError,
    Point,
    compliance_point,
    encode_line,
    encode_lines,
    lines_for_event,
    points_for_advert,
    points_for_event,
    points_for_observation,
    tie_broken_ns,
)
from cloud_api.sink.writers import V1Writer
from patrol_protocol.frames import Kind

T_MS = 1_795_579_200_123  # 2026-11-25T04:00:00.123Z
T = datetime(2026, 11, 25, 4, 0, 0, 123_000, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 25, 4, 0, 5, 500_000, tzinfo=UTC)

TRICKY = [
    ("space", "North door", r"North\ door"),
    ("comma", "a,b", r"a\,b"),
    ("equals", "k=v", r"k\=v"),
    ("quotes", 'say "hi"', r'say\ "hi"'),
    ("unicode", "Tür 北門 ☃", r"Tür\ 北門\ ☃"),
    ("inner backslash", r"a\b", r"a\b"),
]


@pytest.fixture
def influx(influx_url: str) -> Iterator[tuple[str, str]]:
    with private_database(influx_url) as db:
        yield influx_url, db


@pytest.mark.parametrize(("name", "value", "escaped"), TRICKY, ids=[t[0] for t in TRICKY])
def test_tag_escaping_is_exact(name: str, value: str, escaped: str) -> None:
    point = Point("scan", (("gateway", value),), (("seq", 1),), 5)
    assert encode_line(point) == f"scan,gateway={escaped} seq=1i 5"


def test_field_types_and_string_escaping() -> None:
    point = Point(
        "m x",
        (("a", "1"), ("empty", "")),
        (("i", -3), ("f", 0.5), ("b", True), ("c", False), ("s", 'q"uo\\te')),
        1,
    )
    assert encode_line(point) == r'm\ x,a=1 i=-3i,f=0.5,b=true,c=false,s="q\"uo\\te" 1'


def test_trailing_backslash_gets_an_escaped_space() -> None:
    point = Point("m", (("a", "x\\"),), (("v", 1),), 1)
    assert encode_line(point) == "m,a=x\\\\  v=1i 1"


def test_point_without_fields_or_with_nan_is_refused() -> None:
    with pytest.raises(LineProtocolError, match="no fields"):
        encode_line(Point("m", (), (), 1))
    with pytest.raises(LineProtocolError, match="NaN"):
        encode_line(Point("m", (), (("v", float("nan")),), 1))


def test_tie_break_adds_seq_low_digits_as_ns() -> None:
    assert tie_broken_ns(T, 7) == T_MS * 1_000_000 + 7
    assert tie_broken_ns(T, 1_000_008) == T_MS * 1_000_000 + 8
    # Microseconds below the millisecond are dropped, never carried into the offset.
    assert tie_broken_ns(T.replace(microsecond=123_999), 0) == T_MS * 1_000_000


def _event(kind: Kind, seq: int, body: dict[str, object], **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "kind": int(kind),
        "device_id": 0xA001,
        "seq": seq,
        "device_time": T,
        "received_at": RECEIVED,
        "assurance": "low",
        "flags": ["low_assurance_tag"],
        "body": body,
        "checkpoint_id": 3,
    }
    row.update(extra)
    return row


def test_points_for_each_kind_are_exact() -> None:
    ns = T_MS * 1_000_000
    nfc = _event(Kind.NFC_SCAN, 41, {"tag_type": 2, "uid": "04a1"})
    assert encode_lines(points_for_event(nfc, site_id=1, post_id=2)) == (
        "scan,assurance=low,checkpoint=3,device=0000a001,method=nfc,post=2,site=1 "
        f'seq=41i,delay_ms=5377i,flag_count=1i,flags="low_assurance_tag" {ns + 41}'
    )
    heartbeat = _event(
        Kind.HEARTBEAT,
        42,
        {
            "battery_pct": 80,
            "battery_mv": 3900,
            "status": 1,
            "queue_depth": 3,
            "items": [{"tag_id": 0xE001, "rssi_dbm": -60, "battery_pct": 55}],
        },
        flags=[],
        checkpoint_id=None,
    )
    assert encode_lines(points_for_event(heartbeat, site_id=1, post_id=None)) == (
        "heartbeat,device=0000a001,site=1 seq=42i,battery_pct=80i,battery_mv=3900i,status=1i,"
        f"queue_depth=3i,equipment_count=1i,delay_ms=5377i,flag_count=0i {ns + 42}\n"
        "equipment,device=0000a001,equipment=0000e001,site=1,source=wearable "
        f"rssi_dbm=-60i,battery_pct=55i,seq=42i {ns + 42}"
    )
    sos = _event(Kind.SOS, 43, {"trigger": 2}, flags=[], assurance="medium")
    assert encode_lines(points_for_event(sos, site_id=1, post_id=None)) == (
        "sos,assurance=medium,device=0000a001,site=1,trigger=man_down "
        f'seq=43i,trigger_code=2i,delay_ms=5377i,flags="" {ns + 43}'
    )
    assert points_for_event(_event(Kind.BOOT, 44, {}), site_id=1, post_id=None) == []


def test_points_for_gateway_items_are_exact() -> None:
    advert = {
        "key": "equip:0000e001:9",
        "fields": {"tag_id": 0xE001, "battery_pct": 70, "flags": 1, "counter": 9},
        "rssi_dbm": -71,
        "received_at": RECEIVED,
    }
    assert encode_lines(points_for_advert(advert, site_id=1, gateway_id="gw 1")) == (
        r"equipment,equipment=0000e001,gateway=gw\ 1,site=1,source=gateway "
        f"rssi_dbm=-71i,battery_pct=70i,tag_flags=1i,counter=9i {1_795_579_205_500_000_009}"
    )
    observation = {
        "gw_seq": 19,
        "kind": "evicted",
        "observation": {"kind": "evicted", "count": 7, "reason": "disk_budget", "nested": {}},
        "received_at": RECEIVED,
        "gateway_clock_synced": True,
    }
    assert encode_lines(points_for_observation(observation, site_id=1, gateway_id="gw-1")) == (
        "gateway_health,gateway=gw-1,kind=evicted,site=1 "
        f'gw_seq=19i,clock_synced=true,obs_count=7.0,obs_reason="disk_budget" '
        f"{1_795_579_205_500_000_019}"
    )
    score = compliance_point(
        site_id=1,
        post_id=2,
        guard_id=5,
        period="day",
        period_start=datetime(2026, 11, 25, tzinfo=UTC),
        score=0.875,
        rounds_expected=8,
        rounds_completed=7,
        checkpoints_missed=2,
        checkpoints_late=1,
    )
    assert encode_line(score) == (
        "compliance,guard=5,period=day,post=2,site=1 score=0.875,rounds_expected=8i,"
        "rounds_completed=7i,checkpoints_missed=2i,checkpoints_late=1i 1795564800000000000"
    )


@pytest.mark.influxdb
def test_tricky_tag_and_string_values_read_back_exactly(influx: tuple[str, str]) -> None:
    url, db = influx
    values = [value for _name, value, _escaped in TRICKY] + ["x\\"]
    points = [
        Point("tricky", (("gateway", value),), (("i", n), ("s", value)), 1_000 + n)
        for n, value in enumerate(values)
    ]
    writer = V1Writer(url, database=db)
    writer.write(encode_lines(points).encode())
    writer.close()
    got = rows(url, db, 'SELECT "gateway", "i", "s" FROM "tricky" ORDER BY time')
    expected_tags = [*values[:-1], "x\\ "]  # the documented trailing-backslash rule
    assert [(r["time"], r["gateway"], r["i"], r["s"]) for r in got] == [
        (1_000 + n, tag, n, value)
        for n, (tag, value) in enumerate(zip(expected_tags, values, strict=True))
    ]


@pytest.mark.influxdb
def test_two_events_in_one_millisecond_are_both_kept(influx: tuple[str, str]) -> None:
    url, db = influx
    first = _event(Kind.NFC_SCAN, 41, {"tag_type": 2, "uid": "04a1"})
    second = _event(Kind.NFC_SCAN, 42, {"tag_type": 2, "uid": "04a1"})
    lines = [
        *points_for_event(first, site_id=1, post_id=2),
        *points_for_event(second, site_id=1, post_id=2),
    ]
    assert lines[0].tags == lines[1].tags  # one series, the same millisecond
    writer = V1Writer(url, database=db)
    writer.write(encode_lines(lines).encode())
    # The same two points with the bare millisecond: InfluxDB keeps only the last one.
    bare = [Point("bare", p.tags, p.fields, T_MS * 1_000_000) for p in lines]
    writer.write(encode_lines(bare).encode())
    writer.close()
    got = rows(url, db, 'SELECT "seq" FROM "scan" ORDER BY time')
    assert [(r["time"], r["seq"]) for r in got] == [
        (T_MS * 1_000_000 + 41, 41),
        (T_MS * 1_000_000 + 42, 42),
    ]
    assert [r["seq"] for r in rows(url, db, 'SELECT "seq" FROM "bare"')] == [42]


@pytest.mark.parametrize(
    "row",
    [
        _event(Kind.NFC_SCAN, 41, {"tag_type": 2, "uid": "04a1"}),
        _event(Kind.NFC_SCAN, 42, {"tag_type": 1}, sun_read_counter=61, flags=[]),
        _event(
            Kind.BLE_VISIT,
            43,
            {"rssi_dbm": -70, "dwell_s": 12},
            flags=["clock_skew", "gateway clock, unsynced"],
            assurance="medium",
        ),
        _event(
            Kind.HEARTBEAT,
            44,
            {
                "battery_pct": 5,
                "battery_mv": 3300,
                "status": 3,
                "queue_depth": 0,
                "items": [
                    {"tag_id": 0xE001, "rssi_dbm": -60, "battery_pct": 55},
                    {"tag_id": 0xE002, "rssi_dbm": -90, "battery_pct": 0},
                ],
            },
            checkpoint_id=None,
        ),
        _event(Kind.SOS, 45, {"trigger": 3}),
        _event(Kind.BOOT, 46, {}),
    ],
    ids=["nfc21x", "nfc424", "ble", "heartbeat", "sos", "boot"],
)
def test_fast_lines_equal_the_encoded_points(row: dict[str, object]) -> None:
    for site_id, post_id in [(1, 2), (None, None)]:
        expected = [encode_line(p) for p in points_for_event(row, site_id=site_id, post_id=post_id)]
        assert lines_for_event(row, site_id=site_id, post_id=post_id) == expected
