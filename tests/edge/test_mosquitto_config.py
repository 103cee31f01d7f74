"""``patrol-edge mosquitto-config`` against the REAL cloud (over HTTPS) and the REAL Mosquitto.

The cloud provisions a gateway and two wearables (each with its broker account);
the command fetches the site's export with the gateway's API key, verifying the
cloud's certificate against a private CA, and writes passwd, acl and the broker
configuration, including a TLS listener with a certificate from the same CA.
Mosquitto then runs that configuration: a wearable logs in over TLS with the
password the cloud issued, the ACL lets it publish only on its own topic, a
wrong password is refused, and the gateway reads every device's ``up`` topic.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edgetest import free_port, tls_files, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api.app import create_app
from cloud_api.crypto_store import SecretBox
from cloud_api.db import make_engine, session_scope
from cloud_api.provisioning import create_site, provision_gateway, provision_wearable
from cloud_api.server import ServerThread
from cloud_api.settings import Settings

SERVER_KEY = bytes(range(7, 39))
GATEWAY_ID = "gw-harbour"
DEVICES = (0x0000B001, 0x0000B002)


@dataclass
class Provisioned:
    url: str
    api_key: str
    passwords: dict[str, str]
    server: ServerThread


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tls_files(tmp_path)


@pytest.fixture
def cloud(tmp_path: Path, pki) -> Provisioned:  # type: ignore[no-untyped-def]
    _ca, cert, key = pki
    db_url = f"sqlite:///{tmp_path}/cloud.db"
    app = create_app(
        Settings(database_url=db_url, server_key=base64.b64encode(SERVER_KEY).decode())
    )
    engine = make_engine(db_url)
    passwords: dict[str, str] = {}
    with session_scope(engine) as session:
        site = create_site(session, name="Harbour depot")
        gateway = provision_gateway(session, gateway_id=GATEWAY_ID, site=site)
        passwords[gateway.mqtt_username] = gateway.mqtt_password
        api_key = gateway.api_key
        for device_id in DEVICES:
            wearable = provision_wearable(
                session, box=SecretBox(SERVER_KEY), device_id=device_id, site=site
            )
            passwords[wearable.mqtt_username] = wearable.mqtt_password
        other = create_site(session, name="Elsewhere")  # not exported to this gateway
        provision_wearable(session, box=SecretBox(SERVER_KEY), device_id=0x0000C001, site=other)
    engine.dispose()
    server = ServerThread(
        app, free_port(), lifespan="on", ssl_certfile=str(cert), ssl_keyfile=str(key)
    )
    server.start()
    yield Provisioned(server.url, api_key, passwords, server)
    server.stop()


def run_command(cloud: Provisioned, ca: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_EDGE_")}
    env |= {
        "PATROL_EDGE_CLOUD_URL": cloud.url,
        "PATROL_EDGE_CLOUD_CA_FILE": str(ca),
        "PATROL_EDGE_GATEWAY_ID": GATEWAY_ID,
        "PATROL_EDGE_GATEWAY_API_KEY": cloud.api_key,
        "PATROL_EDGE_QUEUE_PATH": "/nonexistent/unused.sqlite3",
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "mosquitto-config", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for secret in [cloud.api_key, *cloud.passwords.values()]:
        assert secret not in done.stdout + done.stderr
    return done


class Broker:
    """The generated configuration run by the real mosquitto binary (plus ``user root``)."""

    def __init__(self, conf: Path) -> None:
        self.conf = conf.with_name("test-run.conf")
        self.conf.write_text(conf.read_text() + "user root\n")  # no 'mosquitto' user here
        self.log = conf.with_name("mosquitto.log")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with self.log.open("a") as log:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=log)

    def wait_listening(self, *ports: int) -> None:
        def listening() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            for port in ports:
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) != 0:
                        return False
            return True

        wait_until(listening, what="the generated Mosquitto configuration to listen")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def connect(
    port: int, user: str, password: str, *, ca: Path | None = None
) -> tuple[mqtt.Client, mqtt.ReasonCode | int]:
    """Log in; returns the client (loop running) and the CONNACK reason."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(user, password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    answered = threading.Event()
    result: list[mqtt.ReasonCode | int] = []

    def on_connect(c, u, flags, reason, props):  # type: ignore[no-untyped-def]
        result.append(reason)
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert answered.wait(10), "no CONNACK"
    return client, result[0]


def test_generated_config_runs_on_real_mosquitto_with_tls_and_acl(tmp_path, cloud, pki):
    ca, cert, key = pki
    out = tmp_path / "mosquitto"
    port, tls_port = free_port(), free_port()
    done = run_command(
        cloud,
        ca,
        "--out-dir",
        str(out),
        "--port",
        str(port),
        "--bind-address",
        "127.0.0.1",
        "--tls-ca",
        str(ca),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--tls-port",
        str(tls_port),
        "--persistence-dir",
        str(tmp_path / "data"),
    )
    assert done.returncode == 0, done.stderr
    assert f"2 device(s) + gateway user '{GATEWAY_ID}'" in done.stdout
    passwd = (out / "passwd").read_text().splitlines()
    assert sorted(line.split(":")[0] for line in passwd) == ["0000b001", "0000b002", GATEWAY_ID]
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in passwd)
    assert oct((out / "passwd").stat().st_mode & 0o777) == "0o600"
    conf = (out / "patrol-site.conf").read_text()
    assert "max_queued_messages 10000" in conf  # 2 wearables x 5,000 events
    assert f"listener {tls_port} 127.0.0.1" in conf and f"certfile {cert}" in conf
    assert f"persistence_location {tmp_path / 'data'}/" in conf

    (tmp_path / "data").mkdir()
    broker = Broker(out / "patrol-site.conf")
    try:
        broker.wait_listening(port, tls_port)
        gateway, reason = connect(port, GATEWAY_ID, cloud.passwords[GATEWAY_ID])
        assert reason == 0
        heard: list[tuple[str, bytes]] = []
        got = threading.Event()
        gateway.on_message = lambda c, u, m: (heard.append((m.topic, m.payload)), got.set())
        gateway.subscribe("patrol/v1/dev/+/up", qos=1)

        device, reason = connect(tls_port, "0000b001", cloud.passwords["0000b001"], ca=ca)
        assert reason == 0  # logged in over TLS, the broker's certificate verified
        # the ACL: another device's topic is silently dropped, its own goes through
        device.publish("patrol/v1/dev/0000b002/up", b"forged", qos=1).wait_for_publish(5)
        device.publish("patrol/v1/dev/0000b001/up", b"mine", qos=1).wait_for_publish(5)
        assert got.wait(10)
        wait_until(lambda: len(heard) >= 1, what="the gateway to hear the device")
        assert heard == [("patrol/v1/dev/0000b001/up", b"mine")]
        device.disconnect()
        device.loop_stop()

        _, reason = connect(port, "0000b002", "not-its-password")
        assert reason != 0  # bad user name or password
        _, reason = connect(port, "0000c001", "whatever")  # another site's wearable
        assert reason != 0
        gateway.disconnect()
        gateway.loop_stop()
    finally:
        broker.stop()

    # Again, with the gateway's password made on the Pi: the cloud's no longer works.
    done = run_command(cloud, ca, "--out-dir", str(out), "--port", str(port),
                       "--bind-address", "127.0.0.1", "--persistence-dir", str(tmp_path / "data"),
                       "--local-gateway-password")  # fmt: skip
    assert done.returncode == 0, done.stderr
    local = (out / "gateway-mqtt-password").read_text().strip()
    assert oct((out / "gateway-mqtt-password").stat().st_mode & 0o777) == "0o600"
    broker = Broker(out / "patrol-site.conf")
    try:
        broker.wait_listening(port)
        _, reason = connect(port, GATEWAY_ID, local)
        assert reason == 0
        _, reason = connect(port, GATEWAY_ID, cloud.passwords[GATEWAY_ID])
        assert reason != 0
    finally:
        broker.stop()


def test_wrong_api_key_and_untrusted_cloud_are_clear_errors(tmp_path, cloud, pki):
    ca, _cert, _key = pki
    bad_key = Provisioned(cloud.url, "pk_wrong", {}, cloud.server)
    done = run_command(bad_key, ca, "--out-dir", str(tmp_path / "x"))
    assert done.returncode == 1
    assert "answered HTTP 401" in done.stderr
    (tmp_path / "other").mkdir()
    other_ca, _, _ = tls_files(tmp_path / "other")  # a CA that did not sign the cloud
    done = run_command(cloud, other_ca, "--out-dir", str(tmp_path / "x"))
    assert done.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert not (tmp_path / "x" / "passwd").exists()
