"""Fixtures of the edge-agent tests: agent settings on the private Mosquitto, wearables."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from edgetest import Wearable, forget_session

from edge_agent.mqtt_ingest import MqttIngest
from edge_agent.queue import EdgeQueue
from edge_agent.settings import EdgeSettings
from patrol_protocol.ids import parse_device_id


@pytest.fixture
def edge_settings(tmp_path: Path, mqtt_broker) -> Iterator[EdgeSettings]:  # type: ignore[no-untyped-def]
    """Settings for an agent on the private Mosquitto, with its own client id and queue file.

    Afterwards the agent's persistent session is dropped, so no finished test leaves a
    subscriber behind for which the broker keeps queueing.
    """
    settings = EdgeSettings(
        mqtt_host=mqtt_broker.host,
        mqtt_port=mqtt_broker.port,
        mqtt_username=mqtt_broker.gateway_user,
        mqtt_password=mqtt_broker.credentials[mqtt_broker.gateway_user],
        mqtt_client_id=f"edge-{uuid.uuid4().hex[:12]}",
        cloud_url="http://127.0.0.1:9",  # discard port: nothing listens; forwarding not under test
        gateway_id="gw-test",
        gateway_api_key="not-used-here",
        queue_path=tmp_path / "edge-queue.sqlite3",
        metrics_port=0,  # any free port: tests run side by side
    )
    yield settings
    forget_session(
        mqtt_broker.host,
        mqtt_broker.port,
        mqtt_broker.gateway_user,
        mqtt_broker.credentials[mqtt_broker.gateway_user],
        settings.mqtt_client_id,
    )


@pytest.fixture
def wearables(mqtt_broker) -> Iterator[dict[int, Wearable]]:  # type: ignore[no-untyped-def]
    """Every device user of the private broker, logged in with its own password."""
    clients = {
        parse_device_id(user): Wearable(
            mqtt_broker.host, mqtt_broker.port, user, mqtt_broker.credentials[user]
        )
        for user in mqtt_broker.device_users[:3]
    }
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def ingest(edge_settings) -> Iterator[tuple[MqttIngest, EdgeQueue]]:  # type: ignore[no-untyped-def]
    """A running MqttIngest on the private Mosquitto, subscribed, with its queue."""
    queue = EdgeQueue(edge_settings.queue_path)
    ingest = MqttIngest(edge_settings, queue)
    ingest.start()
    assert ingest.wait_ready(10), "the agent did not subscribe"
    yield ingest, queue
    ingest.stop()
    queue.close()


@pytest.fixture
def agent_env(tmp_path: Path, mqtt_broker) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Environment of ``python -m edge_agent run`` on the private Mosquitto (own session)."""
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
