"""The whole agent: wearable -> broker -> commit -> ack -> forwarder -> REAL cloud app."""

from __future__ import annotations

import pytest
from cloudserver import GATEWAY_ID, start_cloud
from edgetest import Wearable, heartbeat_frame, wait_until

from edge_agent.agent import EdgeAgent
from edge_agent.settings import EdgeSettings
from patrol_protocol.commands import Ack


@pytest.fixture
def cloud(tmp_path):
    server = start_cloud(tmp_path)
    yield server
    server.stop()


def test_agent_on_site_mosquitto_delivers_to_the_cloud(edge_settings, cloud, wearables):
    settings = EdgeSettings(
        **edge_settings.model_dump() | {"cloud_url": cloud.url, "gateway_api_key": cloud.api_key}
    )
    wearable = next(iter(wearables.values()))
    frames = [heartbeat_frame(wearable.device_id, seq) for seq in (1, 2, 3)]
    with EdgeAgent(settings) as agent:
        assert agent.wait_ready(10)
        for raw in frames:
            wearable.publish(raw)
        assert wearable.wait_ack(3)[-1] == Ack(wearable.device_id, 3)
        wait_until(lambda: agent.queue.depth() == 0, what="the forwarder to drain the queue")
        status = agent.status()
        # the three frames and the gateway_health heartbeat queued at start
        assert (status.mqtt.stored, status.forwarded, status.queue.depth) == (3, 4, 0)
    rows = cloud.rows("SELECT seq, raw FROM events ORDER BY seq")
    assert [(seq, bytes(raw)) for seq, raw in rows] == list(zip((1, 2, 3), frames, strict=True))
    assert cloud.rows("SELECT kind FROM gateway_observations") == [("gateway_health",)]


def test_demo_agent_with_embedded_broker(tmp_path, cloud):
    settings = EdgeSettings(
        embedded_broker=True,
        mqtt_port=0,  # a free port, read back from agent.mqtt_port
        mqtt_client_id="patrol-edge-demo",
        cloud_url=cloud.url,
        gateway_id=GATEWAY_ID,
        gateway_api_key=cloud.api_key,
        queue_path=tmp_path / "demo" / "edge.sqlite3",
        metrics_port=0,
    )
    agent = EdgeAgent(settings)
    agent.start()  # returns once the agent is subscribed on its embedded broker
    try:
        wearable = Wearable("127.0.0.1", agent.mqtt_port, "0000a002", "demo-password")
        try:
            for seq in (1, 2):
                wearable.publish(heartbeat_frame(0x0000A002, seq))
            assert wearable.wait_ack(2)[-1] == Ack(0x0000A002, 2)
        finally:
            wearable.close()
        wait_until(lambda: agent.queue.depth() == 0, what="the forwarder to drain the queue")
    finally:
        agent.stop()
    assert cloud.rows("SELECT device_id, seq FROM events ORDER BY seq") == [
        (0x0000A002, 1),
        (0x0000A002, 2),
    ]
