"""Alert steps to an MQTT broker (site sirens, radio gateways): a webhook target whose
URL is ``mqtt://user@host:port/<topic>`` (the target's secret is the MQTT password).

Delivered by the same queue as webhooks (:mod:`.webhooks`): retried with backoff,
every attempt logged, so a broker that is down loses nothing. One short-lived
connection per attempt (alerts are rare); QoS 1, delivered once PUBACK arrives.
The payload is the step's JSON (MQTT 3.1.1 has no headers; the broker's
authentication and ACL protect the topic). Suggested topic:
``patrol/v1/site/{site_id}/alert``.
"""

from __future__ import annotations

import threading
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class MqttTargetError(Exception):
    """The broker could not be reached, refused us, or did not acknowledge in time."""


def parse(url: str) -> tuple[str, int, str | None, str]:
    """``mqtt://user@host:port/topic`` -> (host, port, user, topic)."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname or len(parts.path) < 2:
        raise ValueError("MQTT target must be mqtt://[user@]host[:port]/topic")
    topic = unquote(parts.path[1:])
    if "+" in topic or "#" in topic:
        raise ValueError("MQTT target topic must not contain wildcards")
    user = unquote(parts.username) if parts.username else None
    return parts.hostname, parts.port or 1883, user, topic


def publish(url: str, password: bytes, body: bytes, *, timeout_s: float) -> None:
    """Publish ``body`` QoS 1 and wait for the PUBACK; MqttTargetError otherwise."""
    host, port, user, topic = parse(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
    if user is not None:
        client.username_pw_set(user, password.decode() if password else None)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=int(max(5, timeout_s * 2)))
    except OSError as exc:
        raise MqttTargetError(f"cannot connect to {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise MqttTargetError("timeout")
        if refused:
            raise MqttTargetError(f"broker refused the connection: {refused[0]}")
        info = client.publish(topic, body, qos=1)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise MqttTargetError("timeout")
    finally:
        client.disconnect()
        client.loop_stop()
