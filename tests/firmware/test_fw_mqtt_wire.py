"""The MQTT client's packets byte for byte, against a scripted peer on a local socket.

Mosquitto always answers PUBACK at once, so the resend path (PUBLISH again with the
DUP flag after retry_ms) is driven here by a peer that withholds the first PUBACK.
Every packet the firmware sends is compared with its MQTT 3.1.1 encoding.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from . import upy

pytestmark = pytest.mark.micropython
PEER_TIMEOUT_S = 10.0


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _read_packet(conn: socket.socket) -> bytes:
    """One whole MQTT packet (fixed header, remaining length, body)."""
    head = conn.recv(1)
    if not head:
        raise ConnectionError("closed")
    length_bytes = b""
    length = 0
    multiplier = 1
    while True:
        byte = conn.recv(1)
        length_bytes += byte
        length += (byte[0] & 0x7F) * multiplier
        multiplier <<= 7
        if not byte[0] & 0x80:
            break
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return head + length_bytes + body


def test_connect_subscribe_publish_dup_resend_ping(micropython: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(PEER_TIMEOUT_S)
    port = server.getsockname()[1]
    seen: dict[str, bytes] = {}
    errors: list[BaseException] = []

    def peer() -> None:
        try:
            conn, _ = server.accept()
            conn.settimeout(PEER_TIMEOUT_S)
            seen["connect"] = _read_packet(conn)
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, no session, accepted
            seen["subscribe"] = _read_packet(conn)
            conn.sendall(b"\x90\x03" + seen["subscribe"][2:4] + b"\x01")  # SUBACK QoS 1
            seen["publish"] = _read_packet(conn)  # withheld: no PUBACK
            seen["dup"] = _read_packet(conn)
            pid = seen["dup"][-13:-11]
            conn.sendall(b"\x40\x02" + pid)  # PUBACK for the resend
            # A QoS 1 message to the client, which must answer PUBACK 0x0007.
            ack_topic = b"patrol/v1/dev/0000a001/ack"
            body = _string(ack_topic) + b"\x00\x07" + b"ACK!"
            conn.sendall(bytes((0x32, len(body))) + body)
            seen["puback"] = _read_packet(conn)
            seen["ping"] = _read_packet(conn)
            conn.sendall(b"\xd0\x00")  # PINGRESP
            seen["disconnect"] = _read_packet(conn)
            conn.close()
        except BaseException as error:  # reported by the test thread below
            errors.append(error)

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    result = subprocess.run(
        [str(micropython), str(upy.SCRIPTS / "mqtt_dup.py"), str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, MICROPYPATH=str(upy.FIRMWARE_LIB)),
    )
    thread.join(PEER_TIMEOUT_S)
    server.close()
    assert result.returncode == 0, result.stderr
    assert not errors, errors
    final = json.loads(result.stdout.strip().splitlines()[-1])

    will_topic = b"patrol/v1/dev/0000a001/status"
    will = b"\x01\x00\x00\x00\xa0\x01"
    # flags: username, password, will retain, will QoS 1, will, clean session
    connect_body = (
        b"\x00\x04MQTT\x04\xee\x00\x01"
        + _string(b"0000a001")
        + _string(will_topic)
        + _string(will)
        + _string(b"0000a001")
        + _string(b"pw")
    )
    assert seen["connect"] == bytes((0x10, len(connect_body))) + connect_body
    sub_body = b"\x00\x01" + _string(b"patrol/v1/dev/0000a001/ack") + b"\x01"
    assert seen["subscribe"] == bytes((0x82, len(sub_body))) + sub_body
    pub_body = _string(b"patrol/v1/dev/0000a001/up") + b"\x00\x02" + b"frame-bytes"
    assert seen["publish"] == bytes((0x32, len(pub_body))) + pub_body
    assert seen["dup"] == bytes((0x3A, len(pub_body))) + pub_body  # same bytes, DUP bit set
    assert seen["puback"] == b"\x40\x02\x00\x07"
    assert seen["ping"] == b"\xc0\x00"
    assert seen["disconnect"] == b"\xe0\x00"
    assert final == {
        "key": "dup",
        "session_present": False,
        "pid": 2,
        "sub_pid": 1,
        "acked": True,
        "retransmits": 1,
        "pubacks": 1,
        "suback": 1,
        "received": [["patrol/v1/dev/0000a001/ack", b"ACK!".hex()]],
    }
