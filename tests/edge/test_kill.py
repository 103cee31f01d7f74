"""The agent killed hard (SIGKILL) before committing loses nothing.

The agent runs as a real subprocess (``python -m edge_agent run``) on the private
Mosquitto. With ``clean_session=False``, QoS 1 and no PUBACK before the commit,
messages the killed agent had received but not committed stay in the broker's
session and are redelivered when the agent comes back: every seq ends up in the
queue exactly once.
"""

import threading
import time
from pathlib import Path

from edgetest import AgentProcess, heartbeat_frame

from edge_agent.queue import EdgeQueue, QueueStats

FRAMES = 20
START_TIMEOUT_S = 15.0


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
