"""SOS latency: a wearable's MQTT publish -> the alert on a connected SSE client (issue 7).

The whole path is real: a private Mosquitto, the edge agent's MQTT ingest (commit
before PUBACK) and forwarder (the SOS fast lane) in this process, the cloud app
(uvicorn, SQLite) in its own process, and an SSE client on
``GET /api/v1/alerts/stream`` in this process. Each sample publishes one signed
SOS frame (QoS 1) of wearable 0000a0ff and stops the clock when its ``created``
event arrives on the stream; the alert is then resolved through the API so the
next press makes a new alert.

Two conditions:

- **idle**: nothing else flows;
- **load**: first the pipeline's capacity is measured (a burst of signed heartbeat
  frames from 8 wearables, publish -> all forwarded to the cloud, events/s), then
  a paced publisher sends heartbeats at half that rate while the SOS samples run.

    .venv/bin/python bench/sos_latency.py              # 100 samples each, 20,000-frame burst
    .venv/bin/python bench/sos_latency.py --quick      # 30 samples, 5,000-frame burst

Caveat: the edge, the SSE client and the publishers share this process (and the
machine's cores with the cloud process), so the figures are an upper bound for a
gateway and a server on separate machines.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import multiprocessing
import queue
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import paho.mqtt.client as mqtt
from edge_ingest import free_port, start_mosquitto
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from edge_agent.forwarder import Forwarder
from edge_agent.mqtt_ingest import MqttIngest
from edge_agent.queue import EdgeQueue
from edge_agent.settings import EdgeSettings
from patrol_protocol.frames import Heartbeat, Kind, Sos, encode_body, encode_frame
from patrol_protocol.topics import up_topic

SERVER_KEY = bytes(range(100, 132))
ADMIN_TOKEN = "bench-admin-token"
GATEWAY_ID = "gw-sos-bench"
DEVICE_KEY = bytes(range(32))
SOS_DEVICE = 0x0000A0FF
LOAD_DEVICES = [0x0000A001 + i for i in range(8)]
FRAME_TIME_S = 1_795_580_000
TIMEOUT_S = 120.0


def _serve(directory: str, out: Queue[Any]) -> None:
    import logging

    import uvicorn

    from cloud_api.app import create_app
    from cloud_api.crypto_store import SecretBox
    from cloud_api.db import make_engine, session_scope
    from cloud_api.provisioning import create_gateway, create_site, register_wearable
    from cloud_api.settings import Settings

    db_url = f"sqlite:///{directory}/cloud.db"
    settings = Settings(
        database_url=db_url,
        server_key=SecretStr(base64.b64encode(SERVER_KEY).decode()),
        admin_token=SecretStr(ADMIN_TOKEN),
    )
    logging.getLogger("cloud_api.alerts").setLevel(logging.ERROR)  # one line per alert
    app = create_app(settings)
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        site = create_site(session, name="Bench site")
        _gateway, api_key = create_gateway(session, gateway_id=GATEWAY_ID, site=site)
        for device_id in [SOS_DEVICE, *LOAD_DEVICES]:
            register_wearable(
                session, box=SecretBox(SERVER_KEY), device_id=device_id, key=DEVICE_KEY, site=site
            )
    engine.dispose()
    port = free_port()
    out.put((f"http://127.0.0.1:{port}", api_key))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def frame(kind_body: Any, device_id: int, seq: int) -> bytes:
    kind = Kind.SOS if isinstance(kind_body, Sos) else Kind.HEARTBEAT
    return encode_frame(
        kind=kind,
        key_id=1,
        flags=0,
        device_id=device_id,
        seq=seq,
        time_s=int(time.time()) if kind == Kind.SOS else FRAME_TIME_S + seq,
        time_ms=0,
        body=encode_body(kind_body),
        key=DEVICE_KEY,
    )


HEARTBEAT = Heartbeat(battery_pct=80, battery_mv=3900, status=0, queue_depth=0)


class Stream:
    """SSE client: ``created`` events by the alert's seq, with the arrival time."""

    def __init__(self, url: str) -> None:
        self.created: queue.Queue[tuple[int, int, float]] = queue.Queue()
        self.ready = threading.Event()
        self._client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=httpx.Timeout(30.0, read=None),
        )
        threading.Thread(target=self._run, daemon=True).start()
        if not self.ready.wait(30):
            raise RuntimeError("SSE stream did not open")

    def close(self) -> None:
        self._client.close()

    def _run(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # closed by close()
            self._read()

    def _read(self) -> None:
        with self._client.stream("GET", "/api/v1/alerts/stream") as response:
            for line in response.iter_lines():
                if line.startswith(": connected"):
                    self.ready.set()
                elif line.startswith("data: "):
                    now = time.perf_counter()
                    alert = json.loads(line[6:])
                    if alert["action"] == "created":
                        self.created.put((alert["seq"], alert["id"], now))


class Pipeline:
    """Mosquitto + edge ingest + forwarder + cloud process + SSE client."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.broker, self.port = start_mosquitto(directory)
        ctx = multiprocessing.get_context("spawn")
        out: Queue[Any] = ctx.Queue()
        self.cloud = ctx.Process(target=_serve, args=(str(directory), out), daemon=True)
        self.cloud.start()
        self.url, api_key = out.get(timeout=60)
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        settings = EdgeSettings(
            mqtt_host="127.0.0.1",
            mqtt_port=self.port,
            mqtt_client_id="edge-bench",
            cloud_url=self.url,
            gateway_id=GATEWAY_ID,
            gateway_api_key=SecretStr(api_key),
            queue_path=directory / "edge.sqlite3",
        )
        self.queue = EdgeQueue(settings.queue_path)
        self.forwarder = Forwarder(settings, self.queue, clock_synced=lambda: True)
        # As EdgeAgent wires it: a commit wakes the forwarder (no wait for its interval).
        self.ingest = MqttIngest(
            settings,
            self.queue,
            on_committed=lambda result: self.forwarder.wake() if result.stored else None,
        )
        self.ingest.start()
        self.forwarder.start()
        self.stream = Stream(self.url)
        self.api = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
        )
        self.wearable = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wearable-sos")
        self.wearable.connect("127.0.0.1", self.port)
        self.wearable.loop_start()
        self.sos_seq = 0

    def sos_latency_ms(self) -> float:
        self.sos_seq += 1
        raw = frame(Sos(1), SOS_DEVICE, self.sos_seq)
        start = time.perf_counter()
        self.wearable.publish(up_topic(SOS_DEVICE), raw, qos=1)
        while True:
            seq, alert_id, arrived = self.stream.created.get(timeout=TIMEOUT_S)
            if seq == self.sos_seq:
                break
        r = self.api.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "bench"})
        r.raise_for_status()
        return (arrived - start) * 1000

    def close(self) -> None:
        self.wearable.loop_stop()
        self.forwarder.stop()
        self.ingest.stop()
        self.queue.close()
        self.stream.close()  # uvicorn's graceful shutdown waits for open streams
        self.cloud.terminate()
        self.cloud.join(10)
        if self.cloud.is_alive():
            self.cloud.kill()
            self.cloud.join(10)
        self.broker.terminate()
        self.broker.wait(10)


class LoadPublisher:
    """Heartbeats of 8 wearables at ``rate`` frames/s (paced, QoS 1), from seq ``first``."""

    def __init__(self, port: int, first_seq: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wearables-load")
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.seq = first_seq
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def burst(self, count: int) -> None:
        infos = []
        for _ in range(count // len(LOAD_DEVICES)):
            self.seq += 1
            for device in LOAD_DEVICES:
                infos.append(
                    self.client.publish(up_topic(device), frame(HEARTBEAT, device, self.seq), qos=1)
                )
        for info in infos[-1000:]:
            info.wait_for_publish(TIMEOUT_S)
        self.sent += len(infos)

    def paced(self, rate: float) -> None:
        def run() -> None:
            interval = len(LOAD_DEVICES) / rate
            next_at = time.perf_counter()
            while not self._stop.is_set():
                self.seq += 1
                for device in LOAD_DEVICES:
                    self.client.publish(up_topic(device), frame(HEARTBEAT, device, self.seq), qos=1)
                self.sent += len(LOAD_DEVICES)
                next_at += interval
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.client.loop_stop()


def capacity(pipe: Pipeline, load: LoadPublisher, count: int) -> float:
    """Frames/s from the first publish until the forwarder delivered all of them."""
    before = pipe.forwarder.forwarded
    start = time.perf_counter()
    load.burst(count)
    target = before + (count // len(LOAD_DEVICES)) * len(LOAD_DEVICES)
    deadline = time.monotonic() + 600
    while pipe.forwarder.forwarded < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"forwarded {pipe.forwarder.forwarded - before} of {count}")
        time.sleep(0.01)
    return (target - before) / (time.perf_counter() - start)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def report(name: str, samples: list[float]) -> None:
    print(
        f"{name:<34} n={len(samples):>4}  p50 {percentile(samples, 50):7.1f} ms  "
        f"p99 {percentile(samples, 99):7.1f} ms  max {max(samples):7.1f} ms  "
        f"mean {statistics.fmean(samples):7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--burst", type=int, default=20_000, help="frames for the capacity run")
    parser.add_argument("--quick", action="store_true", help="30 samples, 5,000-frame burst")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.burst = 30, 5_000
    with tempfile.TemporaryDirectory(prefix="sos-bench-") as tmp:
        pipe = Pipeline(Path(tmp))
        load = LoadPublisher(pipe.port, first_seq=0)
        try:
            for _ in range(3):  # warm-up: connections, caches
                pipe.sos_latency_ms()
            idle = [pipe.sos_latency_ms() for _ in range(args.samples)]
            report("idle", idle)
            sys.stdout.flush()
            rate = capacity(pipe, load, args.burst)
            print(f"capacity (publish -> forwarded to cloud): {rate:,.0f} frames/s", flush=True)
            load.paced(rate / 2)
            time.sleep(2.0)
            started_sent, started = load.sent, time.perf_counter()
            busy = []
            for _ in range(args.samples):
                busy.append(pipe.sos_latency_ms())
                time.sleep(0.05)
            achieved = (load.sent - started_sent) / (time.perf_counter() - started)
            report(f"load {rate / 2:,.0f} frames/s offered", busy)
            print(f"load achieved while sampling: {achieved:,.0f} frames/s")
            goal = "met" if percentile(busy, 99) < 1000 else "NOT met"
            print(f"goal p99 under load < 1000 ms: {goal}")
        finally:
            load.stop()
            pipe.close()


if __name__ == "__main__":
    main()
