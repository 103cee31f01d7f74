"""The exported Mosquitto password file and ACL, loaded into a real Mosquitto broker.

A wearable and a gateway are provisioned through the API; the gateway fetches its
site's files with its API key (GET /api/v1/gateway/mosquitto); a private Mosquitto
started on those files accepts both passwords, refuses a wrong one and a revoked
wearable, and enforces the ACL (a wearable cannot read another wearable's commands).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as paho_mqtt
from cloudtest import ADMIN_TOKEN, World
from paho.mqtt.enums import CallbackAPIVersion

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
START_TIMEOUT_S = 30.0
MQTT_TIMEOUT_S = 20.0
NOT_AUTHORIZED = 135
"""paho reports a 3.1.1 CONNACK 5 (not authorised) as reason code 135."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _mosquitto(folder: Path, password_file: str, acl_file: str) -> Iterator[int]:
    """A private broker on the exported files; yields its port."""
    port = _free_port()
    (folder / "passwd").write_text(password_file, encoding="utf-8")
    (folder / "acl").write_text(acl_file, encoding="utf-8")
    (folder / "passwd").chmod(0o600)
    (folder / "acl").chmod(0o600)
    (folder / "mosquitto.conf").write_text(
        f"per_listener_settings false\nlistener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {folder / 'passwd'}\nacl_file {folder / 'acl'}\n"
        "persistence false\nuser root\n",
        encoding="utf-8",
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    log = (folder / "mosquitto.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-c", str(folder / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (folder / "mosquitto.log").read_text()
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _connack(port: int, username: str, password: str) -> int:
    """The CONNACK return code Mosquitto gives ``username`` (0 = accepted)."""
    codes: list[int] = []
    client = paho_mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"t-{username}", protocol=paho_mqtt.MQTTv311
    )
    client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc.value)
    client.connect("127.0.0.1", port, keepalive=10)
    deadline = time.monotonic() + MQTT_TIMEOUT_S
    while not codes and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    client.disconnect()
    assert codes, f"no CONNACK for {username}"
    return codes[0]


def _receives(port: int, reader: tuple[str, str], writer: tuple[str, str], topic: str) -> bool:
    """Whether ``reader`` subscribed to ``topic`` gets what ``writer`` publishes there."""
    got = threading.Event()
    sub = paho_mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-reader")
    sub.username_pw_set(*reader)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_message = lambda _c, _u, _m: got.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    pub = paho_mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-writer")
    pub.username_pw_set(*writer)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(MQTT_TIMEOUT_S)
        pub.publish(topic, b"x", qos=1).wait_for_publish(MQTT_TIMEOUT_S)
        # A marker the reader may read proves delivery works; then the verdict is final.
        return got.wait(3.0)
    finally:
        sub.loop_stop()
        pub.loop_stop()
        sub.disconnect()
        pub.disconnect()


def test_exported_files_work_in_a_real_mosquitto(world: World, tmp_path: Path) -> None:
    site_id = world.client.post("/api/v1/sites", json={"name": "Quay 4"}, headers=ADMIN).json()[
        "id"
    ]
    gw = world.client.post(
        "/api/v1/gateways", json={"gateway_id": "gw-quay-4", "site_id": site_id}, headers=ADMIN
    ).json()
    w1 = world.client.post(
        "/api/v1/wearables", json={"device_id": "0000c001", "site_id": site_id}, headers=ADMIN
    ).json()
    w2 = world.client.post(
        "/api/v1/wearables", json={"device_id": "0000c002", "site_id": site_id}, headers=ADMIN
    ).json()
    revoked = world.client.post(
        "/api/v1/devices/wearable/0000c002/revoke", json={"reason": "lost"}, headers=ADMIN
    )
    assert revoked.status_code == 200, revoked.text
    export = world.client.get(
        "/api/v1/gateway/mosquitto", headers={"Authorization": f"Bearer {gw['api_key']}"}
    )
    assert export.status_code == 200, export.text
    body = export.json()
    assert (body["gateway_id"], body["site_id"]) == ("gw-quay-4", site_id)
    assert [line.split(":")[0] for line in body["password_file"].splitlines()] == [
        "0000c001",
        "gw-quay-4",
    ]
    assert all(
        line.split(":", 1)[1].startswith("$7$101$") for line in body["password_file"].splitlines()
    )
    same = world.client.get(f"/api/v1/sites/{site_id}/mosquitto", headers=ADMIN).json()
    assert (same["password_file"], same["acl_file"]) == (body["password_file"], body["acl_file"])

    with _mosquitto(tmp_path, body["password_file"], body["acl_file"]) as port:
        assert _connack(port, "0000c001", w1["mqtt_password"]) == 0
        assert _connack(port, "gw-quay-4", gw["mqtt_password"]) == 0
        assert _connack(port, "0000c001", w1["mqtt_password"] + "x") == NOT_AUTHORIZED
        # revoked: no longer in the file
        assert _connack(port, "0000c002", w2["mqtt_password"]) == NOT_AUTHORIZED
        wearable = ("0000c001", w1["mqtt_password"])
        gateway = ("gw-quay-4", gw["mqtt_password"])
        # ACL: the gateway reaches the wearable's cmd topic, the wearable its own up topic...
        assert _receives(port, wearable, gateway, "patrol/v1/dev/0000c001/cmd")
        assert _receives(port, gateway, wearable, "patrol/v1/dev/0000c001/up")
        # ...but a wearable may not read another device's commands.
        assert not _receives(port, wearable, gateway, "patrol/v1/dev/0000c009/cmd")


def test_mosquitto_export_needs_a_gateway_key_or_a_technician(world: World) -> None:
    anonymous = world.client.get("/api/v1/gateway/mosquitto")
    assert anonymous.status_code == 401
    person_on_gateway_route = world.client.get("/api/v1/gateway/mosquitto", headers=ADMIN)
    assert person_on_gateway_route.status_code == 401
    gateway_on_people_route = world.client.get(
        "/api/v1/sites/1/mosquitto", headers={"Authorization": f"Bearer {world.api_key}"}
    )
    assert gateway_on_people_route.status_code == 401
