"""The durable queue on a real SQLite file."""

import sqlite3

import pytest
from edgetest import eviction_frame, heartbeat_frame

from edge_agent.inbound import ReceivedAdvert, ReceivedFrame, Rejected, check_up_message
from edge_agent.queue import AppendResult, EdgeQueue, QueueStats, observation

DEVICE_A = 0x0000A001
DEVICE_B = 0x0000A002
T0_MS = 1_795_580_000_000


def frame(device_id: int, seq: int, **kwargs) -> ReceivedFrame:
    entry = check_up_message(
        f"patrol/v1/dev/{device_id:08x}/up", heartbeat_frame(device_id, seq, **kwargs), T0_MS + seq
    )
    assert isinstance(entry, ReceivedFrame)
    return entry


def eviction(device_id: int, seq: int, first: int, last: int) -> ReceivedFrame:
    entry = check_up_message(
        f"patrol/v1/dev/{device_id:08x}/up", eviction_frame(device_id, seq, first, last), T0_MS
    )
    assert isinstance(entry, ReceivedFrame)
    return entry


@pytest.fixture
def queue_path(tmp_path):
    return tmp_path / "queue.sqlite3"


@pytest.fixture
def queue(queue_path):
    with EdgeQueue(queue_path) as q:
        yield q


def test_file_is_wal_with_full_synchronous_by_default(queue, queue_path):
    db = sqlite3.connect(queue_path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # synchronous is per connection: read the queue's own setting (2 = FULL)
    assert queue._db.execute("PRAGMA synchronous").fetchone() == (2,)
    db.close()


def test_synchronous_is_configurable(queue_path):
    with EdgeQueue(queue_path, synchronous="NORMAL") as q:
        assert q._db.execute("PRAGMA synchronous").fetchone() == (1,)


def test_group_commit_stores_all_kinds_with_increasing_gw_seq(queue):
    result = queue.append_many(
        [
            frame(DEVICE_A, 1),
            ReceivedAdvert(
                company_id=0xFFFF, payload=b"\x01" * 20, rssi_dbm=-61, received_at_ms=T0_MS
            ),
            observation({"kind": "gateway_started"}, T0_MS),
            frame(DEVICE_A, 2),
        ]
    )
    assert result == AppendResult(stored=4, duplicates=0, dead_lettered=0, acked_seqs={DEVICE_A: 2})
    items = sorted(queue.peek_batch(10), key=lambda i: i.gw_seq)
    assert [(i.gw_seq, i.type, i.seq, i.priority) for i in items] == [
        (1, "device_frame", 1, 3),
        (2, "advert", None, 3),
        (3, "observation", None, 2),
        (4, "device_frame", 2, 3),
    ]
    # sent by priority: the observation (an "other event") before heartbeats and adverts
    assert [i.gw_seq for i in queue.peek_batch(10)] == [3, 1, 2, 4]
    assert items[0].payload == heartbeat_frame(DEVICE_A, 1)
    assert items[0].topic == "patrol/v1/dev/0000a001/up"
    assert (items[1].company_id, items[1].rssi_dbm) == (0xFFFF, -61)
    assert items[2].payload == b'{"kind":"gateway_started"}'
    assert queue.depth() == 4


def test_duplicates_are_counted_and_stored_once(queue):
    queue.append_many([frame(DEVICE_A, 1), frame(DEVICE_A, 2)])
    result = queue.append_many([frame(DEVICE_A, 2), frame(DEVICE_A, 1), frame(DEVICE_A, 3)])
    assert result == AppendResult(stored=1, duplicates=2, dead_lettered=0, acked_seqs={DEVICE_A: 3})
    # the same frame twice inside one group
    result = queue.append_many([frame(DEVICE_A, 4), frame(DEVICE_A, 4)])
    assert result == AppendResult(stored=1, duplicates=1, dead_lettered=0, acked_seqs={DEVICE_A: 4})
    assert [i.seq for i in queue.frames(DEVICE_A)] == [1, 2, 3, 4]
    assert queue.device_duplicates(DEVICE_A) == 3
    assert queue.stats() == QueueStats(depth=4, dead_letters=0, duplicates=3)


def test_duplicate_is_recognised_after_the_item_was_forwarded_and_deleted(queue_path):
    with EdgeQueue(queue_path) as q:
        q.append_many([frame(DEVICE_A, 1), frame(DEVICE_A, 2)])
        assert q.delete([1, 2]) == 2
    with EdgeQueue(queue_path) as q:  # and after a restart
        result = q.append_many([frame(DEVICE_A, 2)])
        assert result == AppendResult(
            stored=0, duplicates=1, dead_lettered=0, acked_seqs={DEVICE_A: 2}
        )
        assert q.depth() == 0


def test_same_seq_with_other_bytes_is_a_seq_conflict(queue):
    queue.append_many([frame(DEVICE_A, 1, battery_pct=80)])
    result = queue.append_many([frame(DEVICE_A, 1, battery_pct=79)])
    assert result == AppendResult(stored=0, duplicates=0, dead_lettered=1, acked_seqs={DEVICE_A: 1})
    (dead,) = queue.dead_letters()
    assert (dead.source, dead.reason, dead.raw) == (
        "ingest",
        "seq_conflict",
        heartbeat_frame(DEVICE_A, 1, battery_pct=79),
    )
    assert dead.detail == "0000a001:1 differs from queued"


def test_unique_device_seq_constraint_holds_in_the_file(queue, queue_path):
    queue.append_many([frame(DEVICE_A, 1)])
    db = sqlite3.connect(queue_path)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        db.execute(
            "INSERT INTO items (type, payload, received_at_ms, device_id, seq) "
            "VALUES ('device_frame', x'00', 0, ?, 1)",
            (DEVICE_A,),
        )
    db.close()


def test_gaps_and_evictions_per_device(queue):
    acks = [queue.append_many([frame(DEVICE_A, s)]).acked_seqs[DEVICE_A] for s in (1, 2, 4)]
    assert acks == [1, 2, 2]
    assert queue.append_many([frame(DEVICE_A, 3)]).acked_seqs == {DEVICE_A: 4}
    assert queue.append_many([eviction(DEVICE_A, 10, 5, 9)]).acked_seqs == {DEVICE_A: 10}
    # a device first seen at seq 41: baseline 40
    assert queue.append_many([frame(DEVICE_B, 41)]).acked_seqs == {DEVICE_B: 41}
    assert queue.acked_seq(DEVICE_A) == 10
    assert queue.acked_seq(0x0000A003) is None


def test_device_state_survives_reopen(queue_path):
    with EdgeQueue(queue_path) as q:
        q.append_many([frame(DEVICE_A, 1), frame(DEVICE_A, 2), frame(DEVICE_A, 4)])
        q.append_many([eviction(DEVICE_A, 12, 6, 11)])
    with EdgeQueue(queue_path) as q:
        assert q.acked_seq(DEVICE_A) == 2
        assert q.committed_ranges(DEVICE_A) == [(1, 2), (4, 4), (12, 12)]
        assert q.append_many([frame(DEVICE_A, 3)]).acked_seqs == {DEVICE_A: 4}
        assert q.append_many([frame(DEVICE_A, 5)]).acked_seqs == {DEVICE_A: 12}


def test_gw_seq_is_never_reused_after_delete_and_reopen(queue_path):
    with EdgeQueue(queue_path) as q:
        q.append_many([frame(DEVICE_A, 1), frame(DEVICE_A, 2), frame(DEVICE_A, 3)])
        assert q.delete([1, 2, 3]) == 3
    with EdgeQueue(queue_path) as q:
        q.append_many([frame(DEVICE_A, 4)])
        assert [i.gw_seq for i in q.peek_batch(10)] == [4]


def test_peek_is_oldest_first_and_bounded(queue):
    queue.append_many([frame(DEVICE_A, s) for s in range(1, 11)])
    assert [i.gw_seq for i in queue.peek_batch(3)] == [1, 2, 3]
    frame_bytes = len(heartbeat_frame(DEVICE_A, 1))
    assert [i.gw_seq for i in queue.peek_batch(10, max_payload_bytes=frame_bytes * 4)] == [
        1,
        2,
        3,
        4,
    ]
    # one item larger than the budget still goes, so it can never wedge the queue
    assert [i.gw_seq for i in queue.peek_batch(10, max_payload_bytes=1)] == [1]
    assert queue.oldest_received_at_ms() == T0_MS + 1


def test_delete_copies_cloud_rejections_to_dead_letters(queue):
    queue.append_many([frame(DEVICE_A, s) for s in (1, 2, 3)])
    assert queue.delete([1, 3], rejected={2: "bad_mac"}) == 3
    assert queue.depth() == 0
    (dead,) = queue.dead_letters()
    assert (dead.source, dead.reason, dead.raw, dead.topic) == (
        "cloud",
        "bad_mac",
        heartbeat_frame(DEVICE_A, 2),
        "patrol/v1/dev/0000a001/up",
    )
    # deleting what is gone already is harmless (a retried settle)
    assert queue.delete([1, 2, 3]) == 0


def test_rejected_input_goes_to_dead_letters_with_reason_and_bounded_raw(queue):
    huge = b"\xee" * 5000
    result = queue.append_many(
        [
            Rejected(
                "truncated", b"\x01\x03", "patrol/v1/dev/0000a001/up", T0_MS, "frame is short"
            ),
            Rejected("oversized", huge, "patrol/v1/dev/0000a001/up", T0_MS + 1, "too big"),
            frame(DEVICE_A, 1),
        ]
    )
    assert result == AppendResult(stored=1, duplicates=0, dead_lettered=2, acked_seqs={DEVICE_A: 1})
    first, second = queue.dead_letters()
    assert (first.reason, first.raw, first.raw_len, first.received_at_ms) == (
        "truncated",
        b"\x01\x03",
        2,
        T0_MS,
    )
    assert (second.reason, second.raw, second.raw_len) == ("oversized", huge[:1024], 5000)
    assert queue.stats() == QueueStats(depth=1, dead_letters=2, duplicates=0)


def test_failed_group_commit_changes_nothing(queue, queue_path):
    queue.append_many([frame(DEVICE_A, 1)])
    blocker = sqlite3.connect(queue_path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock
    queue._db.execute("PRAGMA busy_timeout=0")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        queue.append_many([frame(DEVICE_A, 2)])
    blocker.rollback()
    blocker.close()
    # in-memory contiguity was not advanced by the failed commit
    assert queue.acked_seq(DEVICE_A) == 1
    assert queue.append_many([frame(DEVICE_A, 2)]).stored == 1
    assert queue.acked_seq(DEVICE_A) == 2
