"""Edge safety net: with the uplink down an SOS is raised on the site's alarm topic
(real Mosquitto), and delivered to the cloud exactly once when the uplink returns.
"""

from __future__ import annotations

import json
import queue
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from alertstest import GATEWAY_ID, make_frame, make_settings, provision, rows
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr
from ssetest import ThreadServer, free_port

from cloud_api.app import create_app
from cloud_api.db import make_engine
from edge_agent.forwarder import Forwarder
from edge_agent.local_alarm import LocalAlarm, alarm_topic
from edge_agent.mqtt_ingest import MqttIngest
from edge_agent.queue import EdgeQueue
from edge_agent.settings import EdgeSettings
from patrol_protocol.frames import Sos
from patrol_protocol.topics import up_topic

DEVICE = 0x0000A001
TIMEOUT_S = 60.0


def _client(broker: Any, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(broker.gateway_user, broker.credentials[broker.gateway_user])
    return client


# The edge side does not depend on the cloud's database: SQLite only.
@pytest.mark.mosquitto
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sos_raised_locally_while_uplink_down_then_delivered_once(
    mqtt_broker: Any, db_url: str, tmp_path: Path
) -> None:
    cloud_settings = make_settings(db_url)
    engine = make_engine(db_url)
    app = create_app(cloud_settings)
    api_key, _other, _ids = provision(engine, cloud_settings)
    cloud_port = free_port()  # nothing listens here yet: the uplink is down
    edge = EdgeSettings(
        mqtt_host=mqtt_broker.host,
        mqtt_port=mqtt_broker.port,
        mqtt_username=mqtt_broker.gateway_user,
        mqtt_password=SecretStr(mqtt_broker.credentials[mqtt_broker.gateway_user]),
        mqtt_client_id="edge-alarm-test",
        cloud_url=f"http://127.0.0.1:{cloud_port}",
        gateway_id=GATEWAY_ID,
        gateway_api_key=SecretStr(api_key),
        queue_path=tmp_path / "edge.sqlite3",
        forward_backoff_min_ms=100,
        forward_backoff_max_ms=500,
        forward_timeout_ms=2_000,
    )
    heard: queue.Queue[dict[str, Any]] = queue.Queue()
    siren = _client(mqtt_broker, "siren-test")
    subscribed = queue.Queue[int]()
    siren.on_message = lambda _c, _u, msg: heard.put(json.loads(msg.payload))
    siren.on_subscribe = lambda *_a: subscribed.put(1)
    siren.connect(mqtt_broker.host, mqtt_broker.port)
    siren.loop_start()
    siren.subscribe(alarm_topic(GATEWAY_ID), qos=1)
    subscribed.get(timeout=TIMEOUT_S)
    wearable = _client(mqtt_broker, "wearable-test")
    wearable.connect(mqtt_broker.host, mqtt_broker.port)
    wearable.loop_start()
    edge_queue = EdgeQueue(edge.queue_path)
    ingest = MqttIngest(edge, edge_queue)
    forwarder = Forwarder(edge, edge_queue, clock_synced=lambda: True)
    alarm = LocalAlarm.from_settings(edge, edge_queue, grace_s=1.0, poll_s=0.1)
    try:
        forwarder.start()
        ingest.start()
        alarm.start()
        assert ingest.wait_ready(TIMEOUT_S)
        wearable.publish(up_topic(DEVICE), make_frame(Sos(2), seq=5), qos=1).wait_for_publish(30)
        raised = heard.get(timeout=TIMEOUT_S)
        assert {k: raised[k] for k in ("v", "state", "device", "seq", "trigger", "gateway_id")} == {
            "v": 1,
            "state": "raised",
            "device": "0000a001",
            "seq": 5,
            "trigger": "man_down",
            "gateway_id": GATEWAY_ID,
        }
        assert forwarder.forwarded == 0 and edge_queue.depth() == 1
        # The uplink returns: the queued SOS goes up once, and the siren hears "delivered".
        with ThreadServer(app, port=cloud_port):
            delivered = heard.get(timeout=TIMEOUT_S)
            assert (delivered["state"], delivered["seq"]) == ("delivered", 5)
            assert forwarder.forwarded == 1 and edge_queue.depth() == 0
            assert rows(engine, "SELECT device_id, seq, kind FROM events") == [(DEVICE, 5, 4)]
            assert rows(engine, "SELECT id, seq, trigger, state FROM alerts") == [
                (1, 5, "man_down", "open")
            ]
        assert heard.empty()  # raised once, delivered once
        assert (alarm.raised_count, alarm.delivered_count) == (1, 1)
    finally:
        alarm.stop()
        ingest.stop()
        forwarder.stop()
        edge_queue.close()
        for client in (siren, wearable):
            client.disconnect()
            client.loop_stop()
        engine.dispose()
