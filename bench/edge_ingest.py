"""Edge ingest with durable commit before acknowledgement vs bare subscribers, side by side.

Issue 4 target: the edge agent's MQTT ingest (``edge_agent.mqtt_ingest.MqttIngest``:
decode, group commit into the SQLite queue with ``synchronous=FULL``, PUBACK only
after the commit, an ack frame per wearable per group) drains a queued QoS 1
stream at >= 0.7x the rate of a bare paho-mqtt 2.x subscriber that does nothing
with the messages, from the same broker. Also printed: the ratio to
``mosquitto_sub``, the agent with ``synchronous=NORMAL`` for reference, the
backlog drain rate to the real cloud API (events/s, the cloud in its own
process) and the queue's bytes per event on disk.

How: a private Mosquitto (temp config, free port, persistence, unlimited queue,
``max_inflight_messages`` sized to the group commit) is started; one persistent
session (``clean_session=false``, QoS 1) per contender is created, then N signed
heartbeat frames of 8 wearables are published while every contender is offline,
so each finds the same N messages queued. Each contender then drains its own
session in turn, timed from connect to its N-th message (the agent: to its N-th
committed message).

    .venv/bin/python bench/edge_ingest.py                # 50,000 messages
    .venv/bin/python bench/edge_ingest.py --count 10000  # quicker
    .venv/bin/python bench/edge_ingest.py --quick        # 10,000 and a 5,000-event drain
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as mqtt
from _edge_cloud import GATEWAY_ID, start_cloud_process
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from edge_agent.forwarder import Forwarder
from edge_agent.mqtt_ingest import MqttIngest
from edge_agent.queue import EdgeQueue, SqliteSynchronous
from edge_agent.settings import EdgeSettings
from patrol_protocol.frames import Heartbeat, Kind, encode_body, encode_frame
from patrol_protocol.topics import UP_SUBSCRIPTION, up_topic

DEVICE_KEY = bytes(range(32))
DEVICES = [0x0000A001 + i for i in range(8)]
FRAME_TIME_S = 1_795_580_000
COMMIT_MAX_MESSAGES = 500
"""The agent's group-commit size (its default)."""
MAX_INFLIGHT = 1_000
"""Broker window per client: twice the group, so the next group arrives while one commits."""
PUBLISH_INFLIGHT = 1_000
DRAIN_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mosquitto(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    (directory / "data").mkdir()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        "user root\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {directory}/data/\n"
        "max_queued_messages 0\n"  # 0: no limit, the broker never drops a queued message
        "max_queued_bytes 0\n"
        f"max_inflight_messages {MAX_INFLIGHT}\n"
        "set_tcp_nodelay true\n"
    )
    log = (directory / "mosquitto.log").open("wb")
    proc = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError((directory / "mosquitto.log").read_text())
        time.sleep(0.02)


def make_session(port: int, client_id: str) -> None:
    """Create a persistent QoS 1 session for ``client_id`` and go offline."""
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_subscribe = lambda *args: done.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe(UP_SUBSCRIPTION, qos=1)
    if not done.wait(10):
        raise RuntimeError("no SUBACK")
    client.disconnect()
    client.loop_stop()


def frames(count: int) -> list[tuple[str, bytes]]:
    body = encode_body(Heartbeat(battery_pct=80, battery_mv=3900, status=0, queue_depth=0))
    out = []
    for i in range(count):
        device_id = DEVICES[i % len(DEVICES)]
        seq = i // len(DEVICES) + 1
        raw = encode_frame(
            kind=Kind.HEARTBEAT,
            key_id=1,
            flags=0,
            device_id=device_id,
            seq=seq,
            time_s=FRAME_TIME_S + seq,
            time_ms=0,
            body=body,
            key=DEVICE_KEY,
        )
        out.append((up_topic(device_id), raw))
    return out


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> float:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(PUBLISH_INFLIGHT)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    start = time.perf_counter()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos[-PUBLISH_INFLIGHT:]:
        info.wait_for_publish(DRAIN_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return elapsed


def drain_mosquitto_sub(port: int, client_id: str, count: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-i",
            client_id,
            "-c",
            "-q",
            "1",
            "-t",
            UP_SUBSCRIPTION,
            "-C",
            str(count),
        ],
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=DRAIN_TIMEOUT_S,
    )
    return time.perf_counter() - start


def drain_bare_paho(port: int, client_id: str, count: int) -> float:
    done = threading.Event()
    received = 0

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_message = on_message
    start = time.perf_counter()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not done.wait(DRAIN_TIMEOUT_S):
        raise RuntimeError(f"bare paho got {received} of {count}")
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return elapsed


def agent_settings(
    port: int,
    client_id: str,
    queue_path: Path,
    sync: SqliteSynchronous,
    cloud: str = "http://127.0.0.1:9",
    api_key: str = "unused",
) -> EdgeSettings:
    return EdgeSettings(
        mqtt_host="127.0.0.1",
        mqtt_port=port,
        mqtt_client_id=client_id,
        cloud_url=cloud,
        gateway_id=GATEWAY_ID,
        gateway_api_key=SecretStr(api_key),
        queue_path=queue_path,
        sqlite_synchronous=sync,
        commit_max_messages=COMMIT_MAX_MESSAGES,
    )


def drain_agent(settings: EdgeSettings, count: int) -> tuple[float, int]:
    queue = EdgeQueue(settings.queue_path, synchronous=settings.sqlite_synchronous)
    ingest = MqttIngest(settings, queue)
    start = time.perf_counter()
    ingest.start()
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while ingest.stats().stored < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"agent stored {ingest.stats().stored} of {count}")
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    groups = ingest.stats().groups
    ingest.stop()
    queue.close()
    return elapsed, groups


def bytes_per_event(path: Path) -> tuple[float, int]:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    used = (
        db.execute("PRAGMA page_count").fetchone()[0]
        - db.execute("PRAGMA freelist_count").fetchone()[0]
    ) * page_size
    items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    payload = db.execute("SELECT total(length(payload)) FROM items").fetchone()[0]
    db.close()
    return used / items, int(payload / items)


def drain_to_cloud(directory: Path, queue_path: Path, limit: int) -> tuple[int, float]:
    """Forward the first ``limit`` queued events to the real cloud API; events/s."""
    trimmed = directory / "drain.sqlite3"
    src = sqlite3.connect(queue_path)
    src.execute("VACUUM INTO ?", (str(trimmed),))
    src.close()
    db = sqlite3.connect(trimmed)
    db.execute(
        "DELETE FROM items WHERE gw_seq NOT IN (SELECT gw_seq FROM items ORDER BY gw_seq LIMIT ?)",
        (limit,),
    )
    db.commit()
    db.close()
    proc, url, api_key = start_cloud_process(directory, DEVICES, DEVICE_KEY)
    try:
        settings = agent_settings(0, "unused", trimmed, "FULL", url, api_key)
        with EdgeQueue(trimmed) as queue:
            depth = queue.depth()
            forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
            start = time.perf_counter()
            forwarder.start()
            while queue.depth():
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
            forwarder.stop()
            if forwarder.forwarded != depth:
                raise RuntimeError(f"forwarded {forwarder.forwarded} of {depth}")
    finally:
        proc.terminate()
        proc.join(10)
    return depth, depth / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000, help="messages queued (default 50k)")
    parser.add_argument("--drain", type=int, default=20_000, help="events forwarded to the cloud")
    parser.add_argument("--quick", action="store_true", help="10k messages, 5k forwarded")
    args = parser.parse_args()
    count, drain = (10_000, 5_000) if args.quick else (args.count, args.drain)
    with tempfile.TemporaryDirectory(prefix="edge-ingest-bench-") as tmp:
        directory = Path(tmp)
        broker, port = start_mosquitto(directory)
        try:
            contenders = ["bench-sub", "bench-paho", "bench-agent-full", "bench-agent-normal"]
            for client_id in contenders:
                make_session(port, client_id)
            messages = frames(count)
            publish_s = publish_all(port, messages)
            print(
                f"edge ingest: {count} signed heartbeat frames ({len(messages[0][1])} B) of "
                f"{len(DEVICES)} wearables, queued for {len(contenders)} offline persistent "
                f"QoS 1 sessions in {publish_s:.1f} s"
            )
            print(
                f"broker: private Mosquitto, max_inflight_messages {MAX_INFLIGHT}, "
                "max_queued_messages 0 (unlimited), persistence on; "
                f"agent: group commit <= {COMMIT_MAX_MESSAGES} messages, "
                f"cores {os.cpu_count()}"
            )
            results: dict[str, float] = {}
            timings: list[tuple[str, Callable[[], float]]] = [
                ("mosquitto_sub", lambda: drain_mosquitto_sub(port, "bench-sub", count)),
                ("bare paho-mqtt", lambda: drain_bare_paho(port, "bench-paho", count)),
            ]
            for name, run in timings:
                results[name] = count / run()
            groups: dict[str, int] = {}
            levels: tuple[SqliteSynchronous, ...] = ("FULL", "NORMAL")
            for sync in levels:
                settings = agent_settings(
                    port, f"bench-agent-{sync.lower()}", directory / f"q-{sync}.sqlite3", sync
                )
                elapsed, groups[sync] = drain_agent(settings, count)
                results[f"agent synchronous={sync}"] = count / elapsed
        finally:
            broker.terminate()
            broker.wait(10)
        paho = results["bare paho-mqtt"]
        sub = results["mosquitto_sub"]
        print(f"{'contender':<28}{'msg/s':>10}{'x paho':>9}{'x mosquitto_sub':>17}")
        for name, rate in results.items():
            print(f"{name:<28}{rate:>10,.0f}{rate / paho:>9.2f}{rate / sub:>17.2f}")
        print(
            f"agent groups committed: FULL {groups['FULL']}, NORMAL {groups['NORMAL']} "
            f"(mean {count / groups['FULL']:.0f} messages per fsync with FULL)"
        )
        ratio = results["agent synchronous=FULL"] / paho
        print(
            f"RATIO agent (durable, FULL) / bare paho = {ratio:.2f} (target >= 0.70): "
            f"{'MET' if ratio >= 0.7 else 'NOT MET'}"
        )
        per_event, payload = bytes_per_event(directory / "q-FULL.sqlite3")
        print(
            f"queue on disk: {per_event:.0f} bytes per event (payload {payload} B; "
            "row, index on (device_id, seq) and on (priority, gw_seq))"
        )
        forwarded, rate = drain_to_cloud(directory, directory / "q-FULL.sqlite3", drain)
        print(
            f"backlog drain to the local cloud API (full verification, SQLite, own process): "
            f"{forwarded} events at {rate:,.0f} events/s "
            f"({rate / (len(DEVICES) / 60):,.0f}x real time of {len(DEVICES)} wearables at one "
            "heartbeat a minute)"
        )


if __name__ == "__main__":
    main()
