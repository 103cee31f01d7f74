"""Forwarder lanes, priorities, 413 splitting, 422 parking, eviction records -- against the
REAL cloud app (cloud_api under uvicorn, SQLite)."""

from __future__ import annotations

import json

import pytest
from cloudserver import GATEWAY_ID, start_cloud
from edgetest import FRAME_TIME_S, heartbeat_frame, wait_until
from test_priorities import boot, heartbeat, sos

from edge_agent.forwarder import Forwarder, ForwardOutcome
from edge_agent.queue import ITEM_OVERHEAD_BYTES, EdgeQueue, observation
from edge_agent.settings import EdgeSettings

DEVICE = 0x0000A001
RECEIVED_AT_MS = (FRAME_TIME_S + 30) * 1000
BACKLOG = 5_000


@pytest.fixture
def cloud(tmp_path):
    server = start_cloud(tmp_path)
    yield server
    server.stop()


def settings_for(tmp_path, cloud, **overrides) -> EdgeSettings:
    return EdgeSettings(
        cloud_url=cloud.url,
        gateway_id=GATEWAY_ID,
        gateway_api_key=cloud.api_key,
        queue_path=tmp_path / "edge.sqlite3",
        forward_backoff_min_ms=50,
        forward_interval_ms=50,
        **overrides,
    )


def nested(depth: int) -> object:
    return json.loads("[" * depth + "]" * depth)


def test_backlog_lane_sends_by_priority_oldest_first(tmp_path, cloud):
    settings = settings_for(tmp_path, cloud, forward_batch_items=2)
    with EdgeQueue(settings.queue_path) as queue:
        # gw_seq 1..6: heartbeat, heartbeat, boot, heartbeat, boot, SOS
        queue.append_many([heartbeat(1), heartbeat(2), boot(3), heartbeat(4), boot(5), sos(6)])
        forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
        try:
            remaining = []
            for expected in (2, 2, 1):
                assert forwarder.forward_once("backlog").deleted == expected
                remaining.append(sorted(i.gw_seq for i in queue.peek_batch(10)))
            assert forwarder.forward_once("backlog") == ForwardOutcome(0, 0, 0)
            assert forwarder.forward_once("urgent") == ForwardOutcome(1, 1, 0)
        finally:
            forwarder.stop()
    # boots (events) first, then heartbeats oldest first; the SOS only in its own lane
    assert remaining == [[1, 2, 4, 6], [4, 6], [6]]
    assert cloud.rows("SELECT seq FROM events ORDER BY id") == [(3,), (5,), (1,), (2,), (4,), (6,)]


def test_sos_overtakes_a_5000_item_backlog(tmp_path, cloud):
    settings = settings_for(tmp_path, cloud)
    with EdgeQueue(settings.queue_path) as queue:
        queue.append_many([heartbeat(seq) for seq in range(1, BACKLOG + 1)])
        forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
        forwarder.start()
        try:
            wait_until(lambda: queue.depth() < BACKLOG, what="the backlog to start draining")
            queue.append_many([sos(BACKLOG + 1)])
            forwarder.wake()
            wait_until(
                lambda: cloud.rows("SELECT count(*) FROM events WHERE kind = 4") == [(1,)],
                timeout_s=20,
                what="the SOS to reach the cloud",
            )
            wait_until(lambda: queue.depth() == 0, timeout_s=60, what="the backlog to drain")
        finally:
            forwarder.stop()
    ((sos_id,),) = cloud.rows("SELECT id FROM events WHERE kind = 4")
    ((before,),) = cloud.rows("SELECT count(*) FROM events WHERE id < :sos_id", sos_id=sos_id)
    # the SOS waited for at most the backlog batches already in flight, never the backlog
    assert before < 1_000
    assert cloud.rows("SELECT count(*) FROM events") == [(BACKLOG + 1,)]


def test_413_splits_the_batch_until_the_cloud_takes_it(tmp_path):
    cloud = start_cloud(tmp_path, max_batch_bytes=4_000)
    try:
        settings = settings_for(tmp_path, cloud, forward_gzip=False)
        with EdgeQueue(settings.queue_path) as queue:
            queue.append_many([heartbeat(seq) for seq in range(1, 31)])
            forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
            try:
                outcomes = [forwarder.forward_once("backlog") for _ in range(8)]
            finally:
                forwarder.stop()
            assert [(o.sent, o.deleted, o.split) for o in outcomes] == [
                (30, 0, True),  # 413: halve
                (15, 15, False),  # fits; the next batch may grow again, but only to 30
                (15, 15, False),
                (0, 0, False),
                (0, 0, False),
                (0, 0, False),
                (0, 0, False),
                (0, 0, False),
            ]
            assert outcomes[0].error is not None and outcomes[0].error.startswith("HTTP 413")
            assert queue.depth() == 0 and queue.dead_letters() == []
        assert cloud.rows("SELECT count(*) FROM events") == [(30,)]
    finally:
        cloud.stop()


def test_a_single_item_the_cloud_refuses_as_too_large_is_parked(tmp_path):
    cloud = start_cloud(tmp_path, max_batch_bytes=300)
    try:
        settings = settings_for(tmp_path, cloud, forward_gzip=False)
        with EdgeQueue(settings.queue_path) as queue:
            queue.append_many([heartbeat(1), heartbeat(2)])
            forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
            try:
                outcomes = [forwarder.forward_once() for _ in range(4)]
            finally:
                forwarder.stop()
            assert [(o.sent, o.parked, o.split) for o in outcomes] == [
                (2, 0, True),
                (1, 1, True),
                (1, 1, True),
                (0, 0, False),
            ]
            assert [(d.source, d.reason, d.raw) for d in queue.dead_letters()] == [
                ("cloud", "cloud_http_413", heartbeat_frame(DEVICE, 1)),
                ("cloud", "cloud_http_413", heartbeat_frame(DEVICE, 2)),
            ]
            assert queue.dead_letters()[0].detail.startswith("gw_seq 1 (device_frame) HTTP 413")
            assert forwarder.parked == 2
    finally:
        cloud.stop()


def test_a_batch_the_cloud_cannot_parse_is_bisected_and_only_the_culprit_parked(tmp_path, cloud):
    settings = settings_for(tmp_path, cloud)
    too_deep = observation({"kind": "edge_test", "n": nested(210)}, RECEIVED_AT_MS)
    with EdgeQueue(settings.queue_path) as queue:
        queue.append_many([boot(1), too_deep, boot(2), boot(3)])  # gw_seq 1..4, all events
        forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
        try:
            outcomes = [forwarder.forward_once() for _ in range(8)]
        finally:
            forwarder.stop()
        assert [(o.sent, o.deleted, o.parked, o.split) for o in outcomes] == [
            (4, 0, 0, True),  # 422 for the whole batch: halve
            (2, 0, 0, True),  # [boot 1, too_deep]: halve again
            (1, 1, 0, False),  # boot 1 taken: batches may grow back to 2
            (2, 0, 0, True),  # [too_deep, boot 2]: halve
            (1, 0, 1, True),  # too_deep alone: parked
            (1, 1, 0, False),  # boot 2
            (1, 1, 0, False),  # boot 3
            (0, 0, 0, False),
        ]
        (dead,) = queue.dead_letters()
        assert (dead.source, dead.reason, dead.raw) == (
            "cloud",
            "cloud_http_422",
            too_deep.body_json,
        )
        assert "recursion limit exceeded" in dead.detail
    assert cloud.rows("SELECT seq FROM events ORDER BY seq") == [(1,), (2,), (3,)]


def test_an_item_that_cannot_be_put_in_a_batch_is_parked_as_unsendable(tmp_path, cloud):
    settings = settings_for(tmp_path, cloud)
    bad = observation({"kind": "edge_test", "n": nested(300)}, RECEIVED_AT_MS)
    with EdgeQueue(settings.queue_path) as queue:
        queue.append_many([bad, boot(1)])
        forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
        try:
            assert forwarder.forward_once() == ForwardOutcome(0, 0, 0, parked=1, split=True)
            assert forwarder.forward_once() == ForwardOutcome(1, 1, 0)
        finally:
            forwarder.stop()
        (dead,) = queue.dead_letters()
        assert (dead.reason, dead.raw) == ("unsendable", bad.body_json)


def test_eviction_record_reaches_the_cloud(tmp_path, cloud):
    settings = settings_for(tmp_path, cloud)
    frame_cost = len(heartbeat_frame(DEVICE, 1)) + ITEM_OVERHEAD_BYTES
    with EdgeQueue(settings.queue_path, budget_bytes=frame_cost * 10) as queue:
        for seq in range(1, 21):
            queue.append_many([heartbeat(seq)])
        evicted = queue.stats().evicted
        assert evicted > 0
        forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
        try:
            while queue.depth():
                assert forwarder.forward_once().error is None
        finally:
            forwarder.stop()
    records = [
        row[0] if isinstance(row[0], dict) else json.loads(row[0])
        for row in cloud.rows(
            "SELECT observation FROM gateway_observations WHERE kind = 'evicted' ORDER BY gw_seq"
        )
    ]
    assert sum(r["count"] for r in records) == evicted
    assert {r["reason"] for r in records} == {"disk_budget"}
    stored = [s for (s,) in cloud.rows("SELECT seq FROM events ORDER BY seq")]
    assert len(stored) + evicted == 20
    assert stored == list(range(21 - len(stored), 21))  # the newest heartbeats were kept
