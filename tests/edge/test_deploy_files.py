"""The deployment files under deploy/edge/: systemd units verified by systemd-analyze, the
example configuration loads, the unit's watchdog matches what the agent pings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.settings import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "edge"
INSTALLED_CLI = "/opt/patrol/venv/bin/patrol-edge"


@pytest.mark.parametrize(
    "unit",
    [
        "patrol-edge.service",
        "patrol-edge-mosquitto-sync.service",
        "patrol-edge-mosquitto-sync.timer",
    ],
)
def test_units_pass_systemd_analyze_verify(tmp_path, unit):
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze (package systemd) is needed"
    cli = Path(sys.executable).with_name("patrol-edge")
    assert cli.is_file()
    for name in (
        "patrol-edge.service",
        "patrol-edge-mosquitto-sync.service",
        "patrol-edge-mosquitto-sync.timer",
    ):
        text = (DEPLOY / name).read_text().replace(INSTALLED_CLI, str(cli))
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        # this machine runs no systemd and has no mosquitto/bluetooth units to resolve
        if "mosquitto.service" not in line and "bluetooth" not in line and line.strip()
    ]
    assert (done.returncode, problems) == (0, [])


def test_agent_unit_is_notify_with_watchdog_and_restart():
    lines = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in (DEPLOY / "patrol-edge.service").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert lines["Type"] == "notify"
    assert lines["WatchdogSec"] == "30s"
    assert lines["Restart"] == "always"
    assert lines["ExecStart"] == f"{INSTALLED_CLI} --config /etc/patrol-edge/edge.toml run"
    assert lines["StartLimitIntervalSec"] == "0"


def test_example_configuration_loads(monkeypatch):
    for name in list(os.environ):
        if name.startswith("PATROL_EDGE_"):
            monkeypatch.delenv(name)
    settings = load_settings(DEPLOY / "edge.toml.example")
    assert settings.cloud_url == "https://patrol.example.com"
    assert settings.queue_path == Path("/var/lib/patrol-edge/queue.sqlite3")
    assert (settings.mqtt_username, settings.metrics_port) == ("gw-harbour-1", 9108)
