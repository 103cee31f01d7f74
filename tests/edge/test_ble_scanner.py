"""The real bleak, in a container with no Bluetooth adapter and no D-Bus: reported, never fatal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bleak.backends.adapter import BaseBleakAdapter
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementDataCallback, BaseBleakScanner
from bleak.exc import BleakDBusError, BleakError
from bletest import IBEACON_ADV, advertisement, device, make_settings

from edge_agent.ble.scanner import BleIngest, or_patterns
from edge_agent.queue import EdgeQueue

WAIT_S = 15.0
"""Upper bound for the background threads to reach a state (not a timing assertion)."""


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_no_adapter_is_reported_retried_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = EdgeQueue(tmp_path / "q.sqlite3")
    settings = make_settings(
        queue.path, ble_enabled=True, ble_retry_min_s=0.01, ble_retry_max_s=0.05, ble_tick_s=0.01
    )
    ingest = BleIngest(settings, queue)
    caplog.set_level(logging.INFO, logger="edge_agent.ble.scanner")
    ingest.start()
    try:
        wait_for(lambda: ingest.status().failures >= 3)
        status = ingest.status()
        assert status.state == "unavailable"
        assert status.scanning_mode is None
        # no D-Bus system bus socket here: bleak's connect raises FileNotFoundError
        assert status.error == "FileNotFoundError: [Errno 2] No such file or directory"
        # the worker keeps going without an adapter: a sighting still reaches the queue
        ingest.callback(device("C0:FF:EE:00:00:01"), advertisement(IBEACON_ADV, -60))
        wait_for(lambda: queue.depth() == 1)
    finally:
        ingest.stop()
    assert ingest.status().state == "stopped"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "BLE adapter unavailable (FileNotFoundError: [Errno 2] No such file or directory); "
        "retrying with backoff"
    ]
    queue.close()


def test_passive_scan_patterns_cover_our_company_ibeacon_and_eddystone() -> None:
    patterns = [(p[0], int(p[1]), bytes(p[2]).hex()) for p in or_patterns(0xFFFF)]
    assert patterns == [(0, 0xFF, "ffff"), (0, 0xFF, "4c000215"), (0, 0x16, "aafe")]


class Radio:
    """The one thing CI cannot have: a Bluetooth radio under BlueZ. Scripted per test."""

    def __init__(self) -> None:
        self.fail_starts = 0
        self.passive_supported = True
        self.adapter_gone = False
        self.active: ScriptedScanner | None = None
        self.modes: list[str] = []


RADIO = Radio()


class ScriptedScanner(BaseBleakScanner):
    """A bleak scanner backend that fails and recovers the way BlueZ does."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self.mode = scanning_mode
        self.patterns = kwargs["bluez"].get("or_patterns")

    async def start(self) -> None:
        if RADIO.adapter_gone:  # BlueZ's manager finds no default adapter
            raise BleakError("No Bluetooth adapters found.")
        if RADIO.fail_starts:
            RADIO.fail_starts -= 1
            raise BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", ["bluez restarting"])
        if self.mode == "passive" and not RADIO.passive_supported:
            raise BleakError(
                "passive scanning on Linux requires BlueZ >= 5.56 with --experimental enabled "
                "and Linux kernel >= 5.10"
            )
        RADIO.modes.append(self.mode)
        RADIO.active = self

    async def stop(self) -> None:
        RADIO.active = None


class ScriptedAdapter(BaseBleakAdapter):
    """bleak's adapter lookup: raises like BlueZ's manager when the adapter is gone."""

    @classmethod
    async def get(cls, **kwargs: Any) -> ScriptedAdapter:
        if RADIO.adapter_gone:
            raise BleakError("No Bluetooth adapters found.")
        return cls()

    async def get_connected_devices(self, service_uuids: frozenset[str]) -> list[BLEDevice]:
        return []


def test_adapter_loss_and_recovery_with_passive_fallback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    RADIO.__init__()  # type: ignore[misc]
    RADIO.fail_starts = 2
    RADIO.passive_supported = False
    queue = EdgeQueue(tmp_path / "q.sqlite3")
    settings = make_settings(
        queue.path,
        ble_enabled=True,
        ble_retry_min_s=0.01,
        ble_retry_max_s=0.05,
        ble_tick_s=0.01,
        ble_health_check_s=0.01,
        ble_restart_if_silent_s=0,
    )
    ingest = BleIngest(
        settings, queue, scanner_backend=ScriptedScanner, adapter_backend=ScriptedAdapter
    )
    caplog.set_level(logging.INFO, logger="edge_agent.ble.scanner")
    ingest.start()
    try:
        wait_for(lambda: ingest.status().state == "scanning")
        status = ingest.status()
        assert (status.scanning_mode, status.error, status.failures) == ("active", None, 2)
        assert RADIO.modes == ["active"]
        # an advert through bleak's own callback machinery reaches the queue
        assert RADIO.active is not None
        RADIO.active.call_detection_callbacks(
            device("C0:FF:EE:00:00:01"), advertisement(IBEACON_ADV, -60)
        )
        wait_for(lambda: queue.depth() == 1)
        # the adapter disappears while scanning, then comes back
        RADIO.adapter_gone = True
        wait_for(lambda: ingest.status().state == "unavailable")
        assert ingest.status().error == "BleakError: No Bluetooth adapters found."
        wait_for(lambda: ingest.status().failures >= 4)
        RADIO.adapter_gone = False
        wait_for(lambda: ingest.status().state == "scanning")
        assert RADIO.modes[-1] == "active"
    finally:
        ingest.stop()
    assert RADIO.active is None
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        (
            "WARNING",
            "BLE adapter unavailable (BleakDBusError: [org.freedesktop.DBus.Error.ServiceUnknown]"
            " bluez restarting); retrying with backoff",
        ),
        (
            "WARNING",
            "passive BLE scanning unavailable (passive scanning on Linux requires BlueZ >= 5.56 "
            "with --experimental enabled and Linux kernel >= 5.10); scanning actively",
        ),
        ("INFO", "BLE scanning works again (active)"),
        (
            "WARNING",
            "BLE adapter unavailable (BleakError: No Bluetooth adapters found.); "
            "retrying with backoff",
        ),
        ("INFO", "BLE scanning works again (active)"),
    ]
    queue.close()
