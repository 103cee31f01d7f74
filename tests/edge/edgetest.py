"""Helpers of the edge-agent tests: signed frames and a wearable's MQTT client.

Frames are built with the one codec (patrol_protocol.frames.encode_frame) and
signed with a fixed test key; the edge never verifies MACs, but the frames are the
real thing so the forwarder tests can hand them to the real cloud.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.broker import mosquitto_conf
from patrol_protocol.commands import Ack, decode_ack
from patrol_protocol.frames import Eviction, Heartbeat, Kind, encode_body, encode_frame
from patrol_protocol.ids import parse_device_id
from patrol_protocol.topics import ack_topic, up_topic

DEVICE_KEY = bytes(range(32))
"""Test key of every simulated wearable (32 bytes, HMAC-SHA256)."""
FRAME_TIME_S = 1_795_580_000
"""2026-11-25T03:33:20Z, a fixed device time for reproducible frames."""
ACK_WAIT_S = 10.0


def heartbeat_frame(device_id: int, seq: int, *, battery_pct: int = 80) -> bytes:
    """A signed HEARTBEAT frame (the commonest event)."""
    body = encode_body(Heartbeat(battery_pct=battery_pct, battery_mv=3900, status=0, queue_depth=0))
    return encode_frame(
        kind=Kind.HEARTBEAT,
        key_id=1,
        flags=0,
        device_id=device_id,
        seq=seq,
        time_s=FRAME_TIME_S + seq,
        time_ms=0,
        body=body,
        key=DEVICE_KEY,
    )


def eviction_frame(device_id: int, seq: int, first_seq: int, last_seq: int) -> bytes:
    """A signed EVICTION frame declaring first_seq..last_seq dropped (reason 1, flash full)."""
    body = encode_body(Eviction(first_seq=first_seq, last_seq=last_seq, reason=1))
    return encode_frame(
        kind=Kind.EVICTION,
        key_id=1,
        flags=0,
        device_id=device_id,
        seq=seq,
        time_s=FRAME_TIME_S + seq,
        time_ms=0,
        body=body,
        key=DEVICE_KEY,
    )


class Wearable:
    """A device's MQTT login (its own user): publishes frames, collects acks on its ack topic."""

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.device_id = parse_device_id(username)
        self.acks: queue.Queue[Ack] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"wearable-{username}-{uuid.uuid4().hex[:6]}"
        )
        self.client.username_pw_set(username, password)
        self.client.on_message = lambda c, u, m: self.acks.put(decode_ack(m.payload))
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(ack_topic(self.device_id), qos=1)
        assert self._subscribed.wait(5), "SUBACK not received"

    def publish(self, payload: bytes, *, topic: str | None = None) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        info = self.client.publish(topic or up_topic(self.device_id), payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

    def wait_ack(self, acked_seq: int, timeout_s: float = ACK_WAIT_S) -> list[Ack]:
        """Collect acks until one carries ``acked_seq``; return all seen (fails on timeout)."""
        seen: list[Ack] = []
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(
                    f"no ack {acked_seq} for {self.device_id:08x} within {timeout_s}s: {seen}"
                )
            try:
                ack = self.acks.get(timeout=remaining)
            except queue.Empty:
                continue
            seen.append(ack)
            if ack.acked_seq == acked_seq:
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def forget_session(host: str, port: int, username: str, password: str, client_id: str) -> None:
    """Connect once with clean_session=True under ``client_id``: the broker drops its
    persistent session, so a finished test leaves no subscriber queueing messages."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.username_pw_set(username, password)
    client.connect(host, port)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


def wait_until(predicate, timeout_s: float = ACK_WAIT_S, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true (fails the test after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.01)


class SiteMosquitto:
    """A private Mosquitto run with the configuration edge_agent.broker.mosquitto_conf()
    renders for a site (plus ``user root``), its own password file and the ACL of
    docs/protocol.md. Restartable on the same port, persistence directory kept."""

    GATEWAY = "gw-site"

    def __init__(self, directory: Path, users: dict[str, str]) -> None:
        import shutil

        self.dir = directory
        self.users = users
        self.mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "data").mkdir(exist_ok=True)
        passwd = directory / "passwd"
        passwd.write_text("")
        passwd.chmod(0o600)
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
        acl = directory / "acl"
        acl.write_text(
            f"user {self.GATEWAY}\ntopic readwrite patrol/v1/#\n\n"
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
                devices=max(len(users) - 1, 1),
                bind_address="127.0.0.1",
            )
            + "user root\n"  # a private test broker stays root (no 'mosquitto' user needed)
        )
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as log_file:
            self.proc = subprocess.Popen(
                [self.mosquitto, "-c", str(self.conf)], stdout=log_file, stderr=log_file
            )

        def listening() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, what="the site Mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Mosquitto saves its persistence file
            self.proc.wait(10)
        self.proc = None


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "patrol test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


AGENT_START_TIMEOUT_S = 15.0


class AgentProcess:
    """``python -m edge_agent run`` with its stderr lines collected by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--log-level", "DEBUG"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, count: int = 1, timeout_s: float = AGENT_START_TIMEOUT_S) -> None:
        def enough() -> bool:
            while not self.lines.empty():
                self.seen.append(self.lines.get())
            return sum(text in line for line in self.seen) >= count

        wait_until(enough, timeout_s, what=f"{count} x {text!r} from the agent: {self.seen[-5:]}")

    def kill_hard(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)
