"""The wearable talks to the real Mosquitto of the test run: MicroPython and CPython.

A test-side gateway (paho-mqtt, gateway account) receives the frames, verifies them
with patrol_protocol, acks them and sends a signed SET_TIME; the wearable frees its
queue, applies the command and answers with CMD_RESULT. Killing the connection
without DISCONNECT makes the broker publish the retained "offline" last will.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from patrol_protocol.commands import DeviceState, Status, encode_status
from patrol_protocol.frames import Boot, ClockJump, CmdResult, Kind, NfcScan, decode_body

from . import upy
from .gateway import SET_TIME_S, Gateway

pytestmark = [pytest.mark.mosquitto, pytest.mark.micropython]
RUN_TIMEOUT_S = 15


def _exercise(broker: object, device: str, command: list[str], env: dict[str, str]) -> None:
    gateway = Gateway(
        broker.host,
        broker.port,
        broker.gateway_user,  # type: ignore[attr-defined]
        broker.credentials[broker.gateway_user],
        device,  # type: ignore[attr-defined]
    )
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S + 30,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        final = json.loads(result.stdout.strip().splitlines()[-1])
        frames = sorted(gateway.frames, key=lambda f: f.header.seq)
        bodies = [(f.header.seq, f.header.kind, decode_body(f.header.kind, f.body)) for f in frames]
        # BOOT first; the tap and the command's answer race, so their order may vary.
        # The first SET_TIME moves the unsynced clock by far more than 2 s: CLOCK_JUMP.
        assert bodies[0] == (1, Kind.BOOT, Boot(0, 1, 0, 0))
        assert [seq for seq, _, _ in bodies] == [1, 2, 3, 4]
        later = {kind: body for _, kind, body in bodies[1:]}
        jump = later.pop(Kind.CLOCK_JUMP)
        assert isinstance(jump, ClockJump)
        assert (jump.cmd_seq, jump.after_s) == (1, SET_TIME_S)
        assert jump.delta_ms > 2000
        assert later == {
            Kind.NFC_SCAN: NfcScan(
                1,
                bytes.fromhex("04de5f1eacc040"),
                bytes.fromhex("ef963ff7828658a599f3041510671e88"),
                bytes.fromhex("94eed9ee65337086"),
            ),
            Kind.CMD_RESULT: CmdResult(1, 0),
        }
        assert final["depth"] == 0
        assert final["acked_seq"] == final["last_seq"] == 4
        assert final["clock_synced"] is True
        assert SET_TIME_S <= final["time_s"] < SET_TIME_S + RUN_TIMEOUT_S
        device_id = int(device, 16)
        online = encode_status(Status(device_id=device_id, state=DeviceState.ONLINE))
        offline = encode_status(Status(device_id=device_id, state=DeviceState.OFFLINE))
        statuses = gateway.wait_for_status(offline)
        assert statuses[-1] == (offline, False)
        assert online in [payload for payload, _ in statuses]
    finally:
        gateway.close()


def test_micropython_wearable_against_mosquitto(
    micropython: Path, mqtt_broker: object, tmp_path: Path
) -> None:
    device = mqtt_broker.device_users[0]  # type: ignore[attr-defined]
    password = mqtt_broker.credentials[device]  # type: ignore[attr-defined]
    command = [
        str(micropython),
        str(upy.SCRIPTS / "wearable_mqtt.py"),
        str(tmp_path / "flash"),
        mqtt_broker.host,
        str(mqtt_broker.port),
        device,
        password,
        str(RUN_TIMEOUT_S),  # type: ignore[attr-defined]
    ]
    _exercise(mqtt_broker, device, command, dict(os.environ, MICROPYPATH=str(upy.FIRMWARE_LIB)))


def test_cpython_wearable_against_mosquitto(mqtt_broker: object, tmp_path: Path) -> None:
    """The demo runs the same firmware modules under CPython 3.11 (firmware/lib on sys.path)."""
    device = mqtt_broker.device_users[1]  # type: ignore[attr-defined]
    password = mqtt_broker.credentials[device]  # type: ignore[attr-defined]
    command = [
        sys.executable,
        str(upy.SCRIPTS / "wearable_mqtt.py"),
        str(tmp_path / "flash"),
        mqtt_broker.host,
        str(mqtt_broker.port),
        device,
        password,
        str(RUN_TIMEOUT_S),  # type: ignore[attr-defined]
    ]
    env = dict(os.environ, PYTHONPATH=str(upy.FIRMWARE_LIB))
    _exercise(mqtt_broker, device, command, env)


def test_offline_backlog_is_delivered_sos_first(
    micropython: Path, mqtt_broker: object, tmp_path: Path
) -> None:
    """Frames queued while the network was down reach the edge once it is up; SOS leads."""
    device = mqtt_broker.device_users[0]  # type: ignore[attr-defined]
    gateway = Gateway(
        mqtt_broker.host,
        mqtt_broker.port,
        mqtt_broker.gateway_user,  # type: ignore[attr-defined]
        mqtt_broker.credentials[mqtt_broker.gateway_user],
        device,  # type: ignore[attr-defined]
    )
    try:
        command = [
            str(micropython),
            str(upy.SCRIPTS / "wearable_mqtt.py"),
            str(tmp_path / "flash"),
            mqtt_broker.host,
            str(mqtt_broker.port),
            device,  # type: ignore[attr-defined]
            mqtt_broker.credentials[device],
            str(RUN_TIMEOUT_S),
            "backlog",  # type: ignore[attr-defined]
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S + 30,
            check=False,
            env=dict(os.environ, MICROPYPATH=str(upy.FIRMWARE_LIB)),
        )
        assert result.returncode == 0, result.stderr
        final = json.loads(result.stdout.strip().splitlines()[-1])
        arrival = [(f.header.seq, f.header.kind) for f in gateway.frames]
        # Queued offline: BOOT (1), heartbeats, the SOS, another heartbeat. Online: the tap,
        # the CLOCK_JUMP and the CMD_RESULT. The SOS goes out first, then the backlog in order.
        sos_seq = arrival[0][0]
        assert arrival[0][1] == Kind.SOS
        backlog = [seq for seq, _ in arrival[1:] if seq <= final["last_seq"] - 3]
        assert backlog == [seq for seq in range(1, final["last_seq"] - 2) if seq != sos_seq]
        assert sorted(seq for seq, _ in arrival) == list(range(1, final["last_seq"] + 1))
        # 1 BOOT + 10 + 1 + 1 heartbeats + SOS + tap + CLOCK_JUMP + CMD_RESULT
        assert final["last_seq"] == 17
        assert (final["depth"], final["acked_seq"]) == (0, 17)
    finally:
        gateway.close()
