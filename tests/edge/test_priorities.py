"""Queue priorities, the disk budget's eviction policy and the integrity check at open."""

import json
import sqlite3

from edgetest import DEVICE_KEY, FRAME_TIME_S, heartbeat_frame

from edge_agent.inbound import ReceivedAdvert, ReceivedFrame, check_up_message
from edge_agent.queue import ITEM_OVERHEAD_BYTES, EdgeQueue, QueuedItem, observation
from patrol_protocol.frames import Boot, Kind, NfcScan, Sos, encode_body, encode_frame

DEVICE = 0x0000A001
T0_MS = 1_795_580_000_000
CLOCK_MS = T0_MS + 99_000


def signed(kind: Kind, body: bytes, seq: int) -> ReceivedFrame:
    raw = encode_frame(
        kind=kind,
        key_id=1,
        flags=0,
        device_id=DEVICE,
        seq=seq,
        time_s=FRAME_TIME_S + seq,
        time_ms=0,
        body=body,
        key=DEVICE_KEY,
    )
    entry = check_up_message(f"patrol/v1/dev/{DEVICE:08x}/up", raw, T0_MS + seq)
    assert isinstance(entry, ReceivedFrame)
    return entry


def heartbeat(seq: int) -> ReceivedFrame:
    entry = check_up_message(
        f"patrol/v1/dev/{DEVICE:08x}/up", heartbeat_frame(DEVICE, seq), T0_MS + seq
    )
    assert isinstance(entry, ReceivedFrame)
    return entry


def sos(seq: int) -> ReceivedFrame:
    return signed(Kind.SOS, encode_body(Sos(trigger=1)), seq)


def scan(seq: int) -> ReceivedFrame:
    body = encode_body(
        NfcScan(tag_type=2, uid=b"\x04\x01\x02\x03\x04\x05\x06", picc_enc=None, sdmmac=None)
    )
    return signed(Kind.NFC_SCAN, body, seq)


def boot(seq: int) -> ReceivedFrame:
    return signed(
        Kind.BOOT, encode_body(Boot(fw_major=1, fw_minor=0, fw_patch=0, reset_cause=0)), seq
    )


def advert(n: int) -> ReceivedAdvert:
    return ReceivedAdvert(
        company_id=0xFFFF, payload=bytes([n]) * 20, rssi_dbm=-60, received_at_ms=T0_MS
    )


def cost(item: ReceivedFrame | ReceivedAdvert) -> int:
    raw = item.raw if isinstance(item, ReceivedFrame) else item.payload
    return len(raw) + ITEM_OVERHEAD_BYTES


def kinds(items: list[QueuedItem]) -> list[tuple[int, str, int | None]]:
    return [(i.gw_seq, i.type, i.seq) for i in items]


def test_peek_sends_sos_then_scans_then_events_then_bulk_oldest_first(tmp_path):
    with EdgeQueue(tmp_path / "q.sqlite3") as q:
        result = q.append_many(
            [
                heartbeat(1),
                advert(1),
                scan(2),
                boot(3),
                sos(4),
                scan(5),
                observation({"kind": "ble_tag_away", "tag": "equip:0000e001"}, T0_MS),
                observation({"kind": "ble_tag_health", "tag": "equip:0000e001"}, T0_MS),
                sos(6),
            ]
        )
        assert (result.stored, result.urgent) == (9, 2)
        assert [(i.gw_seq, i.priority) for i in q.peek_batch(20)] == [
            (5, 0),
            (9, 0),
            (3, 1),
            (6, 1),
            (4, 2),
            (7, 2),
            (1, 3),
            (2, 3),
            (8, 3),
        ]
        assert [i.gw_seq for i in q.peek_batch(20, lane="urgent")] == [5, 9]
        assert [i.gw_seq for i in q.peek_batch(3, lane="backlog")] == [3, 6, 4]


def test_budget_evicts_heartbeats_first_then_events_then_scans_never_sos(tmp_path):
    hb = [heartbeat(s) for s in range(1, 5)]  # gw_seq 1..4
    budget = sum(cost(e) for e in hb) + cost(scan(10)) * 2 + cost(boot(12))
    clock = iter(range(CLOCK_MS, CLOCK_MS + 100))
    with EdgeQueue(tmp_path / "q.sqlite3", budget_bytes=budget, clock_ms=lambda: next(clock)) as q:
        assert q.append_many(hb).evicted == 0
        assert q.append_many([scan(10), scan(11), boot(12)]).evicted == 0  # gw_seq 5, 6, 7
        assert q.used_bytes() == budget
        # one SOS more: the oldest heartbeats make room for it and for the record
        result = q.append_many([sos(13)])  # gw_seq 8, record gw_seq 9
        assert (result.stored, result.evicted, result.urgent) == (1, 3, 2)
        assert kinds(q.peek_batch(20)) == [
            (8, "device_frame", 13),
            (9, "observation", None),
            (5, "device_frame", 10),
            (6, "device_frame", 11),
            (7, "device_frame", 12),
            (3, "device_frame", 3),  # heartbeats 2 and 4 went first (downsampling), then 1
        ]
        record = json.loads(q.peek_batch(2)[1].payload)
        assert record == {
            "kind": "evicted",
            "first_gw_seq": 1,
            "last_gw_seq": 4,
            "count": 3,
            "reason": "disk_budget",
        }
        # two SOS more: the last heartbeat, then the boot event, then the oldest scan
        result = q.append_many([sos(14), sos(15)])  # gw_seq 10, 11, record 12
        assert result.evicted == 3
        remaining = q.peek_batch(20)
        assert [(i.gw_seq, i.priority) for i in remaining] == [
            (8, 0),
            (9, 0),
            (10, 0),
            (11, 0),
            (12, 0),
            (6, 1),
        ]
        assert json.loads(remaining[4].payload) == {
            "kind": "evicted",
            "first_gw_seq": 3,
            "last_gw_seq": 7,
            "count": 3,
            "reason": "disk_budget",
        }
        assert q.used_bytes() <= budget
        assert q.stats().evicted == 6
        # evicted frames count as committed: a redelivery is a duplicate, the ack stands
        again = q.append_many([heartbeat(2)])
        assert (again.stored, again.duplicates, again.acked_seqs) == (0, 1, {DEVICE: 4})


def test_sos_is_kept_beyond_the_budget(tmp_path):
    budget = cost(sos(1)) * 2
    with EdgeQueue(tmp_path / "q.sqlite3", budget_bytes=budget) as q:
        q.append_many([sos(s) for s in range(1, 6)])
        assert [i.seq for i in q.peek_batch(10)] == [1, 2, 3, 4, 5]
        assert q.stats().evicted == 0
        assert q.used_bytes() == cost(sos(1)) * 5


def test_used_bytes_follow_deletes_and_reopen(tmp_path):
    path = tmp_path / "q.sqlite3"
    with EdgeQueue(path) as q:
        q.append_many([heartbeat(1), scan(2), advert(3)])
        assert q.used_bytes() == cost(heartbeat(1)) + cost(scan(2)) + cost(advert(3))
        assert q.delete([2]) == 1
        assert q.used_bytes() == cost(heartbeat(1)) + cost(advert(3))
    with EdgeQueue(path) as q:
        assert q.used_bytes() == cost(heartbeat(1)) + cost(advert(3))


def _corrupt_page(path, page: int) -> None:
    with path.open("r+b") as f:
        f.seek(4096 * page)
        f.write(b"\xa5" * 4096)


def test_corrupt_file_is_moved_aside_and_reported(tmp_path, caplog):
    path = tmp_path / "q.sqlite3"
    with EdgeQueue(path) as q:
        q.append_many([heartbeat(s) for s in range(1, 400)])
    size = path.stat().st_size
    assert size > 4096 * 4
    _corrupt_page(path, 2)
    with EdgeQueue(path, clock_ms=lambda: CLOCK_MS) as q:
        assert q.corruption is not None and q.corruption.startswith("DatabaseError(")
        assert q.moved_to is not None and q.moved_to.name.startswith("q.sqlite3.corrupt-")
        assert q.moved_to.stat().st_size == size  # kept for a technician, byte for byte
        (item,) = q.peek_batch(10)
        body = json.loads(item.payload)
        assert (item.priority, body["kind"], body["moved_to"]) == (
            0,
            "queue_corrupt",
            q.moved_to.name,
        )
        assert q.acked_seq(DEVICE) is None  # a fresh queue
    assert "QUEUE FILE CORRUPT" in caplog.text
    with EdgeQueue(path) as q:  # the new file is sound: no second report
        assert q.corruption is None and q.depth() == 1


def test_file_that_is_not_a_database_is_moved_aside(tmp_path):
    path = tmp_path / "q.sqlite3"
    path.write_bytes(b"this is not SQLite at all" * 200)
    with EdgeQueue(path) as q:
        assert q.corruption == "DatabaseError('file is not a database')"
        assert q.depth() == 1


def test_version_1_file_is_migrated_with_priorities(tmp_path):
    path = tmp_path / "q.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE items (gw_seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, "
        "payload BLOB NOT NULL, received_at_ms INTEGER NOT NULL, topic TEXT, device_id INTEGER, "
        "seq INTEGER, company_id INTEGER, rssi_dbm INTEGER, UNIQUE (device_id, seq));"
        "PRAGMA user_version=1;"
    )
    for e in (heartbeat(1), sos(2), scan(3), boot(4)):
        db.execute(
            "INSERT INTO items (type, payload, received_at_ms, topic, device_id, seq) "
            "VALUES ('device_frame', ?, 0, ?, ?, ?)",
            (e.raw, e.topic, DEVICE, e.seq),
        )
    db.commit()
    db.close()
    with EdgeQueue(path) as q:
        assert [(i.seq, i.priority) for i in q.peek_batch(10)] == [(2, 0), (3, 1), (4, 2), (1, 3)]
