"""A test-side gateway on the real broker: receives device frames, acks them, sends a command.

Uses paho-mqtt with the gateway account (the edge agent's role), and patrol_protocol
to decode and verify everything the firmware sends.
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt

from patrol_protocol.commands import Ack, CommandKind, encode_ack, encode_command, encode_set_time
from patrol_protocol.frames import EventFrame, decode_frame, verify_frame

DEVICE_KEY = bytes(range(32))
SET_TIME_S = 1_795_600_000
WAIT_S = 20.0


class Gateway:
    """Acks every frame from ``device`` (highest contiguous seq) and sends one SET_TIME."""

    def __init__(self, host: str, port: int, user: str, password: str, device: str) -> None:
        self.device = device
        self.frames: list[EventFrame] = []
        self.status: list[tuple[bytes, bool]] = []
        self._lock = threading.Lock()
        self._command_sent = False
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{device}")
        self._client.username_pw_set(user, password)
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.connect(host, port)
        self._client.loop_start()
        self._client.subscribe(
            [(f"patrol/v1/dev/{device}/up", 1), (f"patrol/v1/dev/{device}/status", 1)]
        )
        if not self._subscribed.wait(WAIT_S):
            raise AssertionError("gateway subscription not acknowledged")

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/status"):
            with self._lock:
                self.status.append((bytes(message.payload), bool(message.retain)))
            return
        frame = decode_frame(bytes(message.payload))
        verify_frame(frame, DEVICE_KEY)
        with self._lock:
            if all(f.header.seq != frame.header.seq for f in self.frames):
                self.frames.append(frame)
            seqs = sorted(f.header.seq for f in self.frames)
        contiguous = 0
        for expected, seq in enumerate(seqs, start=1):
            if seq != expected:
                break
            contiguous = seq
        if contiguous:
            ack = encode_ack(Ack(device_id=int(self.device, 16), acked_seq=contiguous))
            client.publish(f"patrol/v1/dev/{self.device}/ack", ack, qos=1)
        if not self._command_sent:
            self._command_sent = True
            command = encode_command(
                kind=CommandKind.SET_TIME,
                key_id=1,
                device_id=int(self.device, 16),
                cmd_seq=1,
                issued_s=SET_TIME_S,
                valid_for_s=300,
                body=encode_set_time(SET_TIME_S, 0),
                key=DEVICE_KEY,
            )
            client.publish(f"patrol/v1/dev/{self.device}/cmd", command, qos=1)

    def wait_for_status(self, payload: bytes) -> list[tuple[bytes, bool]]:
        """Wait until ``payload`` arrives live (not as an old retained message)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self._lock:
                if (payload, False) in self.status:
                    return list(self.status)
            time.sleep(0.05)
        raise AssertionError(f"status {payload.hex()} not seen; got {self.status}")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
