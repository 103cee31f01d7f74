"""Local ``/metrics`` (Prometheus text format) and ``/healthz`` (JSON) of the running agent.

Metrics come from the official client library (``prometheus_client``) in a
registry of the agent's own (no process-global state, so tests can run several
agents). Gauges and counters are read from the components at scrape time by a
custom collector (nothing is counted twice); the forward latency is a real
:class:`~prometheus_client.Histogram` observed by the forwarder after each POST
the cloud answered.

Both endpoints listen on ``metrics_host:metrics_port`` (loopback by default),
served by a small threaded HTTP server from the standard library: a scrape
never waits for a commit or a forward.
"""

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from edge_agent.ble.scanner import BleIngest
from edge_agent.forwarder import Forwarder
from edge_agent.health import PRIORITY_NAMES, HealthMonitor
from edge_agent.mqtt_ingest import IngestStats, MqttIngest

_log = logging.getLogger(__name__)

PREFIX: Final = "patrol_edge"
FORWARD_LATENCY_BUCKETS_S: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""From one small urgent batch on a LAN (~10 ms) to a full batch over a slow uplink."""
BLE_STATES: Final = ("disabled", "stopped", "starting", "scanning", "unavailable")
HEALTHZ_FAILING_STATUS: Final = HTTPStatus.SERVICE_UNAVAILABLE


def forward_latency_histogram(registry: CollectorRegistry) -> Histogram:
    """The histogram the forwarder observes (seconds per answered POST, by lane)."""
    return Histogram(
        f"{PREFIX}_forward_latency_seconds",
        "Duration of a POST /api/v1/ingest the cloud answered, by forwarder lane.",
        ["lane"],
        buckets=FORWARD_LATENCY_BUCKETS_S,
        registry=registry,
    )


class AgentCollector(Collector):
    """Reads the agent's state at scrape time."""

    def __init__(
        self,
        monitor: HealthMonitor,
        forwarder: Forwarder,
        *,
        ingest: Callable[[], MqttIngest | None],
        ble: Callable[[], BleIngest | None],
    ) -> None:
        """``ingest`` / ``ble`` are getters: those components exist only once started."""
        self._monitor = monitor
        self._forwarder = forwarder
        self._ingest = ingest
        self._ble = ble

    def describe(self) -> list[Metric]:
        """Nothing up front: the registry must not call :meth:`collect` at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One family per quantity; counters end in ``_total``."""
        health = self._monitor.snapshot()
        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_depth",
            "Items waiting to be forwarded, by priority.",
            labels=["priority"],
        )
        for name, value in (
            (PRIORITY_NAMES[0], health.queue_urgent),
            (PRIORITY_NAMES[1], health.queue_scan),
            (PRIORITY_NAMES[2], health.queue_event),
            (PRIORITY_NAMES[3], health.queue_bulk),
        ):
            depth.add_metric([name], value)
        yield depth
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_bytes",
            "Disk-budget cost of the queued items.",
            value=health.queue_bytes,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_oldest_unsent_age_seconds",
            "Age of the oldest item not yet final at the cloud (0 when the queue is empty).",
            value=health.oldest_unsent_age_s or 0.0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_dead_letters",
            "Dead letters held in the queue file.",
            value=health.dead_letters,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_evicted",
            "Items evicted by the disk budget (since the queue file was created).",
            value=health.evicted_total,
        )

        ingest = self._ingest()
        stats = ingest.stats() if ingest is not None else IngestStats(False, 0, 0, 0, 0, 0, 0)
        for name, doc, value in (
            ("ingest_received", "MQTT messages received since start.", stats.received),
            (
                "ingest_stored",
                "MQTT messages committed to the queue since start.",
                stats.stored,
            ),
            (
                "ingest_duplicates",
                "MQTT redeliveries recognised as duplicates since start.",
                stats.duplicates,
            ),
            (
                "ingest_dead_lettered",
                "MQTT messages dead-lettered by the structural check since start.",
                stats.dead_lettered,
            ),
            ("ingest_groups", "Group commits since start.", stats.groups),
            (
                "acks_published",
                "Ack frames published to wearables since start.",
                stats.acks_published,
            ),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)

        fwd = self._forwarder
        yield CounterMetricFamily(
            f"{PREFIX}_forwarded",
            "Items the cloud answered finally (accepted/duplicate/rejected).",
            value=fwd.forwarded,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_forward_rejected",
            "Items the cloud rejected (kept as dead letters).",
            value=fwd.rejected,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_forward_parked",
            "Items parked after the cloud refused them as a whole.",
            value=fwd.parked,
        )
        batches = CounterMetricFamily(
            f"{PREFIX}_forward_batches", "Forward attempts by result.", labels=["result"]
        )
        batches.add_metric(["ok"], fwd.batches_ok)
        batches.add_metric(["failed"], fwd.batches_failed)
        yield batches
        yield CounterMetricFamily(
            f"{PREFIX}_forward_throttled",
            "Answers 429/503 from the cloud (its Retry-After was honoured).",
            value=fwd.throttled,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_cloud_failing", "1 while forwarding fails.", value=int(health.cloud_failing)
        )

        yield GaugeMetricFamily(
            f"{PREFIX}_broker_connected",
            "1 while connected to the site broker.",
            value=int(health.broker_connected),
        )
        ble_state = StateSetMetricFamily(f"{PREFIX}_ble_adapter_state", "BLE scanner state.")
        ble_state.add_metric([], {state: state == health.ble_state for state in BLE_STATES})
        yield ble_state
        ble = self._ble()
        if ble is not None:
            status = ble.status()
            yield CounterMetricFamily(
                f"{PREFIX}_ble_adverts", "BLE sightings buffered since start.", value=status.adverts
            )
            yield CounterMetricFamily(
                f"{PREFIX}_ble_dropped",
                "BLE sightings dropped on a full buffer since start.",
                value=status.dropped,
            )
            yield CounterMetricFamily(
                f"{PREFIX}_ble_failures",
                "BLE scanner starts or checks that failed since start.",
                value=status.failures,
            )

        yield GaugeMetricFamily(
            f"{PREFIX}_clock_synced",
            "1 when the gateway clock is NTP-synchronised.",
            value=int(health.clock_ntp_synced),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_disk_free_bytes",
            "Free bytes on the queue's file system.",
            value=health.disk_free_bytes,
        )
        if health.cpu_temp_c is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_cpu_temperature_celsius", "CPU temperature.", value=health.cpu_temp_c
            )
        yield GaugeMetricFamily(
            f"{PREFIX}_healthy",
            "1 when /healthz says ok or degraded, 0 when failing.",
            value=int(health.status != "failing"),
        )


class _Handler(BaseHTTPRequestHandler):
    server: "MetricsServer"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                body = generate_latest(self.server.registry)
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, body)
            elif path == "/healthz":
                health = self.server.monitor.snapshot()
                code = HEALTHZ_FAILING_STATUS if health.status == "failing" else HTTPStatus.OK
                payload = health.observation_body()
                payload.pop("kind")
                payload["problems"] = list(health.problems)
                self._send(code, "application/json", json.dumps(payload).encode())
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"try /healthz or /metrics\n")
        except Exception:  # one failed scrape must not kill the server thread
            _log.exception("serving %s failed", path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", b"internal error\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        _log.debug("%s " + format, self.address_string(), *args)


class MetricsServer(ThreadingHTTPServer):
    """``/metrics`` and ``/healthz`` on ``host:port`` (port 0: any free port, see :attr:`port`)."""

    daemon_threads = True

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, monitor: HealthMonitor
    ) -> None:
        """Bind now (a port in use fails the agent's start loudly)."""
        super().__init__((host, port), _Handler)
        self.registry = registry
        self.monitor = monitor
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server_address[1])

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="edge-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(10.0)
