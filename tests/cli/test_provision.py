"""`patrol provision` against the real cloud service, the real MicroPython Unix port,
mpremote and Mosquitto.

The wearable path, end to end: the CLI registers a wearable through the cloud's
provisioning API (SQLite and PostgreSQL), writes its bundle, and copies it with
mpremote onto a "board": the Unix port's REPL on a pseudo-terminal (tests/cli/
pty_board.py). The board then boots the bundle's firmware with the bundle's
config.json; it logs in to a Mosquitto configured with the password file and ACL
the cloud exports for the site, and its BOOT frame, signed with the key the CLI
received, is committed by the edge agent and verified and stored by the cloud.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from cloud_api.app import create_app
from cloud_api.db import make_engine, session_scope
from cloud_api.models import Device, Event
from cloud_api.server import ServerThread
from cloud_api.settings import Settings
from edge_agent.agent import EdgeAgent
from edge_agent.settings import EdgeSettings
from patrol_cli import provision
from patrol_cli.main import app
from patrol_protocol.adverts import (
    BeaconAdvert,
    EquipmentAdvert,
    decode_advert_payload,
    parse_manufacturer_data,
    verify_advert,
)
from patrol_protocol.frames import Kind

from .pty_board import PtyBoard

pytestmark = [pytest.mark.micropython]

REPO = Path(__file__).resolve().parents[2]
SIM_HAL = REPO / "firmware" / "lib" / "patrol" / "hal" / "sim.py"
BOOT_SCRIPT = Path(__file__).parent / "scripts" / "boot_bundle.py"
COMPANY_ID = 0xFFFF
BOOT_TIMEOUT_S = 30
WAIT_S = 30.0
WIFI_PASSWORD = "site-wifi-secret-7"
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


@dataclass(frozen=True)
class Cloud:
    url: str
    admin_token: str
    db_url: str
    site_id: int

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def get(self, path: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.url}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture
def cloud(db_url: str) -> Iterator[Cloud]:
    """The cloud service on ``db_url`` with one site, served over HTTP."""
    admin_token = secrets.token_urlsafe(16)
    settings = Settings(
        database_url=db_url,
        server_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
        admin_token=SecretStr(admin_token),
    )
    api = ServerThread(create_app(settings), _free_port())
    api.start()
    try:
        site = httpx.post(
            f"{api.url}/api/v1/sites",
            json={"name": "Harbour depot", "timezone": "Europe/Berlin"},
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=10,
        )
        assert site.status_code == 201, site.text
        yield Cloud(api.url, admin_token, db_url, int(site.json()["id"]))
    finally:
        api.stop()


def _invoke(cloud: Cloud, *args: str) -> Any:
    env = {
        "PATROL_API_TOKEN": cloud.admin_token,
        "PATROL_CLOUD_URL": cloud.url,
        "PATROL_WIFI_PASSWORD": WIFI_PASSWORD,
    }
    return CliRunner().invoke(app, ["provision", *args], env=env)


def _boot(micropython: Path, board: Path) -> dict[str, Any]:
    """Boot the board folder's firmware in the Unix port (simulated HAL added)."""
    shutil.copyfile(SIM_HAL, board / "lib" / "patrol" / "hal" / "sim.py")
    result = subprocess.run(
        [str(micropython), str(BOOT_SCRIPT), str(board), str(BOOT_TIMEOUT_S)],
        capture_output=True,
        text=True,
        timeout=BOOT_TIMEOUT_S + 30,
        env={"MICROPYPATH": str(board / "lib"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    booted: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return booted


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _assert_no_secret_printed(output: str, config: dict[str, Any]) -> None:
    for name in ("key_hex", "presence_key_hex", "mqtt_password", "wifi_password"):
        if name in config:
            secret = str(config[name])
            assert secret not in output, f"{name} printed"
            if name.endswith("_hex"):
                assert base64.b64encode(bytes.fromhex(secret)).decode() not in output


def test_wearable_bundle_copied_with_mpremote_boots_and_its_boot_frame_reaches_the_cloud(
    micropython: Path, cloud: Cloud, tmp_path: Path
) -> None:
    gateway = cloud.post("/gateways", {"gateway_id": "gw-harbour-1", "site_id": cloud.site_id})
    broker_port = _free_port()
    bundle = tmp_path / "bundle"
    board = PtyBoard(micropython, tmp_path / "board")
    board.start()
    try:
        result = _invoke(
            cloud,
            "wearable",
            "--device-id",
            "0000B001",
            "--site-id",
            str(cloud.site_id),
            "--wifi-ssid",
            "harbour-staff",
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            str(broker_port),
            "--label",
            "W-12",
            "--out",
            str(bundle),
            "--port",
            board.port,
            "--resume",  # the Unix port must not be soft-reset (it would exit)
            "--no-reset",  # nor hard-reset (it has no machine.reset)
        )
    finally:
        board.stop()
    assert result.exit_code == 0, result.output
    config = json.loads((bundle / "config.json").read_text())
    output = result.output
    assert f"copied the bundle to the board at {board.port}" in output
    _assert_no_secret_printed(output, config)
    key = bytes.fromhex(config["key_hex"])
    assert f"key sha256 {provision.fingerprint(key)}" in output

    # the bundle: secrets only in config.json, readable by its owner only
    assert stat.S_IMODE((bundle / "config.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    assert {k: v for k, v in config.items() if not k.endswith(("_hex", "password"))} == {
        "role": "wearable",
        "device_id": "0000b001",
        "site_id": cloud.site_id,
        "key_id": 1,
        "wifi_ssid": "harbour-staff",
        "mqtt_host": "127.0.0.1",
        "mqtt_port": broker_port,
    }
    assert config["wifi_password"] == WIFI_PASSWORD
    assert (len(key), len(bytes.fromhex(config["presence_key_hex"]))) == (32, 16)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["compiled"] is True
    assert {"main.py", "lib/patrol/wearable.mpy", "lib/patrol/config.mpy"} <= set(manifest["files"])
    assert "lib/patrol/hal/sim.mpy" not in manifest["files"]
    assert "config.json" not in manifest["files"]
    # mpremote put exactly the bundle on the board (manifest.json stays at the bench)
    copied = _tree(tmp_path / "board")
    expected = {k: v for k, v in _tree(bundle).items() if k != "manifest.json"}
    assert copied == expected

    # The board boots the bundle against the site broker configured from the cloud's export.
    files = cloud.get(f"/sites/{cloud.site_id}/mosquitto")
    broker_dir = tmp_path / "mosquitto"
    broker_dir.mkdir()
    (broker_dir / "passwd").write_text(files["password_file"])
    (broker_dir / "passwd").chmod(0o600)
    (broker_dir / "acl").write_text(files["acl_file"])
    (broker_dir / "mosquitto.conf").write_text(
        f"listener {broker_port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {broker_dir / 'passwd'}\nacl_file {broker_dir / 'acl'}\n"
        "persistence false\nuser root\n"
    )
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with (broker_dir / "log").open("w") as log:
        broker = subprocess.Popen(
            [mosquitto, "-c", str(broker_dir / "mosquitto.conf")], stdout=log, stderr=log
        )
    agent = EdgeAgent(
        EdgeSettings(
            mqtt_host="127.0.0.1",
            mqtt_port=broker_port,
            mqtt_username=gateway["mqtt_username"],
            mqtt_password=SecretStr(gateway["mqtt_password"]),
            mqtt_client_id=f"cli-{secrets.token_hex(4)}",
            cloud_url=cloud.url,
            gateway_id=gateway["gateway_id"],
            gateway_api_key=SecretStr(gateway["api_key"]),
            queue_path=tmp_path / "edge.sqlite3",
            forward_interval_ms=100,
        )
    )
    engine = make_engine(cloud.db_url)

    def stored() -> list[tuple[int, int, int]]:
        with session_scope(engine) as session:
            rows = session.execute(select(Event.device_id, Event.seq, Event.kind))
            return [(int(d), int(s), int(k)) for d, s, k in rows]

    try:
        assert _wait_for(
            lambda: socket.socket().connect_ex(("127.0.0.1", broker_port)) == 0, bool, 10
        ), (broker_dir / "log").read_text()
        agent.start()
        assert agent.wait_ready(15), (broker_dir / "log").read_text()
        booted = _boot(micropython, tmp_path / "board")
        rows = _wait_for(stored, bool, WAIT_S)
    finally:
        agent.stop()
        broker.terminate()
        broker.wait(10)
        engine.dispose()
    assert booted["role"] == "wearable" and booted["device_id"] == "0000b001"
    assert (booted["acked_seq"], booted["last_seq"]) == (1, 1), booted
    assert rows == [(0x0000B001, 1, Kind.BOOT)]


@pytest.mark.parametrize(
    ("command", "kind", "advert_type"),
    [("beacon", "beacon", BeaconAdvert), ("equipment-tag", "equipment_tag", EquipmentAdvert)],
)
def test_ble_device_without_a_board_writes_the_bundle_and_says_so(
    micropython: Path,
    cloud: Cloud,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    kind: str,
    advert_type: type,
) -> None:
    monkeypatch.setattr("serial.tools.list_ports.comports", list)  # no USB board attached
    bundle = tmp_path / "bundle"
    result = _invoke(
        cloud,
        command,
        "--device-id",
        "000c0001",
        "--site-id",
        str(cloud.site_id),
        "--label",
        "radio 3",
        "--out",
        str(bundle),
    )
    assert result.exit_code == 0, result.output
    assert "no board attached: nothing copied" in result.output
    assert "mpremote connect <port> fs mkdir :lib + fs cp -r lib/patrol :lib/" in result.output
    config = json.loads((bundle / "config.json").read_text())
    _assert_no_secret_printed(result.output, config)
    assert stat.S_IMODE((bundle / "config.json").stat().st_mode) == 0o600
    assert set(config) == {"role", "device_id", "site_id", "key_id", "key_hex"}
    assert (config["role"], config["device_id"], config["key_id"]) == (kind, "000c0001", 1)
    key = bytes.fromhex(config["key_hex"])
    assert len(key) == 16
    engine = make_engine(cloud.db_url)
    try:
        with session_scope(engine) as session:
            kinds = session.scalars(select(Device.kind).where(Device.device_id == 0x000C0001))
            assert [str(k) for k in kinds] == [kind]
    finally:
        engine.dispose()

    # The bundle boots in the Unix port: the advert it builds verifies under the key.
    board = tmp_path / "board"
    shutil.copytree(bundle, board)
    booted = _boot(micropython, board)
    assert (booted["role"], booted["device_id"]) == (kind, "000c0001")
    payload = parse_manufacturer_data(bytes.fromhex(booted["advert"]))[COMPANY_ID]
    advert = decode_advert_payload(payload)
    assert isinstance(advert, advert_type)
    assert isinstance(advert, BeaconAdvert | EquipmentAdvert)
    signer = advert.beacon_id if isinstance(advert, BeaconAdvert) else advert.tag_id
    assert (signer, advert.key_id) == (0x000C0001, 1)
    verify_advert(COMPANY_ID, payload, key)


def test_cloud_refusal_and_an_existing_bundle_stop_before_anything_is_written(
    cloud: Cloud, tmp_path: Path
) -> None:
    first = _invoke(
        cloud,
        "equipment-tag",
        "--device-id",
        "000e0001",
        "--site-id",
        str(cloud.site_id),
        "--out",
        str(tmp_path / "first"),
        "--port",
        "none",
    )
    assert first.exit_code == 0, first.output
    # the same tag again: the cloud answers 409 and no bundle appears
    again = _invoke(
        cloud,
        "equipment-tag",
        "--device-id",
        "000e0001",
        "--site-id",
        str(cloud.site_id),
        "--out",
        str(tmp_path / "second"),
        "--port",
        "none",
    )
    assert again.exit_code == 1
    assert "provisioning failed: the cloud refused to register equipment_tag 000e0001" in (
        again.output
    )
    assert "HTTP 409" in again.output
    assert not (tmp_path / "second").exists()
    # an existing folder is never overwritten, and nothing is registered for it
    existing = _invoke(
        cloud,
        "beacon",
        "--device-id",
        "000b0009",
        "--site-id",
        str(cloud.site_id),
        "--out",
        str(tmp_path / "first"),
        "--port",
        "none",
    )
    assert existing.exit_code == 1
    assert "exists: choose another --out" in existing.output
    nowhere = _invoke(
        cloud,
        "beacon",
        "--device-id",
        "000b0009",
        "--site-id",
        str(cloud.site_id),
        "--out",
        str(tmp_path / "third"),
        "--firmware-dir",
        str(tmp_path / "no-firmware"),
    )
    assert nowhere.exit_code == 1
    assert f"no firmware (main.py and lib/) in {tmp_path / 'no-firmware'}" in nowhere.output
    bad = _invoke(cloud, "beacon", "--device-id", "b9", "--site-id", str(cloud.site_id))
    assert bad.exit_code == 1
    assert "device id must be 8 hex digits, got 'b9'" in bad.output
    engine = make_engine(cloud.db_url)
    try:
        with session_scope(engine) as session:
            ids = session.scalars(select(Device.device_id).order_by(Device.device_id)).all()
    finally:
        engine.dispose()
    assert [int(i) for i in ids] == [0x000E0001]


def test_several_attached_boards_need_an_explicit_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @dataclass
    class Port:
        device: str
        vid: int | None

    monkeypatch.setattr(
        "serial.tools.list_ports.comports",
        lambda: [
            Port("/dev/ttyUSB0", 0x10C4),
            Port("/dev/ttyACM0", 0x303A),
            Port("/dev/ttyS0", None),
        ],
    )
    with pytest.raises(provision.ProvisionError, match="several boards attached"):
        provision.find_board()
    monkeypatch.setattr(
        "serial.tools.list_ports.comports",
        lambda: [Port("/dev/ttyUSB0", 0x10C4), Port("/dev/ttyS0", None)],
    )
    assert provision.find_board() == "/dev/ttyUSB0"
