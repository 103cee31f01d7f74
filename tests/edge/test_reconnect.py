"""Broker restart under a running ingest: reconnect with backoff, one log line on the
break and one on the recovery, no frame lost (site Mosquitto from mosquitto_conf)."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from edgetest import SiteMosquitto, Wearable, heartbeat_frame, wait_until

from edge_agent.mqtt_ingest import MqttIngest
from edge_agent.queue import EdgeQueue
from edge_agent.settings import EdgeSettings
from patrol_protocol.commands import Ack

DEVICE = 0x0000A001
BROKER_DOWN_S = 2.5
USERS = {"0000a001": "pw-a001", SiteMosquitto.GATEWAY: "gw-secret"}


@pytest.fixture
def site(tmp_path):
    broker = SiteMosquitto(tmp_path / "site", USERS)
    broker.start()
    yield broker
    broker.stop()


def test_broker_restart_is_survived_and_logged_once_each_way(tmp_path, site, caplog):
    settings = EdgeSettings(
        mqtt_host="127.0.0.1",
        mqtt_port=site.port,
        mqtt_username=SiteMosquitto.GATEWAY,
        mqtt_password=USERS[SiteMosquitto.GATEWAY],
        mqtt_client_id=f"edge-{uuid.uuid4().hex[:8]}",
        mqtt_reconnect_min_delay_s=1,
        mqtt_reconnect_max_delay_s=1,
        cloud_url="http://127.0.0.1:9",
        gateway_id="gw-site",
        gateway_api_key="unused",
        queue_path=tmp_path / "edge.sqlite3",
    )
    caplog.set_level(logging.INFO, logger="edge_agent.mqtt_ingest")
    with EdgeQueue(settings.queue_path) as queue:
        ingest = MqttIngest(settings, queue)
        ingest.start()
        try:
            assert ingest.wait_ready(10)
            wearable = Wearable("127.0.0.1", site.port, "0000a001", USERS["0000a001"])
            wearable.publish(heartbeat_frame(DEVICE, 1))
            wearable.wait_ack(1)
            wearable.close()

            site.stop()
            wait_until(lambda: not ingest.connected, what="the agent to notice")
            # stay down long enough for two reconnect attempts (1 s apart) to fail
            time.sleep(BROKER_DOWN_S)
            site.start()
            assert ingest.wait_ready(15), "no re-subscription after the restart"

            wearable = Wearable("127.0.0.1", site.port, "0000a001", USERS["0000a001"])
            wearable.publish(heartbeat_frame(DEVICE, 2))
            assert wearable.wait_ack(2)[-1] == Ack(DEVICE, 2)
            wearable.close()
        finally:
            ingest.stop()
        assert [i.seq for i in queue.frames(DEVICE)] == [1, 2]
    records = [r for r in caplog.records if r.name == "edge_agent.mqtt_ingest"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    recoveries = [r.getMessage() for r in records if "recovered" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("MQTT connection lost")
    assert len(recoveries) == 1, recoveries


def test_whole_agent_reports_a_broker_restart_in_healthz_and_metrics(tmp_path, site):
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from edge_agent.agent import EdgeAgent

    settings = EdgeSettings(
        mqtt_host="127.0.0.1",
        mqtt_port=site.port,
        mqtt_username=SiteMosquitto.GATEWAY,
        mqtt_password=USERS[SiteMosquitto.GATEWAY],
        mqtt_client_id=f"edge-{uuid.uuid4().hex[:8]}",
        mqtt_reconnect_min_delay_s=1,
        mqtt_reconnect_max_delay_s=1,
        cloud_url="http://127.0.0.1:9",
        gateway_id="gw-site",
        gateway_api_key="unused",
        queue_path=tmp_path / "edge.sqlite3",
        metrics_port=0,
    )

    def connected_gauge(port: int) -> float:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return next(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "patrol_edge_broker_connected"
        )

    with EdgeAgent(settings) as agent:
        assert agent.wait_ready(10) and agent.metrics_server is not None
        port = agent.metrics_server.port
        assert connected_gauge(port) == 1
        site.stop()
        wait_until(
            lambda: agent.ingest is not None and not agent.ingest.connected, what="the break"
        )
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert answer.status_code == 503
        assert "broker: not connected" in answer.json()["problems"]
        assert connected_gauge(port) == 0
        assert agent.alive()  # a broker outage is not a reason for the watchdog to restart us
        site.start()
        assert agent.ingest is not None and agent.ingest.wait_ready(15)
        wait_until(lambda: connected_gauge(port) == 1, what="the gauge to recover")
        assert (
            "broker: not connected"
            not in httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()["problems"]
        )
        wearable = Wearable("127.0.0.1", site.port, "0000a001", USERS["0000a001"])
        try:
            wearable.publish(heartbeat_frame(DEVICE, 1))
            assert wearable.wait_ack(1)[-1] == Ack(DEVICE, 1)
        finally:
            wearable.close()
