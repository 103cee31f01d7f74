"""Commands (cloud -> edge -> wearable), application-level acks and status frames.

Commands reuse the event-frame layout with kinds 0x90..0x9f and are signed by the
cloud with the device key, so the edge can relay but never forge them::

    0 u8 version=1 | 1 u8 kind | 2 u8 key_id | 3 u8 flags=0 | 4 u32 device_id
    8 u32 cmd_seq | 12 u32 issued_s | 16 u16 valid_for_s | 18 u16 body_len | 20 body | mac16

``decode_command`` checks in the same order as ``decode_frame`` and then the body
for its kind. Acks (12 bytes) and status frames (6 bytes) are unsigned; their
authority comes from the broker ACL (acks) or is informational only (status).
"""

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from patrol_protocol._checks import check_bytes, check_choice, check_range, check_uint
from patrol_protocol._envelope import HEADER, check_envelope, envelope_mac, read_header, split_body
from patrol_protocol.crypto import constant_time_equal
from patrol_protocol.errors import (
    MalformedError,
    OversizedError,
    SignatureError,
    TruncatedError,
    UnknownKindError,
    VersionError,
)
from patrol_protocol.ids import device_id_text
from patrol_protocol.limits import (
    DEVICE_KEY_BYTES,
    FRAME_MAC_BYTES,
    MAX_BODY_BYTES,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
)


class CommandKind(IntEnum):
    """Command kinds this version defines (0x90..0x9f is the command range)."""

    SET_TIME = 0x90
    SET_CONFIG = 0x91
    LOCATE = 0x92


LOCATE_MAX_S: Final = 300
"""A LOCATE/BUZZ plays at most five minutes: enough to find a dropped wearable, bounded drain."""


ACK_KIND: Final = 0x81
"""Kind byte of the application-level ack frame."""


class ConfigKey(IntEnum):
    """SET_CONFIG entry keys."""

    HEARTBEAT_INTERVAL_S = 1
    VISIT_RSSI_DBM = 2
    VISIT_DWELL_S = 3
    MAN_DOWN_S = 4


_CONFIG_FORMATS: Final[dict[int, struct.Struct]] = {
    ConfigKey.HEARTBEAT_INTERVAL_S: struct.Struct(">H"),
    ConfigKey.VISIT_RSSI_DBM: struct.Struct(">b"),
    ConfigKey.VISIT_DWELL_S: struct.Struct(">H"),
    ConfigKey.MAN_DOWN_S: struct.Struct(">H"),
}
_CONFIG_RANGES: Final[dict[int, tuple[int, int]]] = {
    ConfigKey.HEARTBEAT_INTERVAL_S: (0, 0xFFFF),
    ConfigKey.VISIT_RSSI_DBM: (-128, 127),
    ConfigKey.VISIT_DWELL_S: (0, 0xFFFF),
    ConfigKey.MAN_DOWN_S: (0, 0xFFFF),
}


class DeviceState(IntEnum):
    """Status frame state: birth message (online) or last will (offline)."""

    OFFLINE = 0
    ONLINE = 1


_SET_TIME: Final = struct.Struct(">IH")
_LOCATE: Final = struct.Struct(">H")
_ACK: Final = struct.Struct(">BBHII")
_STATUS: Final = struct.Struct(">BBI")
_COMMAND_KINDS: Final = frozenset(int(k) for k in CommandKind)

ACK_BYTES: Final = _ACK.size
STATUS_BYTES: Final = _STATUS.size


@dataclass(frozen=True, slots=True)
class CommandFrame:
    """A structurally valid command; ``raw`` is the exact signed bytes."""

    kind: int
    key_id: int
    device_id: int
    cmd_seq: int
    issued_s: int
    valid_for_s: int
    body: bytes
    mac: bytes
    raw: bytes

    def __post_init__(self) -> None:
        check_uint("kind", self.kind, 8)
        if self.kind not in _COMMAND_KINDS:
            raise UnknownKindError(f"kind=0x{self.kind:02x} is not a command kind")
        check_uint("key_id", self.key_id, 8)
        check_uint("device_id", self.device_id, 32)
        check_uint("cmd_seq", self.cmd_seq, 32, minimum=1)
        check_uint("issued_s", self.issued_s, 32)
        check_uint("valid_for_s", self.valid_for_s, 16)
        check_envelope(self.raw, self.body, self.mac)

    @property
    def signed_part(self) -> bytes:
        """The bytes the MAC covers: everything before it."""
        return self.raw[:-FRAME_MAC_BYTES]

    @property
    def expires_s(self) -> int:
        """UTC second after which the wearable (once its clock is set) refuses it."""
        return self.issued_s + self.valid_for_s


@dataclass(frozen=True, slots=True)
class SetTime:
    """0x90 body: the time to set, UTC seconds and milliseconds."""

    time_s: int
    time_ms: int

    def __post_init__(self) -> None:
        check_uint("time_s", self.time_s, 32)
        check_range("time_ms", self.time_ms, 0, 999)


def encode_set_time(time_s: int, time_ms: int) -> bytes:
    """SET_TIME body: ``u32 time_s, u16 time_ms``."""
    t = SetTime(time_s, time_ms)
    return _SET_TIME.pack(t.time_s, t.time_ms)


def decode_set_time(body: bytes) -> SetTime:
    """Parse a SET_TIME body (exactly 6 bytes)."""
    if len(body) != _SET_TIME.size:
        raise MalformedError(f"SET_TIME body must be {_SET_TIME.size} bytes, got {len(body)}")
    return SetTime(*_SET_TIME.unpack(body))


@dataclass(frozen=True, slots=True)
class Locate:
    """0x92 body: play the locate pattern (LED, buzzer, vibration) for ``duration_s``."""

    duration_s: int

    def __post_init__(self) -> None:
        check_range("duration_s", self.duration_s, 1, LOCATE_MAX_S)


def encode_locate(duration_s: int) -> bytes:
    """LOCATE body: ``u16 duration_s`` (1..300)."""
    return _LOCATE.pack(Locate(duration_s).duration_s)


def decode_locate(body: bytes) -> Locate:
    """Parse a LOCATE body (exactly 2 bytes, duration 1..300 s)."""
    if len(body) != _LOCATE.size:
        raise MalformedError(f"LOCATE body must be {_LOCATE.size} bytes, got {len(body)}")
    return Locate(*_LOCATE.unpack(body))


def encode_set_config(entries: dict[int, int]) -> bytes:
    """SET_CONFIG body: ``u8 key, u8 len, value`` per entry, in ascending key order."""
    if not entries:
        raise MalformedError("SET_CONFIG needs at least one entry")
    out = b""
    for key in sorted(entries):
        value = entries[key]
        fmt = _CONFIG_FORMATS.get(key)
        if fmt is None:
            raise MalformedError(f"config key={key} unknown")
        low, high = _CONFIG_RANGES[key]
        check_range(f"config key {ConfigKey(key).name.lower()}", value, low, high)
        out += bytes((key, fmt.size)) + fmt.pack(value)
    if len(out) > MAX_BODY_BYTES:
        raise OversizedError(f"SET_CONFIG body is {len(out)} bytes, limit {MAX_BODY_BYTES}")
    return out


def decode_set_config(body: bytes) -> dict[int, int]:
    """Parse a SET_CONFIG body; unknown keys, wrong lengths and repeats are malformed."""
    if not body:
        raise MalformedError("SET_CONFIG needs at least one entry")
    entries: dict[int, int] = {}
    offset = 0
    while offset < len(body):
        if offset + 2 > len(body):
            raise MalformedError(f"SET_CONFIG entry at offset {offset} lacks its len byte")
        key, size = body[offset], body[offset + 1]
        fmt = _CONFIG_FORMATS.get(key)
        if fmt is None:
            raise MalformedError(f"config key={key} unknown")
        if size != fmt.size:
            raise MalformedError(f"config key={key} len={size}, expected {fmt.size}")
        if offset + 2 + size > len(body):
            raise MalformedError(f"config key={key} value runs past the body")
        if key in entries:
            raise MalformedError(f"config key={key} repeated")
        entries[key] = fmt.unpack_from(body, offset + 2)[0]
        offset += 2 + size
    return entries


def _check_command_body(kind: int, body: bytes) -> None:
    if kind == CommandKind.SET_TIME:
        decode_set_time(body)
    elif kind == CommandKind.LOCATE:
        decode_locate(body)
    else:
        decode_set_config(body)


def encode_command(
    *,
    kind: int,
    key_id: int,
    device_id: int,
    cmd_seq: int,
    issued_s: int,
    valid_for_s: int,
    body: bytes,
    key: bytes,
) -> bytes:
    """Build and sign a command frame (the cloud's side); flags are always 0."""
    if kind not in _COMMAND_KINDS:
        raise UnknownKindError(f"kind=0x{kind:02x} is not a command kind")
    check_uint("key_id", key_id, 8)
    check_uint("device_id", device_id, 32)
    check_uint("cmd_seq", cmd_seq, 32, minimum=1)
    check_uint("issued_s", issued_s, 32)
    check_uint("valid_for_s", valid_for_s, 16)
    if not isinstance(body, bytes):
        raise MalformedError(f"body must be bytes, got {type(body).__name__}")
    if len(body) > MAX_BODY_BYTES:
        raise OversizedError(f"body is {len(body)} bytes, limit {MAX_BODY_BYTES}")
    _check_command_body(kind, body)
    check_bytes("key", key, DEVICE_KEY_BYTES)
    signed = (
        HEADER.pack(
            PROTOCOL_VERSION, kind, key_id, 0, device_id, cmd_seq, issued_s, valid_for_s, len(body)
        )
        + body
    )
    return signed + envelope_mac(key, signed)


def decode_command(raw: bytes) -> CommandFrame:
    """Parse a command frame's structure and its body (not its MAC)."""
    raw = bytes(raw)
    _, kind, key_id, flags, device_id, cmd_seq, issued_s, valid_for_s, body_len = read_header(
        raw, "command"
    )
    if kind not in _COMMAND_KINDS:
        raise UnknownKindError(f"kind=0x{kind:02x} is not a command kind")
    if flags != 0:
        raise MalformedError(f"flags=0x{flags:02x}, commands carry no flags")
    if cmd_seq == 0:
        raise MalformedError("cmd_seq=0, command sequences start at 1")
    body, mac = split_body(raw, body_len, "command")
    _check_command_body(kind, body)
    return CommandFrame(
        kind=kind,
        key_id=key_id,
        device_id=device_id,
        cmd_seq=cmd_seq,
        issued_s=issued_s,
        valid_for_s=valid_for_s,
        body=body,
        mac=mac,
        raw=raw,
    )


def verify_command(cmd: CommandFrame, key: bytes) -> None:
    """Raise SignatureError unless the command's MAC verifies under ``key``."""
    if not constant_time_equal(envelope_mac(key, cmd.signed_part), cmd.mac):
        raise SignatureError(
            f"command mac does not verify (device {device_id_text(cmd.device_id)}, "
            f"key_id {cmd.key_id}, cmd_seq {cmd.cmd_seq})"
        )


def _check_fixed_start(what: str, raw: bytes, size: int) -> None:
    """First checks of fixed-size frames: oversized, empty, version, short."""
    if len(raw) > MAX_FRAME_BYTES:
        raise OversizedError(f"{what} is {len(raw)} bytes, limit {MAX_FRAME_BYTES}")
    if not raw:
        raise TruncatedError(f"{what} is empty")
    if raw[0] != PROTOCOL_VERSION:
        raise VersionError(f"version={raw[0]}, expected {PROTOCOL_VERSION}")
    if len(raw) < size:
        raise TruncatedError(f"{what} needs {size} bytes, got {len(raw)}")


def _check_no_trailing(what: str, raw: bytes, size: int) -> None:
    """Last structural check of fixed-size frames, after the header fields."""
    if len(raw) > size:
        raise MalformedError(f"{what} has {len(raw) - size} trailing bytes")


@dataclass(frozen=True, slots=True)
class Ack:
    """Edge -> wearable: every seq <= acked_seq is committed (or evicted) at the edge."""

    device_id: int
    acked_seq: int

    def __post_init__(self) -> None:
        check_uint("device_id", self.device_id, 32)
        check_uint("acked_seq", self.acked_seq, 32)


def encode_ack(ack: Ack) -> bytes:
    """12 bytes: ``u8 version, u8 kind=0x81, u16 reserved=0, u32 device_id, u32 acked_seq``."""
    return _ACK.pack(PROTOCOL_VERSION, ACK_KIND, 0, ack.device_id, ack.acked_seq)


def decode_ack(raw: bytes) -> Ack:
    """Parse an ack frame (exactly 12 bytes, reserved field zero)."""
    raw = bytes(raw)
    _check_fixed_start("ack", raw, _ACK.size)
    _, kind, reserved, device_id, acked_seq = _ACK.unpack_from(raw)
    if kind != ACK_KIND:
        raise UnknownKindError(f"kind=0x{kind:02x} is not the ack kind 0x{ACK_KIND:02x}")
    if reserved != 0:
        raise MalformedError(f"reserved=0x{reserved:04x}, must be 0")
    ack = Ack(device_id, acked_seq)
    _check_no_trailing("ack", raw, _ACK.size)
    return ack


@dataclass(frozen=True, slots=True)
class Status:
    """Retained birth (online) / last-will (offline) message; unsigned, health only."""

    device_id: int
    state: int

    def __post_init__(self) -> None:
        check_uint("device_id", self.device_id, 32)
        check_choice("state", self.state, frozenset(int(s) for s in DeviceState))


def encode_status(s: Status) -> bytes:
    """6 bytes: ``u8 version, u8 state, u32 device_id``."""
    return _STATUS.pack(PROTOCOL_VERSION, s.state, s.device_id)


def decode_status(raw: bytes) -> Status:
    """Parse a status frame (exactly 6 bytes, state 0 or 1)."""
    raw = bytes(raw)
    _check_fixed_start("status", raw, _STATUS.size)
    _, state, device_id = _STATUS.unpack_from(raw)
    status = Status(device_id=device_id, state=state)
    _check_no_trailing("status", raw, _STATUS.size)
    return status
