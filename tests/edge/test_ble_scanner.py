"""The real bleak, in a container with no Bluetooth adapter and no D-Bus: reported, never fatal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
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
