"""Device frames through POST /api/v1/ingest: accepted, duplicate, conflicts, forgeries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cloudtest import (
    DEVICE,
    DEVICE_KEY,
    OTHER_GATEWAY_ID,
    RECEIVED_AT,
    SERVER_NOW,
    T0,
    UNKNOWN_DEVICE,
    World,
    frame_item,
    load_vectors,
    make_batch,
    make_frame,
)

from cloud_api import verify
from patrol_protocol.frames import FLAG_CLOCK_UNSYNCED, Boot, EquipmentNear, Heartbeat, Sos

SOS_1 = make_frame(Sos(trigger=1), seq=1)


def test_accepted_frame_is_stored_byte_for_byte(world: World) -> None:
    assert world.results(frame_item(17, SOS_1)) == [
        {"gw_seq": 17, "status": "accepted", "key": "0000a001:1", "reason": None}
    ]
    rows = world.rows("SELECT device_id, seq, kind, raw, assurance, gw_seq FROM events")
    assert [tuple(r) for r in rows] == [(DEVICE, 1, 4, SOS_1, "medium", 17)]


def test_duplicate_retry_is_counted_not_stored_twice(world: World) -> None:
    batch = make_batch(frame_item(1, SOS_1))
    first = world.ingest(batch).json()["results"]
    second = world.ingest(batch).json()["results"]
    assert first == [{"gw_seq": 1, "status": "accepted", "key": "0000a001:1", "reason": None}]
    assert second == [{"gw_seq": 1, "status": "duplicate", "key": "0000a001:1", "reason": None}]
    assert world.scalar("SELECT count(*) FROM events") == 1
    assert [
        tuple(r) for r in world.rows("SELECT accepted, duplicates FROM ingest_log ORDER BY id")
    ] == [
        (1, 0),
        (0, 1),
    ]


def test_duplicate_inside_one_batch(world: World) -> None:
    assert [r["status"] for r in world.results(frame_item(1, SOS_1), frame_item(2, SOS_1))] == [
        "accepted",
        "duplicate",
    ]


def test_same_seq_different_bytes_is_seq_conflict(world: World) -> None:
    world.results(frame_item(1, SOS_1))
    other = make_frame(Sos(trigger=3), seq=1)
    assert world.results(frame_item(2, other)) == [
        {"gw_seq": 2, "status": "rejected", "key": "0000a001:1", "reason": "seq_conflict"}
    ]
    assert world.scalar("SELECT raw FROM events") == SOS_1
    rejected = world.rows("SELECT reason, raw, gw_seq, item_type FROM rejected_events")
    assert [tuple(r) for r in rejected] == [("seq_conflict", other, 2, "device_frame")]


def test_bad_mac_is_rejected_and_recorded(world: World) -> None:
    forged = SOS_1[:-1] + bytes((SOS_1[-1] ^ 1,))
    assert world.results(frame_item(5, forged)) == [
        {"gw_seq": 5, "status": "rejected", "key": "0000a001:1", "reason": "bad_mac"}
    ]
    assert world.scalar("SELECT count(*) FROM events") == 0
    assert world.scalar("SELECT raw FROM rejected_events WHERE reason = 'bad_mac'") == forged


def test_frame_signed_with_unregistered_key_id_is_unknown_device(world: World) -> None:
    raw = make_frame(Sos(trigger=1), seq=1, key_id=2)
    assert world.results(frame_item(1, raw))[0]["reason"] == "unknown_device"


def test_unknown_device(world: World) -> None:
    raw = make_frame(Sos(trigger=1), seq=1, device_id=UNKNOWN_DEVICE)
    assert world.results(frame_item(1, raw)) == [
        {"gw_seq": 1, "status": "rejected", "key": "0000a0ff:1", "reason": "unknown_device"}
    ]
    assert world.scalar("SELECT reason FROM rejected_events") == "unknown_device"


def test_every_invalid_vector_frame_gets_its_reason_in_one_batch(world: World) -> None:
    cases: list[dict[str, Any]] = load_vectors("invalid.json")["frames"]
    items = [frame_item(n, bytes.fromhex(case["hex"])) for n, case in enumerate(cases, 1)]
    results = world.results(*items)
    assert [(r["gw_seq"], r["status"], r["reason"]) for r in results] == [
        (n, "rejected", case["error"]) for n, case in enumerate(cases, 1)
    ]
    assert world.scalar("SELECT count(*) FROM rejected_events") == len(cases)
    assert world.scalar("SELECT count(*) FROM events") == 0


@pytest.mark.parametrize(
    ("frame_b64", "reason"),
    [
        ("AQ==", "truncated"),
        ("not base64!", "malformed"),
        ("A" * 400, "oversized"),
    ],
)
def test_undecodable_frame_payloads(world: World, frame_b64: str, reason: str) -> None:
    item = frame_item(1, b"") | {"frame_b64": frame_b64}
    assert world.results(item)[0]["reason"] == reason


def test_one_bad_item_does_not_stop_the_others(world: World) -> None:
    good_2 = make_frame(Boot(fw_major=1, fw_minor=2, fw_patch=3, reset_cause=0), seq=2)
    forged = make_frame(Sos(trigger=1), seq=3, key=bytes(32))
    good_4 = make_frame(
        Heartbeat(battery_pct=80, battery_mv=3900, status=0, queue_depth=0, items=()), seq=4
    )
    results = world.results(
        frame_item(1, SOS_1), frame_item(2, good_2), frame_item(3, forged), frame_item(4, good_4)
    )
    assert [(r["status"], r["reason"]) for r in results] == [
        ("accepted", None),
        ("accepted", None),
        ("rejected", "bad_mac"),
        ("accepted", None),
    ]
    assert world.scalar("SELECT count(*) FROM events") == 3


def test_heartbeat_with_equipment_items_is_stored_as_json(world: World) -> None:
    body = Heartbeat(
        battery_pct=81,
        battery_mv=3912,
        status=0x02,
        queue_depth=3,
        items=(EquipmentNear(0x0000E001, -50, 87), EquipmentNear(0x0000E002, -61, 64)),
    )
    assert world.results(frame_item(1, make_frame(body, seq=1)))[0]["status"] == "accepted"
    [event] = world.events()
    assert event.body["items"] == [
        {"tag_id": 0x0000E001, "rssi_dbm": -50, "battery_pct": 87},
        {"tag_id": 0x0000E002, "rssi_dbm": -61, "battery_pct": 64},
    ]


def test_an_internal_error_on_one_item_rejects_only_that_item(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: the JSON of BOOT bodies cannot be serialised (the bug class
    # that once made a heartbeat fail its whole batch with a 500).
    real_fields_of = verify.fields_of

    def poisoned(value: object) -> dict[str, Any]:
        if isinstance(value, Boot):
            return {"not_json": object()}
        return real_fields_of(value)

    monkeypatch.setattr(verify, "fields_of", poisoned)
    boot = make_frame(Boot(fw_major=1, fw_minor=0, fw_patch=0, reset_cause=0), seq=2)
    results = world.results(
        frame_item(1, SOS_1), frame_item(2, boot), frame_item(3, make_frame(Sos(3), seq=3))
    )
    assert [(r["status"], r["reason"]) for r in results] == [
        ("accepted", None),
        ("rejected", "internal_error"),
        ("accepted", None),
    ]
    assert [e.seq for e in world.events()] == [1, 3]
    raw, detail = world.rows("SELECT raw, detail FROM rejected_events")[0]
    assert raw == boot
    assert detail.startswith("internal error (")
    assert "is not JSON serializable" in detail


def test_device_time_from_the_future_is_rejected_as_clock_skew(world: World) -> None:
    future = int((SERVER_NOW + timedelta(hours=2)).timestamp())
    raw = make_frame(Boot(fw_major=1, fw_minor=0, fw_patch=0, reset_cause=0), seq=1, time_s=future)
    assert world.results(frame_item(1, raw))[0]["reason"] == "clock_skew"


def test_sos_from_the_future_is_accepted_and_flagged(world: World) -> None:
    future = int((SERVER_NOW + timedelta(hours=2)).timestamp())
    raw = make_frame(Sos(trigger=1), seq=1, time_s=future)
    assert world.results(frame_item(1, raw))[0]["status"] == "accepted"
    assert [e.flags for e in world.events()] == [["clock_skew"]]


def test_doubtful_clocks_are_flagged_not_rejected(world: World) -> None:
    unsynced = make_frame(Sos(trigger=1), seq=1, flags=FLAG_CLOCK_UNSYNCED, time_s=5)
    ahead_of_gateway = make_frame(Sos(trigger=1), seq=2, time_s=T0 + 400)
    results = world.results(frame_item(1, unsynced), frame_item(2, ahead_of_gateway))
    assert [r["status"] for r in results] == ["accepted", "accepted"]
    assert [(e.seq, e.flags) for e in world.events()] == [
        (1, ["device_clock_unsynced"]),
        (2, ["clock_skew"]),
    ]


def test_unsynced_gateway_clock_is_flagged(world: World) -> None:
    assert world.results(frame_item(1, SOS_1), clock_synced=False)[0]["status"] == "accepted"
    assert [e.flags for e in world.events()] == [["gateway_clock_unsynced"]]


def test_frame_relayed_from_another_device_topic_is_flagged(world: World) -> None:
    item = frame_item(1, SOS_1, topic="patrol/v1/dev/0000a002/up")
    assert world.results(item)[0]["status"] == "accepted"
    assert [e.flags for e in world.events()] == [["topic_mismatch"]]


def test_wearable_of_another_site_is_flagged(world: World) -> None:
    response = world.ingest(
        make_batch(frame_item(1, SOS_1), gateway_id=OTHER_GATEWAY_ID), api_key=world.other_api_key
    )
    assert response.json()["results"][0]["status"] == "accepted"
    assert [e.flags for e in world.events()] == [["foreign_site"]]


def test_device_time_and_receipt_are_stored_as_utc(world: World) -> None:
    raw = make_frame(Sos(trigger=1), seq=1, time_s=T0, time_ms=250)
    world.results(frame_item(1, raw))
    page = world.client.get(
        "/api/v1/events", headers={"Authorization": "Bearer admin-token-for-tests"}
    ).json()
    assert page["items"][0]["device_time"] == "2026-11-25T04:00:00.250000Z"
    assert page["items"][0]["received_at"] == RECEIVED_AT.isoformat().replace("+00:00", "Z")
    assert page["items"][0]["key"] == "0000a001:1"
    assert DEVICE_KEY.hex() not in str(page)
