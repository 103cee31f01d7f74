"""The ``patrol-edge`` CLI as a real process."""

from __future__ import annotations

import os
import subprocess
import sys

from edgetest import heartbeat_frame

from edge_agent.inbound import Rejected, check_up_message
from edge_agent.queue import EdgeQueue


def test_status_prints_the_queue_counters(tmp_path):
    queue_path = tmp_path / "edge.sqlite3"
    with EdgeQueue(queue_path) as queue:
        topic = "patrol/v1/dev/0000a001/up"
        queue.append_many(
            [
                check_up_message(topic, heartbeat_frame(0x0000A001, 1), 1_795_580_000_000),
                check_up_message(topic, heartbeat_frame(0x0000A001, 1), 1_795_580_000_001),
                Rejected("truncated", b"\x01", topic, 1_795_580_000_002),
            ]
        )
    env = dict(os.environ) | {
        "PATROL_EDGE_CLOUD_URL": "https://cloud.example",
        "PATROL_EDGE_GATEWAY_ID": "gw-site-1",
        "PATROL_EDGE_GATEWAY_API_KEY": "pk_never-printed",
        "PATROL_EDGE_QUEUE_PATH": str(queue_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.splitlines() == [
        f"queue file:   {queue_path}",
        "depth:        1",
        "oldest (ms):  1795580000000",
        "dead letters: 1",
        "duplicates:   1",
    ]
    assert "pk_never-printed" not in done.stdout + done.stderr
