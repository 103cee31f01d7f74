"""One NFC checkpoint scan from firmware to API, through every real component.

The wearable firmware runs in the real MicroPython Unix port and publishes to
the private Mosquitto (its own account, under the ACL); the edge agent commits
the frames and acknowledges them, forwards them to the cloud service, which
verifies the device MAC and the tag's SUN message and stores the scan in a real
database (SQLite and PostgreSQL); the test reads the scan back through the API.
A replayed SUN message (a cloned tap) travels the same path and is rejected.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from cloud_api.app import create_app
from cloud_api.db import make_engine, session_scope
from cloud_api.models import Checkpoint, RejectedEvent
from cloud_api.server import ServerThread
from cloud_api.settings import Settings
from edge_agent.agent import EdgeAgent
from edge_agent.settings import EdgeSettings
from patrol_sim.demo import GATEWAY_ID, provision
from patrol_sim.firmware import FIRMWARE_LIB
from patrol_sim.site import demo_site

pytestmark = [pytest.mark.mosquitto, pytest.mark.micropython]

SCRIPT = Path(__file__).parent / "scripts" / "tap_wearable.py"
WEARABLE_TIMEOUT_S = 30
API_WAIT_S = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(fetch: Any, ready: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_nfc_scan_travels_from_micropython_to_the_api(
    micropython: Path, mqtt_broker: Any, db_url: str, tmp_path: Path
) -> None:
    site = demo_site()
    guard = site.guards[0]
    gate_house = site.posts[0].checkpoints[0]
    assert gate_house.tag is not None and guard.device_id == 0x0000A001
    admin_token = secrets.token_urlsafe(16)
    settings = Settings(
        database_url=db_url,
        server_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
        admin_token=SecretStr(admin_token),
    )
    _, api_key = provision(settings, site)
    api = ServerThread(create_app(settings), _free_port())
    api.start()
    gateway = mqtt_broker.gateway_user
    agent = EdgeAgent(
        EdgeSettings(
            mqtt_host=mqtt_broker.host,
            mqtt_port=mqtt_broker.port,
            mqtt_username=gateway,
            mqtt_password=SecretStr(mqtt_broker.credentials[gateway]),
            mqtt_client_id=f"e2e-{secrets.token_hex(4)}",
            cloud_url=api.url,
            gateway_id=GATEWAY_ID,
            gateway_api_key=SecretStr(api_key),
            queue_path=tmp_path / "edge.sqlite3",
            forward_interval_ms=100,
        )
    )
    agent.start()
    try:
        assert agent.wait_ready(10), "edge agent did not subscribe on Mosquitto"
        first, second = gate_house.tag.read_ndef(), gate_house.tag.read_ndef()
        device = "0000a001"
        result = subprocess.run(
            [
                str(micropython),
                str(SCRIPT),
                str(tmp_path / "flash"),
                mqtt_broker.host,
                str(mqtt_broker.port),
                device,
                mqtt_broker.credentials[device],
                guard.key.hex(),
                str(WEARABLE_TIMEOUT_S),
                first.hex(),
                second.hex(),
                first.hex(),  # the first tap's message again: a replayed (cloned) SUN
            ],
            capture_output=True,
            text=True,
            timeout=WEARABLE_TIMEOUT_S + 30,
            env=dict(os.environ, MICROPYPATH=str(FIRMWARE_LIB)),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        final = json.loads(result.stdout.strip().splitlines()[-1])
        # BOOT, then three scans, all committed by the edge and acknowledged.
        assert (final["taps_left"], final["depth"]) == (0, 0)
        assert final["acked_seq"] == final["last_seq"] == 4

        headers = {"Authorization": f"Bearer {admin_token}"}

        def scans() -> list[dict[str, Any]]:
            response = httpx.get(
                f"{api.url}/api/v1/events",
                params={"device_id": device, "kind": "nfc_scan"},
                headers=headers,
                timeout=5,
            )
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            return items

        items = _wait_for(scans, lambda found: len(found) >= 2, API_WAIT_S)
        engine = make_engine(db_url)
        try:
            with session_scope(engine) as session:
                checkpoint_id = session.scalar(
                    select(Checkpoint.id).where(Checkpoint.name == "Gate house")
                )
                rejected = _wait_for(
                    lambda: session.scalars(select(RejectedEvent)).all(),
                    lambda rows: len(rows) >= 1,
                    API_WAIT_S,
                )
                rejections = [(r.key, r.reason, r.gateway_pk is not None) for r in rejected]
        finally:
            engine.dispose()
    finally:
        agent.stop()
        api.stop()

    assert [(i["key"], i["seq"], i["assurance"]) for i in items] == [
        ("0000a001:3", 3, "high"),
        ("0000a001:2", 2, "high"),
    ]
    for item in items:
        assert item["gateway_id"] == GATEWAY_ID
        assert item["checkpoint_id"] == checkpoint_id
        assert item["body"]["tag_type"] == 1
        assert item["body"]["uid"] == "04a1b2c3d4e501"
        assert "device_clock_unsynced" in item["flags"]  # no signed SET_TIME was sent
    assert rejections == [("0000a001:4", "replayed_counter", True)]
