"""Gateway health: one snapshot for the cloud heartbeat, ``/healthz`` and ``/metrics``.

The snapshot is read from the components at the moment it is asked for (queue
depth per priority, oldest unsent item, broker, BLE adapter, disk, CPU
temperature, clock). :class:`HealthReporter` queues one as a ``gateway_health``
observation every ``health_interval_s``: it travels the normal path
(``POST /api/v1/ingest``, authenticated by the gateway's API key only, so it is a
lower-assurance gateway observation, docs/protocol.md) at the bulk priority: a
heartbeat that could not be sent is superseded by the next, and the disk budget
may downsample old ones.

``/healthz`` answers from the same snapshot: ``ok`` and ``degraded`` are 200 (the
agent keeps every event; a technician should look), ``failing`` is 503 (the agent
cannot take events: no broker connection, or a worker thread died).
"""

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Final, Literal

from edge_agent.ble.scanner import BleIngest
from edge_agent.clock import ClockWatch
from edge_agent.forwarder import Forwarder
from edge_agent.mqtt_ingest import MqttIngest
from edge_agent.queue import (
    PRIORITY_BULK,
    PRIORITY_EVENT,
    PRIORITY_SCAN,
    PRIORITY_URGENT,
    AppendResult,
    EdgeQueue,
    observation,
)
from edge_agent.settings import EdgeSettings

_log = logging.getLogger(__name__)

OBSERVATION_KIND: Final = "gateway_health"
"""cloud_api.sink.schema.M_GATEWAY carries it to InfluxDB as ``gateway_health`` points."""
PRIORITY_NAMES: Final[dict[int, str]] = {
    PRIORITY_URGENT: "urgent",
    PRIORITY_SCAN: "scan",
    PRIORITY_EVENT: "event",
    PRIORITY_BULK: "bulk",
}
LOW_DISK_FRACTION: Final = 0.05
"""Below 5 % free on the queue's file system the gateway is degraded: the disk budget
will start evicting soon, and an SD card that full also slows every fsync."""
MILLIDEGREES_PER_DEGREE: Final = 1000.0
CPU_ZONE_TYPES: Final = ("cpu-thermal", "cpu_thermal", "soc_thermal", "x86_pkg_temp")
"""thermal_zone*/type values of the CPU (Raspberry Pi OS: ``cpu-thermal``); any other
zone is used only when none of these exists."""

HealthStatus = Literal["ok", "degraded", "failing"]


def agent_version() -> str:
    """The installed package's version ("unknown" when run from a bare source tree)."""
    try:
        return metadata.version("patrol-verification")
    except metadata.PackageNotFoundError:
        return "unknown"


def cpu_temperature_c(thermal_path: Path) -> float | None:
    """CPU temperature in degrees C from ``<thermal_path>/thermal_zone*/temp``, or None.

    None when the folder does not exist (containers, most VMs) or no zone reads.
    """
    if not thermal_path.is_dir():
        return None
    zones: list[tuple[int, Path]] = []
    for zone in sorted(thermal_path.glob("thermal_zone*")):
        try:
            zone_type = (zone / "type").read_text().strip()
        except OSError:
            zone_type = ""
        zones.append((0 if zone_type in CPU_ZONE_TYPES else 1, zone))
    for _rank, zone in sorted(zones):
        try:
            return round(int((zone / "temp").read_text().strip()) / MILLIDEGREES_PER_DEGREE, 1)
        except (OSError, ValueError):
            continue
    return None


@dataclass(frozen=True, slots=True)
class Health:
    """One look at the gateway; field names are the observation's keys."""

    status: HealthStatus
    problems: tuple[str, ...]
    agent_version: str
    uptime_s: int
    queue_depth: int
    queue_urgent: int
    queue_scan: int
    queue_event: int
    queue_bulk: int
    queue_bytes: int
    queue_budget_bytes: int | None
    oldest_unsent_age_s: float | None
    dead_letters: int
    evicted_total: int
    duplicates_total: int
    forwarded_total: int
    cloud_failing: bool
    cloud_failing_for_s: float | None
    cloud_last_error: str | None
    broker_connected: bool
    ble_state: str
    ble_error: str | None
    disk_free_bytes: int
    disk_total_bytes: int
    cpu_temp_c: float | None
    clock_ntp_synced: bool
    clock_source: str
    clock_unsynced_open: bool
    """The clock is (or was, until the last check) unsynced: new items are flagged."""
    clock_unsynced_upto_gw_seq: int | None
    """Items up to this gw_seq were stamped before the clock was confirmed synced."""

    def observation_body(self) -> dict[str, object]:
        """The ``gateway_health`` observation sent to the cloud (flat: InfluxDB fields)."""
        body: dict[str, object] = {"kind": OBSERVATION_KIND}
        for key, value in asdict(self).items():
            body[key] = ", ".join(value) if isinstance(value, tuple) else value
        return body


class HealthMonitor:
    """Builds :class:`Health` snapshots from the running components."""

    def __init__(
        self,
        settings: EdgeSettings,
        queue: EdgeQueue,
        forwarder: Forwarder,
        clock: ClockWatch,
        *,
        ingest: Callable[[], MqttIngest | None],
        ble: Callable[[], BleIngest | None],
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        """``ingest`` / ``ble`` are getters: the agent creates those components at start."""
        self._settings = settings
        self._queue = queue
        self._forwarder = forwarder
        self._clock = clock
        self._ingest = ingest
        self._ble = ble
        self._wall_ms = wall_ms
        self._monotonic_s = monotonic_s
        self._started_s = monotonic_s()
        self._version = agent_version()

    def snapshot(self) -> Health:
        """Read every component now: depth from the queue's in-memory counts, the oldest
        item by one index seek, no ``count(*)`` over the backlog."""
        s = self._settings
        now_ms = self._wall_ms()
        depth = self._queue.depth_by_priority()
        oldest = self._queue.oldest_received_at_ms()
        counters = self._queue.counters()
        ingest = self._ingest()
        ble = self._ble()
        ble_status = ble.status() if ble is not None else None
        forwarder = self._forwarder
        failing_since = forwarder.failing_since_ms
        disk = shutil.disk_usage(s.queue_path.parent)
        clock = self._clock.state
        upto = self._clock.unsynced_upto_gw_seq
        oldest_age_s = None if oldest is None else max(0.0, (now_ms - oldest) / 1000)
        broker_connected = ingest is not None and ingest.connected

        failing: list[str] = []
        degraded: list[str] = []
        if not broker_connected:
            failing.append("broker: not connected")
        if ingest is None or not ingest.committer_alive:
            failing.append("ingest: committer not running")
        if not forwarder.alive:
            failing.append("forwarder: not running")
        if failing_since is not None:
            degraded.append(f"cloud: failing ({forwarder.last_error})")
        if oldest_age_s is not None and oldest_age_s > s.healthz_stale_forward_s:
            degraded.append(f"queue: oldest unsent item is {oldest_age_s:.0f} s old")
        if ble_status is not None and ble_status.state == "unavailable":
            degraded.append(f"ble: adapter unavailable ({ble_status.error})")
        if not clock.synced:
            degraded.append(f"clock: not synchronised ({clock.source}: {clock.detail})")
        if disk.total and disk.free / disk.total < LOW_DISK_FRACTION:
            degraded.append(f"disk: {disk.free} of {disk.total} bytes free")
        status: HealthStatus = "failing" if failing else "degraded" if degraded else "ok"

        return Health(
            status=status,
            problems=tuple(failing + degraded),
            agent_version=self._version,
            uptime_s=int(self._monotonic_s() - self._started_s),
            queue_depth=sum(depth.values()),
            queue_urgent=depth[PRIORITY_URGENT],
            queue_scan=depth[PRIORITY_SCAN],
            queue_event=depth[PRIORITY_EVENT],
            queue_bulk=depth[PRIORITY_BULK],
            queue_bytes=self._queue.used_bytes(),
            queue_budget_bytes=self._queue.budget_bytes,
            oldest_unsent_age_s=None if oldest_age_s is None else round(oldest_age_s, 3),
            dead_letters=self._queue.dead_letter_count(),
            evicted_total=counters.get("evicted", 0),
            duplicates_total=counters.get("duplicates", 0),
            forwarded_total=forwarder.forwarded,
            cloud_failing=failing_since is not None,
            cloud_failing_for_s=None
            if failing_since is None
            else round(max(0.0, (now_ms - failing_since) / 1000), 3),
            cloud_last_error=None if failing_since is None else forwarder.last_error,
            broker_connected=broker_connected,
            ble_state="disabled" if ble_status is None else ble_status.state,
            ble_error=None if ble_status is None else ble_status.error,
            disk_free_bytes=disk.free,
            disk_total_bytes=disk.total,
            cpu_temp_c=cpu_temperature_c(s.thermal_path),
            clock_ntp_synced=clock.synced,
            clock_source=clock.source,
            clock_unsynced_open=upto is None,
            clock_unsynced_upto_gw_seq=upto,
        )


class HealthReporter:
    """Queues a ``gateway_health`` observation every ``health_interval_s`` (own thread)."""

    def __init__(
        self,
        monitor: HealthMonitor,
        queue: EdgeQueue,
        clock: ClockWatch,
        interval_s: float,
        *,
        on_committed: Callable[[AppendResult], None] | None = None,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        """``on_committed`` wakes the forwarder after each heartbeat is queued."""
        self._monitor = monitor
        self._queue = queue
        self._clock = clock
        self._interval_s = interval_s
        self._on_committed = on_committed
        self._wall_ms = wall_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.sent = 0

    def report_once(self) -> Health:
        """Check the clock, take a snapshot and queue it (durably) as an observation."""
        self._clock.check()
        health = self._monitor.snapshot()
        result = self._queue.append_many([observation(health.observation_body(), self._wall_ms())])
        self.sent += 1
        if self._on_committed is not None:
            self._on_committed(result)
        return health

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.report_once()
            except Exception:  # the thread's outer loop: a failing disk must not kill it
                if not self._failing:
                    self._failing = True
                    _log.exception("could not queue the gateway heartbeat; retrying")
                continue
            if self._failing:
                self._failing = False
                _log.info("gateway heartbeat queued again")

    def start(self) -> None:
        """Queue the first heartbeat now, then one per interval."""
        try:
            self.report_once()
        except Exception:
            _log.exception("could not queue the first gateway heartbeat")
        self._thread = threading.Thread(target=self._run, name="edge-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (no final heartbeat: the next start sends one)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
