"""``BleIngest``: one bleak ``BleakScanner`` -> bounded buffer -> tracker -> durable queue.

Threads and loops, each with one job:

- the **scanner thread** runs an asyncio loop for bleak: it starts one
  ``BleakScanner(detection_callback=...)`` -- passive (a BlueZ advertisement monitor
  with ``or_patterns`` for our company id, Apple iBeacon and Eddystone) when
  ``ble_scanning_mode`` is ``passive`` and BlueZ supports it, else active -- and
  restarts it after an adapter loss with exponential backoff. Every failure bleak
  can raise here (``BleakError`` / ``BleakDBusError`` from BlueZ, ``FileNotFoundError``
  when there is no D-Bus socket at all, ``EOFError`` when the bus drops) is reported
  in :meth:`BleIngest.status`, logged once when it breaks and once when it recovers,
  and never fatal.
- the **detection callback** only copies bleak's ``BLEDevice`` / ``AdvertisementData``
  into a frozen :class:`~edge_agent.ble.tracker.Sighting` and puts it into a bounded
  buffer; a full buffer drops the sighting and counts it (``dropped``).
- the **worker thread** drains the buffer through :class:`~edge_agent.ble.tracker.TagTracker`
  (dedup, RSSI smoothing, away/back) and commits the resulting entries with
  ``EdgeQueue.append_many`` (one transaction per drain).

Adapter health: every ``ble_health_check_s`` the scanner asks bleak for the default
adapter (raises when BlueZ lost it or D-Bus is gone). A BlueZ restart between two
checks leaves a scanner that hears nothing: ``ble_restart_if_silent_s`` restarts a
scanner that heard no advert for that long (a site always has its beacons).
"""

import asyncio
import contextlib
import logging
import queue as stdlib_queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from bleak import BleakAdapter, BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern, OrPatternLike
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.adapter import BaseBleakAdapter
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from edge_agent.ble.decoders import APPLE_COMPANY_ID, EDDYSTONE_UUID16, IBEACON_LENGTH, IBEACON_TYPE
from edge_agent.ble.tracker import Sighting, TagTracker, TrackerConfig
from edge_agent.inbound import Inbound
from edge_agent.queue import AppendResult, EdgeQueue
from edge_agent.settings import EdgeSettings

_log = logging.getLogger(__name__)

BleState = Literal["stopped", "starting", "scanning", "unavailable"]

MAX_DRAIN_SIGHTINGS: Final = 5_000
"""Sightings per commit: bounds one transaction while a burst drains."""
STOP_TIMEOUT_S: Final = 10.0
"""How long stop() waits for bleak to stop scanning before giving up on the thread."""
REASON_INTERNAL: Final = "internal_error"
MIN_RSSI_DBM: Final = -128
MAX_RSSI_DBM: Final = 127
"""The batch's rssi_dbm is an i8; BlueZ reports an int16 (127 can mean "unknown"),
so a value beyond i8 is clamped rather than failing the whole batch's validation."""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class BleStatus:
    """One look at BLE ingest, for the agent's status and health."""

    state: BleState
    scanning_mode: str | None
    error: str | None
    failures: int
    """Scanner starts or health checks that failed since the agent started."""
    adverts: int
    """Sightings the callback buffered."""
    dropped: int
    """Sightings the callback dropped because the buffer was full."""
    forwarded: int
    suppressed: int
    ignored: int
    bad: dict[str, int]
    tags: int
    tags_away: int


def or_patterns(company_id: int) -> list[OrPatternLike]:
    """BlueZ advertisement-monitor patterns: our adverts, iBeacon, Eddystone (passive scan)."""
    return [
        OrPattern(
            0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, company_id.to_bytes(2, "little")
        ),
        OrPattern(
            0,
            AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA,
            APPLE_COMPANY_ID.to_bytes(2, "little") + bytes((IBEACON_TYPE, IBEACON_LENGTH)),
        ),
        OrPattern(
            0, AdvertisementDataType.SERVICE_DATA_UUID16, EDDYSTONE_UUID16.to_bytes(2, "little")
        ),
    ]


class BleIngest:
    """BLE scanner, tracker and committer; :meth:`start` / :meth:`stop` own both threads."""

    def __init__(
        self,
        settings: EdgeSettings,
        queue: EdgeQueue,
        *,
        on_committed: Callable[[AppendResult], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = _wall_ms,
        scanner_backend: type[BaseBleakScanner] | None = None,
        adapter_backend: type[BaseBleakAdapter] | None = None,
    ) -> None:
        """Nothing runs until :meth:`start`; tests may call :meth:`callback` and
        :meth:`process_pending` directly with injected clocks.

        ``scanner_backend`` / ``adapter_backend`` are bleak's own hook for a backend
        other than the platform's (None: BlueZ on Linux); tests plug in a scripted
        radio there, since no Bluetooth radio exists in CI.
        """
        self.settings = settings
        self.queue = queue
        self.on_committed = on_committed
        self._monotonic = monotonic
        self._scanner_backend = scanner_backend
        self._adapter_backend = adapter_backend
        self._wall_ms = wall_ms
        self.tracker = TagTracker(
            TrackerConfig(
                company_id=settings.ble_company_id,
                heartbeat_interval_s=settings.ble_heartbeat_interval_s,
                away_after_s=settings.ble_away_after_s,
                rssi_alpha=settings.ble_rssi_alpha,
            )
        )
        self._buffer: stdlib_queue.Queue[Sighting] = stdlib_queue.Queue(
            maxsize=settings.ble_buffer_adverts
        )
        self._pending: list[Inbound] = []
        self._adverts = 0
        self._dropped = 0
        self._last_advert_s = monotonic()
        self._state: BleState = "stopped"
        self._mode: str | None = None
        self._error: str | None = None
        self._failures = 0
        self._broken = False
        self._passive_unsupported = False
        self._stopping = threading.Event()
        self._work_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_scanner: asyncio.Event | None = None
        self._threads: list[threading.Thread] = []

    # --- the bleak boundary --------------------------------------------------------

    def callback(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """bleak's detection callback: copy into a Sighting, buffer it, nothing else."""
        sighting = Sighting(
            address=str(device.address),
            rssi_dbm=min(max(int(adv.rssi), MIN_RSSI_DBM), MAX_RSSI_DBM),
            received_at_ms=self._wall_ms(),
            monotonic_s=self._monotonic(),
            manufacturer_data=tuple(
                sorted((int(k), bytes(v)) for k, v in adv.manufacturer_data.items())
            ),
            service_data=tuple(sorted((str(k), bytes(v)) for k, v in adv.service_data.items())),
        )
        self._last_advert_s = sighting.monotonic_s
        try:
            self._buffer.put_nowait(sighting)
        except stdlib_queue.Full:
            self._dropped += 1
            return
        self._adverts += 1

    # --- the worker ----------------------------------------------------------------

    def process_pending(self, first: Sighting | None = None) -> AppendResult | None:
        """Run ``first`` and the buffered sightings through the tracker, check for away
        tags, commit in one transaction.

        Returns what the commit did (None when there was nothing to commit). A
        failed commit keeps the entries for the next call and raises.
        """
        with self._work_lock:
            if first is not None:
                self._process_one(first)
            for _ in range(MAX_DRAIN_SIGHTINGS):
                try:
                    sighting = self._buffer.get_nowait()
                except stdlib_queue.Empty:
                    break
                self._process_one(sighting)
            self._pending.extend(self.tracker.tick(self._monotonic(), self._wall_ms()))
            if not self._pending:
                return None
            result = self.queue.append_many(self._pending)
            self._pending = []
        if self.on_committed is not None:
            self.on_committed(result)
        return result

    def _process_one(self, sighting: Sighting) -> None:
        try:
            self._pending.extend(self.tracker.process(sighting))
        except Exception:  # a decoder bug must cost one advert, not the ingest
            self.tracker.counters.bad[REASON_INTERNAL] += 1
            _log.exception("processing an advert from %s failed", sighting.address)

    def _work(self) -> None:
        broken = False
        tick_s = self.settings.ble_tick_s
        while not self._stopping.is_set():
            try:
                first: Sighting | None = self._buffer.get(timeout=tick_s)
            except stdlib_queue.Empty:
                first = None
            try:
                self.process_pending(first)
            except Exception:  # the worker's outer loop: disk full, I/O error, or a bug
                if not broken:
                    broken = True
                    _log.exception("committing BLE entries failed; retrying")
                self._stopping.wait(tick_s)
                continue
            if broken:
                broken = False
                _log.info("committing BLE entries works again")

    # --- the scanner ---------------------------------------------------------------

    def _bluez_args(self, *, passive: bool) -> BlueZScannerArgs:
        args: BlueZScannerArgs = {}
        if self.settings.ble_adapter:
            args["adapter"] = self.settings.ble_adapter
        if passive:
            args["or_patterns"] = or_patterns(self.settings.ble_company_id)
        return args

    async def _start_scanner(self) -> tuple[BleakScanner, str]:
        if self.settings.ble_scanning_mode == "passive" and not self._passive_unsupported:
            scanner = BleakScanner(
                self.callback,
                scanning_mode="passive",
                bluez=self._bluez_args(passive=True),
                backend=self._scanner_backend,
            )
            try:
                await scanner.start()
                return scanner, "passive"
            except BleakError as exc:
                if "passive" not in str(exc):
                    raise
                self._passive_unsupported = True
                _log.warning("passive BLE scanning unavailable (%s); scanning actively", exc)
        scanner = BleakScanner(
            self.callback,
            scanning_mode="active",
            bluez=self._bluez_args(passive=False),
            backend=self._scanner_backend,
        )
        await scanner.start()
        return scanner, "active"

    async def _check_adapter(self) -> None:
        await BleakAdapter.get(bluez=self._bluez_args(passive=False), backend=self._adapter_backend)

    def _set_broken(self, exc: BaseException) -> None:
        self._failures += 1
        self._state = "unavailable"
        self._mode = None
        self._error = f"{type(exc).__name__}: {exc}"
        if not self._broken:
            self._broken = True
            _log.warning("BLE adapter unavailable (%s); retrying with backoff", self._error)

    async def _wait_stop(self, timeout_s: float) -> None:
        assert self._wake_scanner is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake_scanner.wait(), timeout_s)

    def _run_scanner(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._scan())
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _scan(self) -> None:
        settings = self.settings
        delay_s = settings.ble_retry_min_s
        while not self._stopping.is_set():
            self._state = "starting"
            try:
                scanner, mode = await self._start_scanner()
            except Exception as exc:  # the scanner's outer loop: never fatal
                self._set_broken(exc)
                await self._wait_stop(delay_s)
                delay_s = min(delay_s * 2, settings.ble_retry_max_s)
                continue
            self._state, self._mode, self._error = "scanning", mode, None
            self._last_advert_s = self._monotonic()
            if self._broken:
                self._broken = False
                _log.info("BLE scanning works again (%s)", mode)
            else:
                _log.info("BLE scanning (%s)", mode)
            delay_s = settings.ble_retry_min_s
            lost = False
            try:
                await self._watch()
            except Exception as exc:  # adapter lost while scanning
                self._set_broken(exc)
                lost = True
            finally:
                with contextlib.suppress(Exception):
                    await scanner.stop()
            if lost and not self._stopping.is_set():
                await self._wait_stop(delay_s)
                delay_s = min(delay_s * 2, settings.ble_retry_max_s)
        self._state, self._mode = "stopped", None

    async def _watch(self) -> None:
        """Return when stopping or silent too long; raise when the adapter is gone."""
        settings = self.settings
        while not self._stopping.is_set():
            await self._wait_stop(settings.ble_health_check_s)
            if self._stopping.is_set():
                return
            await self._check_adapter()
            silent_s = self._monotonic() - self._last_advert_s
            if settings.ble_restart_if_silent_s and silent_s >= settings.ble_restart_if_silent_s:
                _log.info("no BLE advert for %.0f s; restarting the scanner", silent_s)
                return

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and the scanner threads (the scanner retries on its own)."""
        self._state = "starting"
        # loop and event exist before the thread runs, so stop() can always wake it
        loop = asyncio.new_event_loop()
        self._loop, self._wake_scanner = loop, asyncio.Event()
        self._threads = [
            threading.Thread(target=self._work, name="ble-worker", daemon=True),
            threading.Thread(
                target=self._run_scanner, args=(loop,), name="ble-scanner", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop scanning, then commit whatever was buffered."""
        self._stopping.set()
        loop, wake = self._loop, self._wake_scanner
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(wake.set)
        for thread in self._threads:
            thread.join(STOP_TIMEOUT_S)
        self._state = "stopped"
        self.process_pending()

    def status(self) -> BleStatus:
        """Scanner state and counters."""
        with self._work_lock:
            counters = self.tracker.counters
            bad = dict(counters.bad)
            tags = list(self.tracker.tags.values())
        return BleStatus(
            state=self._state,
            scanning_mode=self._mode,
            error=self._error,
            failures=self._failures,
            adverts=self._adverts,
            dropped=self._dropped,
            forwarded=counters.forwarded,
            suppressed=counters.suppressed,
            ignored=counters.ignored,
            bad=bad,
            tags=len(tags),
            tags_away=sum(1 for t in tags if t.away),
        )
