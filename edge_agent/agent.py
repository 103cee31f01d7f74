"""The edge agent: queue + MQTT ingest + forwarder (+ the demo's embedded broker).

In-process use (the demo)::

    settings = EdgeSettings(cloud_url=..., gateway_id="gw-demo", gateway_api_key=...,
                            queue_path=Path("/tmp/demo/edge.sqlite3"),
                            embedded_broker=True, mqtt_port=0)
    agent = EdgeAgent(settings)
    agent.start()            # embedded broker: returns once the agent is subscribed on it
    ...                      # wearables connect to 127.0.0.1:agent.mqtt_port
    agent.stop()

The CLI (``patrol-edge run``) does the same and stops on SIGTERM / SIGINT.

Besides ingest and forwarding the agent runs its health reporter (a
``gateway_health`` observation every ``health_interval_s``, edge_agent.health)
and, unless ``metrics_enabled`` is off, the local ``/healthz`` and ``/metrics``
endpoints (edge_agent.metrics). Before ingest starts it asks the clock once, so
no item is committed before the agent knows whether to flag its receive time.
"""

import logging
import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from edge_agent.ble.scanner import BleIngest, BleStatus
from edge_agent.broker import EmbeddedBroker
from edge_agent.clock import ClockWatch
from edge_agent.forwarder import CLOCK_CHECK_INTERVAL_S, Forwarder
from edge_agent.health import Health, HealthMonitor, HealthReporter
from edge_agent.local_alarm import LocalAlarm
from edge_agent.metrics import AgentCollector, MetricsServer, forward_latency_histogram
from edge_agent.mqtt_ingest import IngestStats, MqttIngest
from edge_agent.queue import AppendResult, EdgeQueue, QueueStats
from edge_agent.runlock import QueueLock
from edge_agent.settings import EdgeSettings

_log = logging.getLogger(__name__)

_EMBEDDED_READY_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """One look at the agent, for the CLI and the demo."""

    mqtt: IngestStats
    queue: QueueStats
    forwarded: int
    rejected_by_cloud: int
    ble: BleStatus | None = None
    """None when BLE ingest is disabled (``ble_enabled``)."""


class EdgeAgent:
    """Wires the components; each keeps its own thread, the agent only starts and stops them."""

    def __init__(self, settings: EdgeSettings) -> None:
        """Lock and open the queue; nothing connects until :meth:`start`.

        Raises :class:`edge_agent.runlock.QueueLockedError` when another agent runs on
        the same queue file."""
        self.settings = settings
        self._lock = QueueLock(settings.queue_path).acquire()
        try:
            self.queue = EdgeQueue(
                settings.queue_path,
                synchronous=settings.sqlite_synchronous,
                budget_bytes=settings.queue_budget_bytes,
            )
        except BaseException:
            self._lock.release()
            raise
        self.broker: EmbeddedBroker | None = None
        self.clock = ClockWatch(self.queue, interval_s=CLOCK_CHECK_INTERVAL_S)
        self.registry = CollectorRegistry()
        latency = forward_latency_histogram(self.registry)
        self.forwarder = Forwarder(
            settings,
            self.queue,
            clock=self.clock,
            observe_latency_s=lambda lane, s: latency.labels(lane).observe(s),
        )
        self.ingest: MqttIngest | None = None
        self.ble: BleIngest | None = None
        self.monitor = HealthMonitor(
            settings,
            self.queue,
            self.forwarder,
            self.clock,
            ingest=lambda: self.ingest,
            ble=lambda: self.ble,
        )
        self.registry.register(
            AgentCollector(
                self.monitor, self.forwarder, ingest=lambda: self.ingest, ble=lambda: self.ble
            )
        )
        self.reporter = HealthReporter(
            self.monitor,
            self.queue,
            self.clock,
            settings.health_interval_s,
            on_committed=self._committed,
        )
        self.metrics_server: MetricsServer | None = None
        self.local_alarm: LocalAlarm | None = None  # alerts (issue 7)
        self._stopped = threading.Event()

    @property
    def mqtt_port(self) -> int:
        """The port wearables connect to (the embedded broker's when there is one)."""
        return self.broker.port if self.broker is not None else self.settings.mqtt_port

    def start(self) -> None:
        """Start the broker (if embedded), the forwarder, then the ingest."""
        settings = self.settings
        if settings.embedded_broker:
            self.broker = EmbeddedBroker(settings.mqtt_host, settings.mqtt_port)
            self.broker.start()
            settings = settings.model_copy(update={"mqtt_port": self.broker.port})
            _log.warning(
                "embedded MQTT broker on %s:%d: DEMO ONLY (anonymous, no ACL, in memory)",
                settings.mqtt_host,
                self.broker.port,
            )
        self.clock.check(force=True)  # before the first commit: flag unsynced stamps
        self.forwarder.start()
        self.ingest = MqttIngest(settings, self.queue, on_committed=self._committed)
        self.ingest.start()
        if settings.ble_enabled:  # never fatal: no adapter is a reported status, not an error
            self.ble = BleIngest(settings, self.queue, on_committed=self._committed)
            self.ble.start()
        if self.broker is not None and not self.wait_ready(_EMBEDDED_READY_TIMEOUT_S):
            raise RuntimeError("the agent did not subscribe on its embedded broker")
        self.reporter.start()
        # alerts (issue 7): an SOS the cloud has not taken within 2 s is raised on the
        # site broker's alarm topic for sirens/radios (edge_agent.local_alarm).
        self.local_alarm = LocalAlarm.from_settings(settings, self.queue)
        self.local_alarm.start()
        if settings.metrics_enabled:
            self._serve_metrics()

    def _serve_metrics(self) -> None:
        """Bind /healthz and /metrics; a port in use is logged loudly, never fatal:
        relaying events matters more than the local endpoints."""
        s = self.settings
        try:
            self.metrics_server = MetricsServer(
                s.metrics_host, s.metrics_port, self.registry, self.monitor
            )
        except OSError as exc:
            _log.error(
                "cannot serve /healthz and /metrics on %s:%d (%s); the agent runs without them",
                s.metrics_host,
                s.metrics_port,
                exc,
            )
            return
        self.metrics_server.start()
        _log.info("/healthz and /metrics on http://%s:%d", s.metrics_host, self.metrics_server.port)

    def health(self) -> Health:
        """A health snapshot now (what /healthz serves)."""
        return self.monitor.snapshot()

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the agent is subscribed on the broker (False on timeout).

        Frames published before the agent's first subscription are not queued for
        it; the wearables resend them (no ack), but a demo would rather wait.
        """
        return self.ingest is not None and self.ingest.wait_ready(timeout_s)

    def _committed(self, result: AppendResult) -> None:
        if result.stored:
            self.forwarder.wake()

    def stop(self) -> None:
        """Drain the ingest buffer, stop forwarding, stop the broker, close the queue."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.reporter.stop()
        if self.local_alarm is not None:  # alerts (issue 7)
            self.local_alarm.stop()
        if self.ingest is not None:
            self.ingest.stop()
        if self.ble is not None:
            self.ble.stop()
        self.forwarder.stop()
        if self.broker is not None:
            self.broker.stop()
        self.queue.close()
        self._lock.release()
        _log.info("edge agent stopped")

    def alive(self) -> bool:
        """The systemd watchdog's question: are the workers running and the queue answering?

        A broker or cloud outage is not "dead" (a restart would not help); a dead
        committer or forwarder thread, or a queue call that hangs, is.
        """
        ingest = self.ingest
        if ingest is None or not ingest.committer_alive or not self.forwarder.alive:
            return False
        self.queue.last_gw_seq()  # a cheap read that blocks (no ping) if the queue is wedged
        return True

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until :meth:`stop` was called (or the timeout passed)."""
        return self._stopped.wait(timeout_s)

    def status(self) -> AgentStatus:
        """Counters of every component."""
        ingest = self.ingest
        if ingest is None:
            raise RuntimeError("agent not started")
        return AgentStatus(
            mqtt=ingest.stats(),
            queue=self.queue.stats(),
            forwarded=self.forwarder.forwarded,
            rejected_by_cloud=self.forwarder.rejected,
            ble=None if self.ble is None else self.ble.status(),
        )

    def __enter__(self) -> "EdgeAgent":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
