"""The private Mosquitto behaves as the product relies on: passwords and the ACL.

Devices connect with MQTT 3.1.1 (as the MicroPython firmware does) under their
own 8-hex id; the gateway account reads and writes all of patrol/v1/#. The ACL
(docs/protocol.md) must let a device write only its own `up` and `status`
topics and read only its own `ack` and `cmd` topics. Mosquitto drops a
forbidden publish silently (the device still gets its PUBACK), so the tests
prove absence with an ordering marker: messages from one client to one
subscriber arrive in order, so once a later, allowed marker has arrived, the
forbidden message would have arrived before it.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

if TYPE_CHECKING:
    from conftest import MqttBroker

pytestmark = pytest.mark.mosquitto

# Loopback broker: anything slower than this is a failure, not a slow machine.
WAIT_S = 5.0
# After the ordering marker has arrived, wait this much longer for stragglers.
EXTRA_SILENCE_S = 0.3


class Client:
    """A connected paho 2.x client (MQTT 3.1.1) that records what it receives."""

    def __init__(self, broker: MqttBroker, username: str, password: str) -> None:
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.retained: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self._paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"infra-{username}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self._paho.username_pw_set(username, password)
        self._paho.on_connect = self._on_connect
        self._paho.on_subscribe = self._on_subscribe
        self._paho.on_message = self._on_message
        self._broker = broker

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack.put(reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subacks.put(list(reason_codes))

    def _on_message(self, client, userdata, message) -> None:
        # Retained messages (e.g. a birth status left by an earlier test in this
        # session's broker) are replayed on subscribing with the retain flag set;
        # only live traffic is what these tests are about.
        (self.retained if message.retain else self.received).put(message)

    def connect(self) -> ReasonCode:
        """Connect and return the broker's CONNACK reason code."""
        self._paho.connect(self._broker.host, self._broker.port, keepalive=30)
        self._paho.loop_start()
        return self._connack.get(timeout=WAIT_S)

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait until the broker granted it."""
        self._paho.subscribe(topic, qos=1)
        (granted,) = self._subacks.get(timeout=WAIT_S)
        assert granted.value == 1, f"subscription to {topic} answered {granted}"

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        info = self._paho.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=WAIT_S)
        assert info.is_published()

    def next_message(self) -> mqtt.MQTTMessage:
        """The next received message (fails the test after WAIT_S)."""
        return self.received.get(timeout=WAIT_S)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._paho.disconnect()
        self._paho.loop_stop()


@pytest.fixture
def connect(mqtt_broker: MqttBroker) -> Iterator[Callable[[str], Client]]:
    """Factory: connect(username) -> Client logged in with that account's password."""
    clients: list[Client] = []

    def factory(username: str) -> Client:
        client = Client(mqtt_broker, username, mqtt_broker.credentials[username])
        reason = client.connect()
        assert not reason.is_failure, f"{username} could not connect: {reason}"
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


# A retained birth status, present for the whole module: every subscription to
# patrol/v1/dev/# gets it replayed, as it would get other tests' statuses.
RETAINED_TOPIC = "patrol/v1/dev/0000a008/status"
RETAINED_PAYLOAD = bytes.fromhex("01010000a008")  # version 1, online, device 0x0000a008


@pytest.fixture(scope="module", autouse=True)
def retained_status(mqtt_broker: MqttBroker) -> Iterator[None]:
    """Publish a retained status before this module's tests, clear it after."""
    device = Client(mqtt_broker, "0000a008", mqtt_broker.credentials["0000a008"])
    assert not device.connect().is_failure
    device.publish(RETAINED_TOPIC, RETAINED_PAYLOAD, retain=True)
    yield
    device.publish(RETAINED_TOPIC, b"", retain=True)  # an empty retained message clears it
    device.close()


def assert_only(client: Client, expected: list[tuple[str, bytes]]) -> None:
    """`client` receives exactly `expected` (topic, payload) pairs, then nothing."""
    got = [
        (message.topic, message.payload) for message in (client.next_message() for _ in expected)
    ]
    assert got == expected
    with pytest.raises(queue.Empty):
        extra = client.received.get(timeout=EXTRA_SILENCE_S)
        pytest.fail(f"unexpected message on {extra.topic}: {extra.payload!r}")


def test_accounts_match_the_contract(mqtt_broker: MqttBroker) -> None:
    assert mqtt_broker.host == "127.0.0.1"
    assert mqtt_broker.gateway_user == "gw-test"
    assert mqtt_broker.device_users == [f"0000a00{n}" for n in range(1, 9)]
    assert set(mqtt_broker.credentials) == {"gw-test", *mqtt_broker.device_users}


def connack_for(broker: MqttBroker, username: str, password: str) -> ReasonCode:
    """The CONNACK reason for one login attempt, driven in this thread.

    No network thread: after a refusal it would sit in paho's reconnect wait,
    which stopping it has to sit out (a second per attempt).
    """
    connacks: list[ReasonCode] = []
    paho = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"infra-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    paho.username_pw_set(username, password)
    paho.on_connect = lambda _c, _u, _f, reason_code, _p: connacks.append(reason_code)
    paho.connect(broker.host, broker.port, keepalive=30)
    try:
        deadline = time.monotonic() + WAIT_S
        while not connacks and time.monotonic() < deadline:
            paho.loop(timeout=0.1)
    finally:
        paho.disconnect()
    assert connacks, f"no CONNACK within {WAIT_S} s"
    return connacks[0]


@pytest.mark.parametrize("username", ["0000a001", "gw-test", "nobody"])
def test_wrong_password_is_refused(mqtt_broker: MqttBroker, username: str) -> None:
    reason = connack_for(mqtt_broker, username, "not-the-password")
    # MQTT 3.1.1 CONNACK return code 5, "not authorized" (paho maps it to 0x87).
    assert reason.value == 0x87
    assert str(reason) == "Not authorized"


def test_retained_status_reaches_a_late_subscriber(connect) -> None:
    gateway = connect("gw-test")
    gateway.subscribe(RETAINED_TOPIC)  # other tests may leave statuses of other devices

    message = gateway.retained.get(timeout=WAIT_S)
    assert (message.topic, message.payload, message.retain) == (
        RETAINED_TOPIC,
        RETAINED_PAYLOAD,
        True,
    )


def test_device_event_reaches_gateway_at_qos1(connect) -> None:
    gateway = connect("gw-test")
    gateway.subscribe("patrol/v1/dev/+/up")
    device = connect("0000a001")

    device.publish("patrol/v1/dev/0000a001/up", b"\x01\x01frame")

    message = gateway.next_message()
    assert message.topic == "patrol/v1/dev/0000a001/up"
    assert message.payload == b"\x01\x01frame"
    assert message.qos == 1


def test_device_cannot_publish_as_another_device(connect) -> None:
    gateway = connect("gw-test")
    gateway.subscribe("patrol/v1/dev/#")
    device = connect("0000a001")

    device.publish("patrol/v1/dev/0000a002/up", b"forged")  # PUBACKed, then dropped
    device.publish("patrol/v1/dev/0000a002/status", b"forged")
    device.publish("patrol/v1/dev/0000a001/up", b"marker")  # allowed, arrives in order

    assert_only(gateway, [("patrol/v1/dev/0000a001/up", b"marker")])


def test_device_cannot_write_ack_or_cmd(connect) -> None:
    gateway = connect("gw-test")
    gateway.subscribe("patrol/v1/dev/#")
    device = connect("0000a001")

    device.publish("patrol/v1/dev/0000a001/ack", b"forged ack")
    device.publish("patrol/v1/dev/0000a001/cmd", b"forged cmd")
    device.publish("patrol/v1/dev/0000a001/status", b"marker")

    assert_only(gateway, [("patrol/v1/dev/0000a001/status", b"marker")])


def test_device_reads_only_its_own_ack_and_cmd(connect) -> None:
    device = connect("0000a001")
    # Mosquitto grants these subscriptions and applies the ACL on delivery.
    device.subscribe("patrol/v1/dev/+/ack")
    device.subscribe("patrol/v1/dev/+/cmd")
    device.subscribe("patrol/v1/dev/+/up")
    gateway = connect("gw-test")
    other = connect("0000a002")

    other.publish("patrol/v1/dev/0000a002/up", b"not yours")
    gateway.publish("patrol/v1/dev/0000a002/ack", b"not yours")
    gateway.publish("patrol/v1/dev/0000a002/cmd", b"not yours")
    gateway.publish("patrol/v1/dev/0000a001/ack", b"ack for a001")
    gateway.publish("patrol/v1/dev/0000a001/cmd", b"cmd for a001")

    assert_only(
        device,
        [
            ("patrol/v1/dev/0000a001/ack", b"ack for a001"),
            ("patrol/v1/dev/0000a001/cmd", b"cmd for a001"),
        ],
    )


def test_queued_messages_survive_subscriber_absence(mqtt_broker: MqttBroker, connect) -> None:
    """A persistent gateway session gets what was published while it was away.

    More than Mosquitto's default queue limit (1,000) is published, which the
    private broker's raised max_queued_messages must keep.
    """
    count = 1_500
    client_id = f"infra-gw-persistent-{uuid.uuid4().hex[:8]}"
    received: queue.Queue[bytes] = queue.Queue()
    subscribed = threading.Event()

    def gateway_client() -> mqtt.Client:
        paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        paho.username_pw_set("gw-test", mqtt_broker.credentials["gw-test"])
        paho.on_subscribe = lambda *_args: subscribed.set()
        paho.on_message = lambda _client, _userdata, message: received.put(message.payload)
        return paho

    gateway = gateway_client()
    gateway.connect(mqtt_broker.host, mqtt_broker.port)
    gateway.loop_start()
    gateway.subscribe("patrol/v1/dev/0000a003/up", qos=1)
    assert subscribed.wait(WAIT_S)
    gateway.disconnect()
    gateway.loop_stop()

    device = connect("0000a003")
    for seq in range(count):
        device.publish("patrol/v1/dev/0000a003/up", seq.to_bytes(4, "big"))

    gateway = gateway_client()
    gateway.connect(mqtt_broker.host, mqtt_broker.port)
    gateway.loop_start()
    got: list[int] = []
    try:
        while len(got) < count:
            got.append(int.from_bytes(received.get(timeout=WAIT_S), "big"))
    except queue.Empty:
        pass  # the comparison below says how many arrived
    finally:
        gateway.disconnect()
        gateway.loop_stop()
    assert len(got) == count
    assert got == list(range(count))
