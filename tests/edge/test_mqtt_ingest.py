"""MQTT ingest against the real private Mosquitto (passwords, ACL): commit, then ack."""

import sqlite3

import paho.mqtt.client as mqtt
from edgetest import eviction_frame, heartbeat_frame, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.queue import QueueStats
from patrol_protocol.commands import Ack


def test_frames_are_committed_before_the_ack_arrives(ingest, wearables):
    _, queue = ingest
    wearable = next(iter(wearables.values()))
    device = wearable.device_id
    frames = [heartbeat_frame(device, seq) for seq in (1, 2, 3)]
    for raw in frames:
        wearable.publish(raw)
    wearable.wait_ack(3)
    # Read the file through an independent connection: what was acked is on disk.
    db = sqlite3.connect(queue.path)
    rows = db.execute("SELECT seq, payload FROM items WHERE device_id = ? ORDER BY seq", (device,))
    assert [(seq, bytes(payload)) for seq, payload in rows] == list(
        zip((1, 2, 3), frames, strict=True)
    )
    db.close()


def test_every_ack_names_the_right_device_and_seq(ingest, wearables):
    a, b = list(wearables.values())[:2]
    a.publish(heartbeat_frame(a.device_id, 1))
    b.publish(heartbeat_frame(b.device_id, 7))
    assert a.wait_ack(1)[-1] == Ack(a.device_id, 1)
    assert b.wait_ack(7)[-1] == Ack(b.device_id, 7)


def test_redelivered_frame_is_counted_stored_once_and_acked_again(ingest, wearables):
    ingest_, queue = ingest
    wearable = next(iter(wearables.values()))
    raw = heartbeat_frame(wearable.device_id, 1)
    wearable.publish(raw)
    wearable.wait_ack(1)
    wearable.publish(raw)  # the wearable missed the ack and resends
    wearable.wait_ack(1)  # ...and is told again
    wait_until(lambda: queue.stats().duplicates == 1, what="the duplicate to be counted")
    assert [i.payload for i in queue.frames(wearable.device_id)] == [raw]
    assert queue.stats() == QueueStats(depth=1, dead_letters=0, duplicates=1)
    assert ingest_.stats().duplicates == 1


def test_bad_input_is_dead_lettered_and_stops_nothing(ingest, wearables, mqtt_broker):
    _, queue = ingest
    a, b = list(wearables.values())[:2]
    good = heartbeat_frame(a.device_id, 1)
    a.publish(b"\x01\x03\x01")  # truncated
    a.publish(b"\x02" + good[1:])  # version 2
    a.publish(good + b"\x00" * 300)  # over MAX_FRAME_BYTES
    a.publish(good + b"\x00")  # a trailing byte after the MAC
    a.publish(heartbeat_frame(b.device_id, 1), topic=f"patrol/v1/dev/{a.device_id:08x}/up")
    # the gateway account may write anywhere under patrol/v1/: a topic with no device id
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edge-test-gw-publisher")
    gateway.username_pw_set(
        mqtt_broker.gateway_user, mqtt_broker.credentials[mqtt_broker.gateway_user]
    )
    gateway.connect(mqtt_broker.host, mqtt_broker.port)
    gateway.loop_start()
    gateway.publish("patrol/v1/dev/NOT-AN-ID/up", good, qos=1).wait_for_publish(5)
    gateway.disconnect()
    gateway.loop_stop()
    a.publish(good)
    a.wait_ack(1)
    wait_until(lambda: queue.stats().dead_letters == 6, what="six dead letters")
    dead = queue.dead_letters()
    assert [(d.reason, d.topic) for d in dead] == [
        ("truncated", "patrol/v1/dev/0000a001/up"),
        ("bad_version", "patrol/v1/dev/0000a001/up"),
        ("oversized", "patrol/v1/dev/0000a001/up"),
        ("malformed", "patrol/v1/dev/0000a001/up"),
        ("topic_mismatch", "patrol/v1/dev/0000a001/up"),
        ("bad_topic", "patrol/v1/dev/NOT-AN-ID/up"),
    ]
    assert dead[0].raw == b"\x01\x03\x01"
    assert dead[2].raw_len == len(good) + 300
    assert [i.payload for i in queue.frames(a.device_id)] == [good]
    assert queue.frames(b.device_id) == []


def test_gap_holds_the_ack_until_the_missing_seq_arrives(ingest, wearables):
    _, queue = ingest
    wearable = next(iter(wearables.values()))
    device = wearable.device_id
    for seq in (1, 2, 4):
        wearable.publish(heartbeat_frame(device, seq))
    wait_until(lambda: len(queue.frames(device)) == 3, what="three committed frames")
    acks = wearable.wait_ack(2)
    assert queue.acked_seq(device) == 2
    while not wearable.acks.empty():
        acks.append(wearable.acks.get())
    assert max(a.acked_seq for a in acks) == 2
    wearable.publish(heartbeat_frame(device, 3))
    assert wearable.wait_ack(4)[-1] == Ack(device, 4)


def test_eviction_frame_extends_contiguity_over_its_range(ingest, wearables):
    _, queue = ingest
    a, b = list(wearables.values())[:2]
    for seq in (1, 2, 3, 4):
        a.publish(heartbeat_frame(a.device_id, seq))
    a.wait_ack(4)
    a.publish(eviction_frame(a.device_id, 10, 5, 9))  # seq 10 declares 5..9 evicted
    assert a.wait_ack(10)[-1] == Ack(a.device_id, 10)
    # the eviction record arrives before a frame that precedes it
    for seq in (1, 2, 3, 4):
        b.publish(heartbeat_frame(b.device_id, seq))
    b.wait_ack(4)
    b.publish(eviction_frame(b.device_id, 11, 5, 9))
    b.wait_ack(9)
    b.publish(heartbeat_frame(b.device_id, 10))
    assert b.wait_ack(11)[-1] == Ack(b.device_id, 11)
    assert [i.seq for i in queue.frames(b.device_id)] == [1, 2, 3, 4, 10, 11]
