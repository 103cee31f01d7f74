"""Fixtures for the console tests: a served app per test, one headless Chromium per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from consoletest import Console, start_console
from playwright.sync_api import Browser, sync_playwright

from cloud_api.alerts.settings import get_alert_settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",  # the alert beep plays without a click
]


@pytest.fixture(autouse=True)
def _no_alert_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No background escalation or webhooks: the tests look at acknowledge only."""
    monkeypatch.setenv("PATROL_CLOUD_ALERTS_RUN_WORKER", "false")
    get_alert_settings.cache_clear()
    yield
    get_alert_settings.cache_clear()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    running = start_console(tmp_path / "console.db")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: ./scripts/test installs Debian's chromium")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
