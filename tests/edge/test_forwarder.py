"""The forwarder against the REAL cloud app (cloud_api under uvicorn, SQLite)."""

from __future__ import annotations

import pytest
from cloudserver import GATEWAY_ID, start_cloud
from edgetest import FRAME_TIME_S, eviction_frame, heartbeat_frame, wait_until

from edge_agent.forwarder import Forwarder, ForwardOutcome
from edge_agent.inbound import ReceivedFrame, check_up_message
from edge_agent.queue import EdgeQueue, QueueStats, observation
from edge_agent.settings import EdgeSettings
from patrol_protocol.frames import Heartbeat, Kind, encode_body, encode_frame

DEVICE = 0x0000A001
RECEIVED_AT_MS = (FRAME_TIME_S + 30) * 1000


@pytest.fixture
def cloud(tmp_path):
    server = start_cloud(tmp_path)
    yield server
    server.stop()


def settings_for(tmp_path, cloud_url: str, api_key: str, name: str = "edge") -> EdgeSettings:
    return EdgeSettings(
        cloud_url=cloud_url,
        gateway_id=GATEWAY_ID,
        gateway_api_key=api_key,
        queue_path=tmp_path / f"{name}.sqlite3",
        forward_backoff_min_ms=50,
        forward_interval_ms=50,
    )


def received(raw: bytes, device_id: int = DEVICE) -> ReceivedFrame:
    entry = check_up_message(f"patrol/v1/dev/{device_id:08x}/up", raw, RECEIVED_AT_MS)
    assert isinstance(entry, ReceivedFrame)
    return entry


def test_accepted_items_are_deleted_and_stored_by_the_cloud(tmp_path, cloud):
    settings = settings_for(tmp_path, cloud.url, cloud.api_key)
    frames = [heartbeat_frame(DEVICE, seq) for seq in (1, 2, 3)]
    with EdgeQueue(settings.queue_path) as queue:
        queue.append_many([received(raw) for raw in frames])
        forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
        try:
            assert forwarder.forward_once() == ForwardOutcome(sent=3, deleted=3, rejected=0)
            assert forwarder.forward_once() == ForwardOutcome(sent=0, deleted=0, rejected=0)
        finally:
            forwarder.stop()
        assert queue.depth() == 0
    rows = cloud.rows(
        "SELECT device_id, seq, gw_seq, raw, gateway_clock_synced FROM events ORDER BY seq"
    )
    assert [(r[0], r[1], r[2], bytes(r[3]), bool(r[4])) for r in rows] == [
        (DEVICE, seq, seq, raw, True) for seq, raw in zip((1, 2, 3), frames, strict=True)
    ]


def test_duplicates_are_final_too(tmp_path, cloud):
    frames = [heartbeat_frame(DEVICE, seq) for seq in (1, 2)]
    for name in ("first", "second"):  # the second edge queue never saw the cloud's answer
        settings = settings_for(tmp_path, cloud.url, cloud.api_key, name)
        with EdgeQueue(settings.queue_path) as queue:
            queue.append_many([received(raw) for raw in frames])
            forwarder = Forwarder(settings, queue, clock_synced=lambda: False)
            try:
                assert forwarder.forward_once() == ForwardOutcome(sent=2, deleted=2, rejected=0)
            finally:
                forwarder.stop()
            assert queue.depth() == 0
    assert cloud.rows("SELECT count(*) FROM events") == [(2,)]


def test_rejected_items_move_to_dead_letters_with_the_cloud_reason(tmp_path, cloud):
    settings = settings_for(tmp_path, cloud.url, cloud.api_key)
    forged = encode_frame(
        kind=Kind.HEARTBEAT,
        key_id=1,
        flags=0,
        device_id=DEVICE,
        seq=2,
        time_s=FRAME_TIME_S,
        time_ms=0,
        body=encode_body(Heartbeat(battery_pct=50, battery_mv=3700, status=0, queue_depth=0)),
        key=bytes(32),  # not the device's key
    )
    with EdgeQueue(settings.queue_path) as queue:
        queue.append_many(
            [
                received(heartbeat_frame(DEVICE, 1)),
                received(forged),
                received(eviction_frame(DEVICE, 10, 3, 9)),
                observation({"kind": "edge_test", "note": "gateway observation"}, RECEIVED_AT_MS),
            ]
        )
        forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
        try:
            assert forwarder.forward_once() == ForwardOutcome(sent=4, deleted=4, rejected=1)
        finally:
            forwarder.stop()
        assert queue.stats() == QueueStats(depth=0, dead_letters=1, duplicates=0)
        (dead,) = queue.dead_letters()
        assert (dead.source, dead.reason, dead.raw) == ("cloud", "bad_mac", forged)
    assert cloud.rows("SELECT seq FROM events ORDER BY seq") == [(1,), (10,)]
    assert cloud.rows("SELECT reason, gw_seq FROM rejected_events") == [("bad_mac", 2)]


def test_wrong_api_key_keeps_everything(tmp_path, cloud):
    settings = settings_for(tmp_path, cloud.url, "pk_not-the-gateway-key")
    with EdgeQueue(settings.queue_path) as queue:
        queue.append_many([received(heartbeat_frame(DEVICE, 1))])
        forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
        try:
            outcome = forwarder.forward_once()
        finally:
            forwarder.stop()
        assert (outcome.sent, outcome.deleted, outcome.error[:8]) == (1, 0, "HTTP 401")
        assert queue.depth() == 1
    assert cloud.rows("SELECT count(*) FROM events") == [(0,)]


def test_cloud_down_then_up_delivers_everything_once(tmp_path):
    """Transport errors keep the queue; the forwarder's thread retries with backoff."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on, reserved then released
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    down = settings_for(tmp_path, f"http://127.0.0.1:{closed_port}", "pk_whatever")
    frames = [heartbeat_frame(DEVICE, seq) for seq in range(1, 6)]
    with EdgeQueue(down.queue_path) as queue:
        queue.append_many([received(raw) for raw in frames])
        forwarder = Forwarder(down, queue, clock_synced=lambda: True)
        try:
            outcome = forwarder.forward_once()
        finally:
            forwarder.stop()
        assert (outcome.sent, outcome.deleted) == (5, 0)
        assert outcome.error is not None and outcome.error.startswith("transport error")
        assert queue.depth() == 5

        cloud = start_cloud(tmp_path)
        try:
            up = settings_for(tmp_path, cloud.url, cloud.api_key)
            forwarder = Forwarder(up, queue, clock_synced=lambda: True)
            forwarder.start()
            try:
                wait_until(lambda: queue.depth() == 0, what="the queue to drain")
            finally:
                forwarder.stop()
            assert cloud.rows("SELECT seq FROM events ORDER BY seq") == [(s,) for s in range(1, 6)]
        finally:
            cloud.stop()
