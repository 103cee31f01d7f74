"""Signed scans from the wearable firmware reach the database across a broker restart.

Issue 3's "done when": a wearable process in the real MicroPython Unix port taps an
NTAG 424 DNA tag at a steady pace and publishes every signed frame with QoS 1 to a
private Mosquitto (passwords, the ACL of docs/protocol.md, persistence on disk, as
on the Pi). Mid-stream the test stops the broker (SIGTERM: it saves its
persistence file) and starts it again on the same port a few seconds later; taps
made meanwhile wait in the wearable's flash queue. The edge agent commits and
acknowledges, forwards to the cloud service, which verifies every frame (device
MAC, SUN message) and stores it in SQLite or PostgreSQL. The events table must
then hold exactly the (device, seq) pairs the wearable made: none lost, none
twice, nothing rejected.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from cloud_api.app import create_app
from cloud_api.db import make_engine, session_scope
from cloud_api.models import Event, RejectedEvent
from cloud_api.server import ServerThread
from cloud_api.settings import Settings
from edge_agent.agent import EdgeAgent
from edge_agent.broker import mosquitto_conf
from edge_agent.settings import EdgeSettings
from patrol_protocol.frames import Kind
from patrol_sim.demo import GATEWAY_ID, provision
from patrol_sim.firmware import FIRMWARE_LIB
from patrol_sim.site import demo_site

pytestmark = [pytest.mark.micropython]

SCRIPT = Path(__file__).parent / "scripts" / "restart_wearable.py"
TAPS = 40
TAP_INTERVAL_MS = 150  # ~6 s of taps: the restart lands in the middle
STOP_AFTER_STORED = 8  # events in the database before the broker goes down
BROKER_DOWN_S = 3.0
WEARABLE_TIMEOUT_S = 90
WAIT_S = 60.0
DEVICE = "0000a001"
GATEWAY_USER = "gw-site"
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(fetch: Callable[[], T], ready: Callable[[T], bool], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


class SiteBroker:
    """A private Mosquitto configured by edge_agent.broker.mosquitto_conf (persistence
    on), restartable on the same port with the same persistence directory."""

    def __init__(self, directory: Path, users: dict[str, str]) -> None:
        self.port = _free_port()
        self.log = directory / "mosquitto.log"
        (directory / "data").mkdir(parents=True)
        passwd = directory / "passwd"
        passwd.write_text("")
        passwd.chmod(0o600)
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
        acl = directory / "acl"
        acl.write_text(
            f"user {GATEWAY_USER}\ntopic readwrite patrol/v1/#\n\n"
            "pattern write patrol/v1/dev/%u/up\npattern write patrol/v1/dev/%u/status\n"
            "pattern read patrol/v1/dev/%u/ack\npattern read patrol/v1/dev/%u/cmd\n"
        )
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(
            mosquitto_conf(
                port=self.port,
                password_file=passwd,
                acl_file=acl,
                persistence_dir=directory / "data",
                devices=len(users) - 1,
                bind_address="127.0.0.1",
            )
            + "user root\n"  # a private test broker needs no 'mosquitto' system user
        )
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as log_file:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log_file, stderr=log_file
            )

        def listening() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        assert _wait_for(lambda: listening(), bool, 15), "Mosquitto did not listen"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Mosquitto writes its persistence file
            self.proc.wait(15)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[SiteBroker, dict[str, str]]]:
    users = {DEVICE: secrets.token_hex(12), GATEWAY_USER: secrets.token_hex(12)}
    site_broker = SiteBroker(tmp_path / "mosquitto", users)
    site_broker.start()
    yield site_broker, users
    site_broker.stop()


def test_signed_scans_survive_a_broker_restart_with_no_loss_and_no_duplicate(
    micropython: Path,
    broker: tuple[SiteBroker, dict[str, str]],
    db_url: str,
    tmp_path: Path,
) -> None:
    site_broker, users = broker
    site = demo_site()
    guard = site.guards[0]
    tag = site.posts[0].checkpoints[0].tag
    assert tag is not None and guard.device_id == int(DEVICE, 16)
    settings = Settings(
        database_url=db_url,
        server_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
        admin_token=SecretStr(secrets.token_urlsafe(16)),
    )
    _, api_key = provision(settings, site)
    reads = tmp_path / "reads.txt"
    reads.write_text("".join(tag.read_ndef().hex() + "\n" for _ in range(TAPS)))
    api = ServerThread(create_app(settings), _free_port())
    api.start()
    agent = EdgeAgent(
        EdgeSettings(
            mqtt_host="127.0.0.1",
            mqtt_port=site_broker.port,
            mqtt_username=GATEWAY_USER,
            mqtt_password=SecretStr(users[GATEWAY_USER]),
            mqtt_client_id=f"e2e-restart-{secrets.token_hex(4)}",
            mqtt_reconnect_min_delay_s=1,
            mqtt_reconnect_max_delay_s=1,
            cloud_url=api.url,
            gateway_id=GATEWAY_ID,
            gateway_api_key=SecretStr(api_key),
            queue_path=tmp_path / "edge.sqlite3",
            forward_interval_ms=100,
        )
    )
    engine = make_engine(db_url)

    def stored() -> list[tuple[int, int]]:
        with session_scope(engine) as session:
            rows = session.execute(select(Event.device_id, Event.seq).order_by(Event.seq))
            return [(int(device_id), int(seq)) for device_id, seq in rows]

    agent.start()
    wearable: subprocess.Popen[str] | None = None
    try:
        assert agent.wait_ready(15), "edge agent did not subscribe on Mosquitto"
        wearable = subprocess.Popen(
            [
                str(micropython),
                str(SCRIPT),
                str(tmp_path / "flash"),
                "127.0.0.1",
                str(site_broker.port),
                DEVICE,
                users[DEVICE],
                guard.key.hex(),
                str(WEARABLE_TIMEOUT_S),
                str(reads),
                str(TAP_INTERVAL_MS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, MICROPYPATH=str(FIRMWARE_LIB)),
        )
        before_stop = _wait_for(stored, lambda rows: len(rows) >= STOP_AFTER_STORED, WAIT_S)
        assert len(before_stop) >= STOP_AFTER_STORED, "no events reached the database"
        site_broker.stop()  # mid-stream
        time.sleep(BROKER_DOWN_S)  # taps go on; the wearable keeps them in flash
        site_broker.start()
        out, err = wearable.communicate(timeout=WEARABLE_TIMEOUT_S + 30)
        assert wearable.returncode == 0, err
        final: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        expected = [(int(DEVICE, 16), seq) for seq in range(1, TAPS + 2)]  # BOOT + taps
        rows = _wait_for(stored, lambda found: len(found) >= len(expected), WAIT_S)
        time.sleep(1.0)  # anything late (a resent duplicate) would land by now
        rows = stored()
        with session_scope(engine) as session:
            rejected = [(r.key, r.reason) for r in session.scalars(select(RejectedEvent)).all()]
            per_kind = dict(
                session.execute(select(Event.kind, func.count()).group_by(Event.kind)).all()
            )
    finally:
        if wearable is not None and wearable.poll() is None:
            wearable.kill()
            wearable.wait(10)
        agent.stop()
        api.stop()
        engine.dispose()

    # The restart really happened mid-stream, and the wearable noticed it.
    assert STOP_AFTER_STORED <= len(before_stop) < len(expected)
    assert final["stats"]["disconnects"] >= 1
    assert (final["taps_left"], final["depth"]) == (0, 0)
    assert final["acked_seq"] == final["last_seq"] == TAPS + 1
    # Exactly the frames the wearable made: no loss, no duplicate, nothing rejected.
    assert rows == expected
    assert len(set(rows)) == len(rows)
    assert per_kind == {Kind.BOOT: 1, Kind.NFC_SCAN: TAPS}
    assert rejected == []
    print(
        f"stored {len(before_stop)} before the stop; offline taps {final['offline_taps']}; "
        f"wearable stats {final['stats']}, MQTT retransmits {final['retransmits']}"
    )
