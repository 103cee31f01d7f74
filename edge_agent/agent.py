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
"""

import logging
import threading
from dataclasses import dataclass

from edge_agent.ble.scanner import BleIngest, BleStatus
from edge_agent.broker import EmbeddedBroker
from edge_agent.forwarder import Forwarder
from edge_agent.mqtt_ingest import IngestStats, MqttIngest
from edge_agent.queue import AppendResult, EdgeQueue, QueueStats
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
        """Open the queue; nothing connects until :meth:`start`."""
        self.settings = settings
        self.queue = EdgeQueue(
            settings.queue_path,
            synchronous=settings.sqlite_synchronous,
            budget_bytes=settings.queue_budget_bytes,
        )
        self.broker: EmbeddedBroker | None = None
        self.forwarder = Forwarder(settings, self.queue)
        self.ingest: MqttIngest | None = None
        self.ble: BleIngest | None = None
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
        self.forwarder.start()
        self.ingest = MqttIngest(settings, self.queue, on_committed=self._committed)
        self.ingest.start()
        if settings.ble_enabled:  # never fatal: no adapter is a reported status, not an error
            self.ble = BleIngest(settings, self.queue, on_committed=self._committed)
            self.ble.start()
        if self.broker is not None and not self.wait_ready(_EMBEDDED_READY_TIMEOUT_S):
            raise RuntimeError("the agent did not subscribe on its embedded broker")

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
        if self.ingest is not None:
            self.ingest.stop()
        if self.ble is not None:
            self.ble.stop()
        self.forwarder.stop()
        if self.broker is not None:
            self.broker.stop()
        self.queue.close()
        _log.info("edge agent stopped")

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
