"""The agent killed hard (SIGKILL) before committing loses nothing.

The agent runs as a real subprocess (``python -m edge_agent run``) on the private
Mosquitto. With ``clean_session=False``, QoS 1 and no PUBACK before the commit,
messages the killed agent had received but not committed stay in the broker's
session and are redelivered when the agent comes back: every seq ends up in the
queue exactly once.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from edgetest import forget_session, heartbeat_frame, wait_until

from edge_agent.queue import EdgeQueue, QueueStats

FRAMES = 20
START_TIMEOUT_S = 15.0


class AgentProcess:
    """``python -m edge_agent run`` with its stderr lines collected by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--log-level", "DEBUG"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, count: int = 1, timeout_s: float = START_TIMEOUT_S) -> None:
        def enough() -> bool:
            while not self.lines.empty():
                self.seen.append(self.lines.get())
            return sum(text in line for line in self.seen) >= count

        wait_until(enough, timeout_s, what=f"{count} x {text!r} from the agent: {self.seen[-5:]}")

    def kill_hard(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


@pytest.fixture
def agent_env(tmp_path: Path, mqtt_broker):
    client_id = f"edge-kill-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update(
        PATROL_EDGE_MQTT_HOST=mqtt_broker.host,
        PATROL_EDGE_MQTT_PORT=str(mqtt_broker.port),
        PATROL_EDGE_MQTT_USERNAME=mqtt_broker.gateway_user,
        PATROL_EDGE_MQTT_PASSWORD=mqtt_broker.credentials[mqtt_broker.gateway_user],
        PATROL_EDGE_MQTT_CLIENT_ID=client_id,
        PATROL_EDGE_CLOUD_URL="http://127.0.0.1:9",
        PATROL_EDGE_GATEWAY_ID="gw-test",
        PATROL_EDGE_GATEWAY_API_KEY="not-used-here",
        PATROL_EDGE_QUEUE_PATH=str(tmp_path / "edge-queue.sqlite3"),
        PATROL_EDGE_METRICS_PORT="0",
    )
    yield env
    forget_session(
        mqtt_broker.host,
        mqtt_broker.port,
        mqtt_broker.gateway_user,
        mqtt_broker.credentials[mqtt_broker.gateway_user],
        client_id,
    )


def test_sigkill_before_commit_loses_nothing(agent_env, wearables):
    wearable = next(iter(wearables.values()))
    device = wearable.device_id
    frames = [heartbeat_frame(device, seq) for seq in range(1, FRAMES + 1)]

    # 1. An agent whose committer waits a minute for a fuller group: it receives
    #    every frame but commits none before it is killed.
    slow = AgentProcess(
        agent_env
        | {"PATROL_EDGE_COMMIT_MAX_WAIT_MS": "60000", "PATROL_EDGE_COMMIT_MAX_MESSAGES": "1000"}
    )
    try:
        slow.wait_for("subscribed to patrol/v1/dev/+/up")
        for raw in frames:
            wearable.publish(raw)
        slow.wait_for("buffered mid=", count=FRAMES)
    finally:
        slow.kill_hard()
    with EdgeQueue(Path(agent_env["PATROL_EDGE_QUEUE_PATH"])) as q:
        assert q.frames(device) == []  # no frame was committed (only the gateway heartbeat)...
    assert wearable.acks.empty()  # ...so nothing was acknowledged

    # 2. Restarted with the normal commit window: the broker redelivers all of them.
    agent = AgentProcess(agent_env)
    try:
        agent.wait_for("subscribed to patrol/v1/dev/+/up")
        wearable.wait_ack(FRAMES, timeout_s=START_TIMEOUT_S)
    finally:
        assert agent.stop() == 0  # SIGTERM: clean shutdown
    with EdgeQueue(Path(agent_env["PATROL_EDGE_QUEUE_PATH"])) as q:
        assert [(i.seq, i.payload) for i in q.frames(device)] == list(
            zip(range(1, FRAMES + 1), frames, strict=True)
        )
        # besides the frames: one gateway_health heartbeat per agent start
        assert q.stats() == QueueStats(depth=FRAMES + 2, dead_letters=0, duplicates=0)
        assert q.acked_seq(device) == FRAMES


STREAM_FRAMES = 400
PUBLISH_INTERVAL_S = 0.01
KILL_DELAYS_S = (0.3, 0.05, 0.6, 0.15)
"""Fixed points (after the agent subscribed) at which the stream is cut by SIGKILL:
before, during and after commits, so some frames are committed but not PUBACKed."""


def test_sigkill_at_points_during_a_stream_every_seq_exactly_once(agent_env, wearables):
    wearable = next(iter(wearables.values()))
    device = wearable.device_id
    frames = [heartbeat_frame(device, seq) for seq in range(1, STREAM_FRAMES + 1)]

    def publish_stream() -> None:
        for raw in frames:  # paced, so the stream spans several kills and restarts
            wearable.publish(raw)
            time.sleep(PUBLISH_INTERVAL_S)

    publisher = threading.Thread(target=publish_stream)
    started = False
    for delay_s in KILL_DELAYS_S:
        agent = AgentProcess(agent_env)
        try:
            agent.wait_for("subscribed to patrol/v1/dev/+/up")
            if not started:
                publisher.start()
                started = True
            threading.Event().wait(delay_s)
        finally:
            agent.kill_hard()
    publisher.join(60)
    agent = AgentProcess(agent_env)
    try:
        agent.wait_for("subscribed to patrol/v1/dev/+/up")
        wearable.wait_ack(STREAM_FRAMES, timeout_s=60)
    finally:
        assert agent.stop() == 0
    with EdgeQueue(Path(agent_env["PATROL_EDGE_QUEUE_PATH"])) as q:
        stored = q.frames(device)
        assert [i.seq for i in stored] == list(range(1, STREAM_FRAMES + 1))
        assert [i.payload for i in stored] == frames
        assert q.stats().dead_letters == 0
