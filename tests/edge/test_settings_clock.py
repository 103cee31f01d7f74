"""Settings from PATROL_EDGE_* and the gateway clock's sync state."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.clock import ClockState, clock_state
from edge_agent.settings import EdgeSettings, get_settings

REQUIRED_ENV = {
    "PATROL_EDGE_CLOUD_URL": "https://cloud.example/",
    "PATROL_EDGE_GATEWAY_ID": "gw-site-1",
    "PATROL_EDGE_GATEWAY_API_KEY": "pk_secret-value",
    "PATROL_EDGE_QUEUE_PATH": "/var/lib/patrol-edge/queue.sqlite3",
}


def test_settings_come_from_the_environment(monkeypatch):
    for name, value in REQUIRED_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATROL_EDGE_MQTT_PASSWORD", "mqtt-secret")
    monkeypatch.setenv("PATROL_EDGE_COMMIT_MAX_MESSAGES", "250")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert get_settings() is settings  # read once
    finally:
        get_settings.cache_clear()
    assert settings.cloud_url == "https://cloud.example"
    assert settings.queue_path == Path("/var/lib/patrol-edge/queue.sqlite3")
    assert settings.commit_max_messages == 250
    assert settings.sqlite_synchronous == "FULL"
    assert settings.gateway_api_key.get_secret_value() == "pk_secret-value"
    # secrets never show in a repr (and so never in a log line)
    assert "pk_secret-value" not in repr(settings)
    assert "mqtt-secret" not in repr(settings)


def test_required_values_have_no_default(monkeypatch):
    for name in REQUIRED_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError) as info:
        EdgeSettings()  # type: ignore[call-arg]
    missing = sorted(str(e["loc"][0]) for e in info.value.errors() if e["type"] == "missing")
    assert missing == ["cloud_url", "gateway_api_key", "gateway_id", "queue_path"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cloud_url", "ftp://cloud.example"),
        ("forward_batch_items", 501),
        ("sqlite_synchronous", "SOMETIMES"),
        ("mqtt_client_id", "x" * 24),
    ],
)
def test_settings_refuse_bad_values(field, value):
    values = {
        "cloud_url": "https://cloud.example",
        "gateway_id": "gw",
        "gateway_api_key": "k",
        "queue_path": "/tmp/q.sqlite3",
    } | {field: value}
    with pytest.raises(ValidationError):
        EdgeSettings(**values)


def test_clock_state_answers_from_a_real_source():
    state = clock_state()
    assert isinstance(state, ClockState)
    if sys.platform.startswith("linux"):
        # timedatectl where systemd runs, else the kernel's adjtimex(2): never "unknown"
        assert state.source in ("timedatectl", "adjtimex")
        assert state.detail != ""
