"""The site broker: mosquitto_conf() rendered and run by the real Mosquitto; the demo's
embedded amqtt broker carrying a whole agent round trip."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from edgetest import SiteMosquitto, Wearable

from edge_agent.broker import (
    DEFAULT_MAX_INFLIGHT_MESSAGES,
    EmbeddedBroker,
    TlsFiles,
    max_queued_for,
    mosquitto_conf,
)

PASSWORD_FILE = Path("/etc/mosquitto/passwd")
ACL_FILE = Path("/etc/mosquitto/acl")
PERSISTENCE_DIR = Path("/var/lib/mosquitto")


def conf_settings(text: str) -> dict[str, list[str]]:
    """Option -> values of a mosquitto.conf text, comments and blank lines skipped."""
    options: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition(" ")
            options.setdefault(name, []).append(value)
    return options


def test_max_queued_holds_every_wearables_whole_flash_queue():
    assert max_queued_for(40) == 200_000
    assert max_queued_for(3, events_per_device=10) == 30
    with pytest.raises(ValueError, match="must be >= 1"):
        max_queued_for(0)


def test_mosquitto_conf_is_sized_and_persistent():
    text = mosquitto_conf(
        port=1883,
        password_file=PASSWORD_FILE,
        acl_file=ACL_FILE,
        persistence_dir=PERSISTENCE_DIR,
        devices=40,
    )
    assert conf_settings(text) == {
        "per_listener_settings": ["false"],
        "allow_anonymous": ["false"],
        "password_file": ["/etc/mosquitto/passwd"],
        "acl_file": ["/etc/mosquitto/acl"],
        "persistence": ["true"],
        "persistence_location": ["/var/lib/mosquitto/"],
        "autosave_interval": ["60"],
        "max_queued_messages": ["200000"],
        "max_queued_bytes": ["0"],
        "max_inflight_messages": [str(DEFAULT_MAX_INFLIGHT_MESSAGES)],
        "queue_qos0_messages": ["false"],
        "max_packet_size": ["2048"],
        "set_tcp_nodelay": ["true"],
        "listener": ["1883"],
        "protocol": ["mqtt"],
    }
    # every setting is explained: each option line follows a comment block
    assert "# Mosquitto's default (1000) would silently drop" in text


def test_mosquitto_conf_with_tls_listener():
    text = mosquitto_conf(
        port=1883,
        password_file=PASSWORD_FILE,
        acl_file=ACL_FILE,
        persistence_dir=PERSISTENCE_DIR,
        devices=2,
        bind_address="10.0.0.2",
        tls=TlsFiles(Path("/etc/ca.pem"), Path("/etc/cert.pem"), Path("/etc/key.pem")),
    )
    options = conf_settings(text)
    assert options["listener"] == ["1883 10.0.0.2", "8883 10.0.0.2"]
    assert (options["cafile"], options["certfile"], options["keyfile"]) == (
        ["/etc/ca.pem"],
        ["/etc/cert.pem"],
        ["/etc/key.pem"],
    )
    assert options["tls_version"] == ["tlsv1.2"]


@pytest.mark.parametrize("bad", [{"port": 0}, {"port": 70000}, {"max_inflight_messages": 0}])
def test_mosquitto_conf_refuses_nonsense(bad):
    args = {
        "port": 1883,
        "password_file": PASSWORD_FILE,
        "acl_file": ACL_FILE,
        "persistence_dir": PERSISTENCE_DIR,
        "devices": 1,
    } | bad
    with pytest.raises(ValueError):
        mosquitto_conf(**args)


def test_real_mosquitto_runs_the_rendered_config(tmp_path):
    """Mosquitto exits on any unknown or misplaced option: it must accept ours, and
    persist to disk on a clean shutdown (persistence true)."""
    site = SiteMosquitto(tmp_path / "site", {"0000a001": "pw-a001", SiteMosquitto.GATEWAY: "gw"})
    site.start()
    try:
        wearable = Wearable("127.0.0.1", site.port, "0000a001", "pw-a001")
        wearable.publish(b"\x01")
        wearable.close()
    finally:
        site.stop()
    assert (tmp_path / "site" / "data" / "mosquitto.db").exists()


def test_embedded_broker_starts_on_a_free_port_and_stops():
    broker = EmbeddedBroker()
    broker.start()
    try:
        port = broker.port
        wearable = Wearable("127.0.0.1", port, "0000a001", "any-password")
        wearable.publish(b"\x01")
        wearable.close()
    finally:
        broker.stop()
    time.sleep(0.1)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
