"""kill -9 during a stream WITH the real cloud: every acknowledged event reaches it exactly once.

The agent runs as a subprocess (``python -m edge_agent run``) on the private
Mosquitto, forwarding to the REAL cloud app (uvicorn, SQLite) in small batches,
and is killed with SIGKILL at pseudo-random points (seeded, printed) while two
wearables stream: some kills land between a commit and its PUBACK, some between
the cloud's answer and the queue's delete. After the last restart every frame is
acknowledged to its wearable, the queue drains, and the cloud holds each
(device, seq) exactly once, byte for byte; resent batches were counted there as
duplicates, never stored twice.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from cloudserver import GATEWAY_ID, start_cloud
from edgetest import AgentProcess, heartbeat_frame, wait_until

from edge_agent.queue import EdgeQueue

STREAM_FRAMES = 150
"""Per wearable."""
PUBLISH_INTERVAL_S = 0.01
KILLS = 5
SEED = 20261125


@pytest.fixture
def cloud(tmp_path):
    (tmp_path / "cloud").mkdir()
    server = start_cloud(tmp_path / "cloud")
    yield server
    server.stop()


def test_sigkill_at_random_points_every_acked_event_reaches_the_cloud_once(
    agent_env, wearables, cloud
):
    env = agent_env | {
        "PATROL_EDGE_CLOUD_URL": cloud.url,
        "PATROL_EDGE_GATEWAY_ID": GATEWAY_ID,
        "PATROL_EDGE_GATEWAY_API_KEY": cloud.api_key,
        "PATROL_EDGE_FORWARD_BATCH_ITEMS": "25",
        "PATROL_EDGE_FORWARD_INTERVAL_MS": "20",
        "PATROL_EDGE_FORWARD_BACKOFF_MIN_MS": "50",
        "PATROL_EDGE_FORWARD_BACKOFF_MAX_MS": "200",
    }
    rng = random.Random(SEED)
    delays_s = [rng.uniform(0.05, 0.8) for _ in range(KILLS)]
    print(f"seed {SEED}: SIGKILL after {[round(d, 3) for d in delays_s]} s")
    streamers = list(wearables.values())[:2]
    frames = {
        w.device_id: [heartbeat_frame(w.device_id, seq) for seq in range(1, STREAM_FRAMES + 1)]
        for w in streamers
    }

    def publish_stream(wearable) -> None:  # type: ignore[no-untyped-def]
        for raw in frames[wearable.device_id]:
            wearable.publish(raw)
            time.sleep(PUBLISH_INTERVAL_S)

    publishers = [threading.Thread(target=publish_stream, args=(w,)) for w in streamers]
    started = False
    for delay_s in delays_s:
        agent = AgentProcess(env)
        try:
            agent.wait_for("subscribed to patrol/v1/dev/+/up")
            if not started:
                for thread in publishers:
                    thread.start()
                started = True
            threading.Event().wait(delay_s)
        finally:
            agent.kill_hard()
    for thread in publishers:
        thread.join(120)
    agent = AgentProcess(env)
    queue_path = Path(env["PATROL_EDGE_QUEUE_PATH"])
    try:
        agent.wait_for("subscribed to patrol/v1/dev/+/up")
        for wearable in streamers:
            wearable.wait_ack(STREAM_FRAMES, timeout_s=120)

        def drained() -> bool:
            with EdgeQueue(queue_path, read_only=True) as queue:
                return all(queue.frames(w.device_id) == [] for w in streamers)

        wait_until(drained, 120, what="the queue to drain to the cloud")
    finally:
        assert agent.stop() == 0
    for wearable in streamers:
        rows = cloud.rows(
            "SELECT seq, raw FROM events WHERE device_id = :d ORDER BY seq", d=wearable.device_id
        )
        assert [seq for seq, _raw in rows] == list(range(1, STREAM_FRAMES + 1))
        assert [bytes(raw) for _seq, raw in rows] == frames[wearable.device_id]
    with EdgeQueue(queue_path, read_only=True) as queue:
        assert queue.dead_letters() == []
