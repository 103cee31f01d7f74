"""Retry-After from the REAL cloud: 429 (per-gateway rate / concurrency) and 503 (store locked).

The cloud app (cloud_api under uvicorn, SQLite) is configured with a tight
per-gateway batch rate; the forwarder, whose own backoff is set to a few
milliseconds, must wait what the cloud's ``Retry-After`` says, and everything
still arrives exactly once. A write lock held on the cloud's database makes
ingest answer 503 with ``Retry-After``; the batch stays queued and goes through
once the lock is gone.
"""

from __future__ import annotations

import base64
import gzip
import json
import sqlite3
import uuid
from datetime import UTC, datetime

import httpx
from cloudserver import GATEWAY_ID, WEARABLES, start_cloud
from edgetest import FRAME_TIME_S, heartbeat_frame, wait_until

import cloud_api.db
from cloud_api.api.routes.ingest import GatewayAdmission
from edge_agent.forwarder import Forwarder
from edge_agent.inbound import ReceivedFrame, check_up_message
from edge_agent.queue import EdgeQueue
from edge_agent.settings import EdgeSettings

RECEIVED_AT_MS = (FRAME_TIME_S + 30) * 1000
FRAMES_PER_DEVICE = 20
BATCH_ITEMS = 10
BATCHES = len(WEARABLES) * FRAMES_PER_DEVICE // BATCH_ITEMS


def received(raw: bytes, device_id: int) -> ReceivedFrame:
    entry = check_up_message(f"patrol/v1/dev/{device_id:08x}/up", raw, RECEIVED_AT_MS)
    assert isinstance(entry, ReceivedFrame)
    return entry


def frames() -> list[tuple[int, int, bytes]]:
    return [
        (device, seq, heartbeat_frame(device, seq))
        for device in WEARABLES
        for seq in range(1, FRAMES_PER_DEVICE + 1)
    ]


def edge_settings(tmp_path, cloud) -> EdgeSettings:  # type: ignore[no-untyped-def]
    return EdgeSettings(
        cloud_url=cloud.url,
        gateway_id=GATEWAY_ID,
        gateway_api_key=cloud.api_key,
        queue_path=tmp_path / "edge.sqlite3",
        forward_batch_items=BATCH_ITEMS,
        forward_backoff_min_ms=2,  # our own backoff alone would hammer the cloud
        forward_backoff_max_ms=4,
        forward_interval_ms=20,
    )


def batch_body(seq: int) -> bytes:
    device = WEARABLES[0]
    raw = heartbeat_frame(device, seq)
    body = {
        "v": 1,
        "gateway_id": GATEWAY_ID,
        "batch_id": str(uuid.uuid4()),
        "sent_at": datetime.now(UTC).isoformat(),
        "clock_synced": True,
        "items": [
            {
                "type": "device_frame",
                "gw_seq": seq,
                "received_at": datetime.now(UTC).isoformat(),
                "topic": f"patrol/v1/dev/{device:08x}/up",
                "frame_b64": base64.b64encode(raw).decode(),
            }
        ],
    }
    return gzip.compress(json.dumps(body).encode())


def test_rate_limited_cloud_answers_429_with_retry_after(tmp_path):
    cloud = start_cloud(tmp_path, ingest_gateway_batches_per_s=0.5, ingest_gateway_burst=1)
    try:
        headers = {
            "Authorization": f"Bearer {cloud.api_key}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        with httpx.Client(base_url=cloud.url, headers=headers) as client:
            first = client.post("/api/v1/ingest", content=batch_body(1))
            second = client.post("/api/v1/ingest", content=batch_body(2))
        assert first.status_code == 200
        assert second.status_code == 429
        assert second.headers["Retry-After"] == "2"  # one token at 0.5/s
        assert second.headers["Content-Type"].startswith("application/problem+json")
        assert "batches/s" in second.json()["detail"]
        # refused before the body was read: nothing of batch 2 is stored or recorded
        assert cloud.rows("SELECT seq FROM events") == [(1,)]
        assert cloud.rows("SELECT count(*) FROM rejected_events") == [(0,)]
    finally:
        cloud.stop()


def test_forwarder_honours_429_retry_after_and_delivers_exactly_once(tmp_path):
    cloud = start_cloud(tmp_path, ingest_gateway_batches_per_s=2.0, ingest_gateway_burst=1)
    try:
        settings = edge_settings(tmp_path, cloud)
        stream = frames()
        with EdgeQueue(settings.queue_path) as queue:
            queue.append_many([received(raw, device) for device, _seq, raw in stream])
            forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
            forwarder.start()
            try:
                wait_until(lambda: queue.depth() == 0, 120, what="the backlog to drain")
            finally:
                forwarder.stop()
            assert queue.dead_letters() == []
        # Each 429 said "Retry-After: 1"; waiting it refills 2 tokens, so an honouring
        # forwarder is refused at most once per batch. One that retried after its own
        # 2-4 ms backoff would have been refused hundreds of times.
        assert 1 <= forwarder.throttled <= BATCHES
        assert forwarder.last_retry_after_s == 1.0
        assert (forwarder.batches_ok, forwarder.forwarded) == (BATCHES, len(stream))
        rows = cloud.rows("SELECT device_id, seq, raw FROM events ORDER BY device_id, seq")
        assert [(d, s, bytes(r)) for d, s, r in rows] == stream  # each exactly once
    finally:
        cloud.stop()


def test_locked_cloud_database_answers_503_and_nothing_is_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(cloud_api.db, "SQLITE_BUSY_TIMEOUT_S", 1)  # fail fast while locked
    cloud = start_cloud(tmp_path)
    try:
        settings = edge_settings(tmp_path, cloud)
        stream = frames()[:BATCH_ITEMS]
        locker = sqlite3.connect(tmp_path / "cloud.db", isolation_level=None)
        with EdgeQueue(settings.queue_path) as queue:
            queue.append_many([received(raw, device) for device, _seq, raw in stream])
            forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
            try:
                locker.execute("BEGIN IMMEDIATE")  # the store is unavailable for writes
                outcome = forwarder.forward_once()
                assert outcome.error is not None and outcome.error.startswith("HTTP 503")
                assert outcome.retry_after_s == 5.0
                assert forwarder.throttled == 1
                assert queue.depth() == len(stream)  # kept
                locker.execute("ROLLBACK")
                outcome = forwarder.forward_once()
                assert (outcome.error, outcome.deleted) == (None, len(stream))
            finally:
                forwarder.stop()
                locker.close()
        rows = cloud.rows("SELECT device_id, seq, raw FROM events ORDER BY device_id, seq")
        assert [(d, s, bytes(r)) for d, s, r in rows] == stream
    finally:
        cloud.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_admission_token_bucket_and_concurrency_cap():
    clock = FakeClock()
    admission = GatewayAdmission(
        batches_per_s=4.0, burst=2, max_concurrent=2, busy_retry_after_s=3, clock_s=clock
    )
    assert admission.admit("gw") is None
    assert admission.admit("gw") is None
    refused = admission.admit("gw")  # two in progress: the cap answers first
    assert refused is not None and refused[0] == 3
    admission.release("gw")
    admission.release("gw")
    refused = admission.admit("gw")  # burst used up, no time passed
    assert refused is not None and refused[0] == 1 and "4 batches/s" in refused[1]
    assert admission.admit("other-gw") is None  # buckets are per gateway
    clock.now_s += 0.25  # one token at 4/s
    assert admission.admit("gw") is None
    admission.release("gw")
    assert admission.admit("gw") is not None


def test_no_limits_admit_everything():
    admission = GatewayAdmission(
        batches_per_s=None, burst=1, max_concurrent=None, busy_retry_after_s=1
    )
    assert all(admission.admit("gw") is None for _ in range(1000))
