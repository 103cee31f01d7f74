"""Fuzzed MQTT payloads (hypothesis) through the REAL Mosquitto into the running ingest.

Whatever arrives on ``patrol/v1/dev/+/up`` -- random bytes, valid frames with
bytes flipped, cut or extended, odd topic segments -- never stops the agent:
each message is either queued (a sound header is relayed for the cloud to judge)
or a duplicate, or lands in the dead-letter table with its stable reason and
bytes, exactly as the pure check predicts. Afterwards the agent still commits
and acknowledges a good frame.
"""

from __future__ import annotations

import uuid

import paho.mqtt.client as mqtt
from edgetest import heartbeat_frame, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.inbound import (
    MAX_DEAD_LETTER_BYTES,
    REASON_SEQ_CONFLICT,
    Rejected,
    check_up_message,
)

DEVICES = ("0000a001", "0000a002", "0000a003")
SEGMENT_ALPHABET = "0123456789abcdefABXYZ-_."


@st.composite
def mutated_frame(draw: st.DrawFn) -> bytes:
    device = int(draw(st.sampled_from(DEVICES)), 16)
    raw = bytearray(heartbeat_frame(device, draw(st.integers(1, 50))))
    for _ in range(draw(st.integers(0, 3))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(raw)))
    tail = draw(st.binary(max_size=8))
    return bytes(raw[:cut] + tail) if draw(st.booleans()) else bytes(raw)


payloads = st.one_of(st.binary(max_size=300), mutated_frame())
topics = st.one_of(st.sampled_from(DEVICES), st.text(SEGMENT_ALPHABET, max_size=12)).map(
    lambda segment: f"patrol/v1/dev/{segment}/up"
)


def gateway_publisher(mqtt_broker) -> mqtt.Client:  # type: ignore[no-untyped-def]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzz-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(
        mqtt_broker.gateway_user, mqtt_broker.credentials[mqtt_broker.gateway_user]
    )
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    return client


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=st.lists(st.tuples(topics, payloads), min_size=1, max_size=20))
def test_fuzzed_payloads_never_crash_and_land_with_a_reason(ingest, mqtt_broker, messages):
    agent, queue = ingest
    before = agent.stats()
    dead_before = len(queue.dead_letters(limit=1_000_000))
    publisher = gateway_publisher(mqtt_broker)
    try:
        for topic, payload in messages:
            publisher.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    wait_until(
        lambda: agent.stats().received - before.received == len(messages),
        30,
        what="every fuzzed message to arrive",
    )
    wait_until(
        lambda: (
            (s := agent.stats()).stored
            + s.duplicates
            + s.dead_lettered
            - (before.stored + before.duplicates + before.dead_lettered)
            == len(messages)
        ),
        30,
        what="every fuzzed message to be committed",
    )
    assert agent.committer_alive and agent.connected

    new_dead = [
        (d.reason, d.raw, d.topic) for d in queue.dead_letters(limit=1_000_000)[dead_before:]
    ]
    expected = [check_up_message(topic, payload, 0) for topic, payload in messages]
    rejected = [
        (e.reason, e.raw[:MAX_DEAD_LETTER_BYTES], e.topic)
        for e in expected
        if isinstance(e, Rejected)
    ]
    assert all(reason for reason, _raw, _topic in new_dead)
    # every rejection the pure check predicts, with its reason and bytes...
    remaining = list(new_dead)
    for entry in rejected:
        assert entry in remaining, (entry, new_dead)
        remaining.remove(entry)
    # ...and otherwise only sound frames that reused a queued (device, seq) with other bytes
    assert all(reason == REASON_SEQ_CONFLICT for reason, _raw, _topic in remaining)


def test_still_acks_a_good_frame_after_garbage(ingest, wearables, mqtt_broker):
    _agent, queue = ingest
    publisher = gateway_publisher(mqtt_broker)
    try:
        for payload in (b"", b"\x00" * 300, b"\xff" * 2000, b"\x01" * 20):
            publisher.publish("patrol/v1/dev/0000a001/up", payload, qos=1).wait_for_publish(10)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    wearable = next(iter(wearables.values()))
    wearable.publish(heartbeat_frame(wearable.device_id, 1))
    wearable.wait_ack(1)
    assert [d.reason for d in queue.dead_letters()] == [
        "truncated",  # empty
        "oversized",  # 300 bytes > MAX_FRAME_BYTES, refused before decoding
        "oversized",
        "oversized",  # a version 1 header announcing body_len 257 > 192
    ]
