"""systemd's notify protocol on a REAL unix datagram socket: READY, WATCHDOG, STATUS, STOPPING.

The agent runs as ``python -m edge_agent run`` with ``$NOTIFY_SOCKET`` and
``$WATCHDOG_USEC`` as systemd (Type=notify, WatchdogSec=) would set them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from edgetest import forget_session

from edge_agent.sdnotify import SystemdNotifier, watchdog_interval_s

RECV_TIMEOUT_S = 30.0


def receive(sock: socket.socket) -> str:
    sock.settimeout(RECV_TIMEOUT_S)
    return sock.recv(4096).decode()


@pytest.fixture
def notify_socket(tmp_path: Path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield path, sock
    sock.close()


def test_agent_sends_ready_watchdog_and_stopping(tmp_path, notify_socket, mqtt_broker):
    path, sock = notify_socket
    client_id = f"edge-notify-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_EDGE_")}
    env |= {
        "PATROL_EDGE_MQTT_HOST": mqtt_broker.host,
        "PATROL_EDGE_MQTT_PORT": str(mqtt_broker.port),
        "PATROL_EDGE_MQTT_USERNAME": mqtt_broker.gateway_user,
        "PATROL_EDGE_MQTT_PASSWORD": mqtt_broker.credentials[mqtt_broker.gateway_user],
        "PATROL_EDGE_MQTT_CLIENT_ID": client_id,
        "PATROL_EDGE_CLOUD_URL": "http://127.0.0.1:9",
        "PATROL_EDGE_GATEWAY_ID": "gw-test",
        "PATROL_EDGE_GATEWAY_API_KEY": "unused",
        "PATROL_EDGE_QUEUE_PATH": str(tmp_path / "edge.sqlite3"),
        "PATROL_EDGE_METRICS_PORT": "0",
        "NOTIFY_SOCKET": str(path),
        "WATCHDOG_USEC": "1000000",  # WatchdogSec=1: a ping every 0.5 s
    }
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = receive(sock)
        assert ready.splitlines()[0] == "READY=1"
        assert ready.splitlines()[1].startswith("STATUS=forwarding to http://127.0.0.1:9; broker")
        assert ready.endswith("subscribed")  # READY after the subscription
        pings = [receive(sock) for _ in range(3)]
        assert pings == ["WATCHDOG=1"] * 3
        agent.send_signal(signal.SIGTERM)
        messages = []
        while "STOPPING=1" not in messages:
            messages.append(receive(sock))
        assert agent.wait(30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        forget_session(
            mqtt_broker.host,
            mqtt_broker.port,
            mqtt_broker.gateway_user,
            mqtt_broker.credentials[mqtt_broker.gateway_user],
            client_id,
        )


def test_abstract_namespace_socket():
    name = f"patrol-edge-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        try:
            assert notifier.enabled
            assert notifier.status("x" * 500)
            assert receive(sock) == "STATUS=" + "x" * 200  # one line, cut
        finally:
            notifier.close()


def test_outside_systemd_everything_is_a_no_op():
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.ready("up") is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval_s is None


def test_socket_gone_is_logged_once_and_not_fatal(tmp_path, caplog):
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    try:
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
    finally:
        notifier.close()
    assert caplog.text.count("sd_notify to") == 1


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ, expected):
    assert watchdog_interval_s(environ) == expected
