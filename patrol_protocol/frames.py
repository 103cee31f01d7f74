"""Event frames (wearable -> edge -> cloud): header, kind-specific bodies, HMAC.

Layout (big-endian, docs/protocol.md "Event frame")::

    0 u8 version=1 | 1 u8 kind | 2 u8 key_id | 3 u8 flags | 4 u32 device_id
    8 u32 seq | 12 u32 time_s | 16 u16 time_ms | 18 u16 body_len | 20 body | mac16

``decode_frame`` checks structure in a fixed order: size limit (oversized), empty
(truncated), version (bad_version), header length (truncated), header fields in
offset order (unknown_kind / malformed), body_len limit (oversized), total length
(truncated when short, malformed when bytes trail). ``decode_body`` then checks the
body against its kind; ``verify_frame`` checks the MAC. The signed bytes are never
re-serialised: ``EventFrame.raw`` is exactly what arrived.
"""

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from patrol_protocol._checks import (
    check_bytes,
    check_choice,
    check_int8,
    check_range,
    check_reserved_bits,
    check_uint,
)
from patrol_protocol._envelope import HEADER, check_envelope, envelope_mac, read_header, split_body
from patrol_protocol.crypto import constant_time_equal
from patrol_protocol.errors import (
    MalformedError,
    OversizedError,
    SignatureError,
    UnknownKindError,
    VersionError,
)
from patrol_protocol.ids import device_id_text
from patrol_protocol.limits import (
    DEVICE_KEY_BYTES,
    FRAME_MAC_BYTES,
    MAX_ADV_PAYLOAD_BYTES,
    MAX_BODY_BYTES,
    MAX_EQUIPMENT_ITEMS,
    PROTOCOL_VERSION,
)


class Kind(IntEnum):
    """Event kinds (0x01..0x7f are events; commands live in 0x90..0x9f)."""

    NFC_SCAN = 0x01
    BLE_VISIT = 0x02
    HEARTBEAT = 0x03
    SOS = 0x04
    EVICTION = 0x05
    BOOT = 0x06
    CMD_RESULT = 0x07
    CLOCK_JUMP = 0x08


FLAG_CLOCK_UNSYNCED: Final = 0x01
"""Header flag bit 0: device time not yet set by a signed SET_TIME."""
_FLAGS_MASK: Final = FLAG_CLOCK_UNSYNCED

TAG_NTAG424_SUN: Final = 1
"""NFC_SCAN tag_type: NTAG 424 DNA with a SUN message (picc_enc + sdmmac)."""
TAG_NTAG21X: Final = 2
"""NFC_SCAN tag_type: NTAG21x, UID only (low assurance)."""
UID_LENGTHS: Final = frozenset({4, 7, 10})
"""ISO 14443-3 single, double and triple size UIDs."""
PICC_ENC_BYTES: Final = 16
SDMMAC_BYTES: Final = 8

HEARTBEAT_CHARGING: Final = 0x01
HEARTBEAT_IN_ZONE: Final = 0x02
HEARTBEAT_LOW_BATTERY: Final = 0x04
_HEARTBEAT_STATUS_MASK: Final = 0x07


class SosTrigger(IntEnum):
    """What raised an SOS."""

    BUTTON = 1
    MAN_DOWN = 2
    TEST = 3


class EvictionReason(IntEnum):
    """Why the wearable dropped part of its own queue."""

    FLASH_FULL = 1


class ResetCause(IntEnum):
    """Why the wearable (re)booted."""

    POWER_ON = 0
    WATCHDOG = 1
    BROWN_OUT = 2
    SOFT = 3


class CmdResultCode(IntEnum):
    """The wearable's verdict on a command."""

    APPLIED = 0
    BAD_MAC = 1
    STALE_SEQUENCE = 2
    EXPIRED = 3
    UNSUPPORTED = 4


_U32: Final = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The 20-byte event header minus body_len (which is ``len(body)``)."""

    version: int
    kind: int
    key_id: int
    flags: int
    device_id: int
    seq: int
    time_s: int
    time_ms: int

    def __post_init__(self) -> None:
        if self.version != PROTOCOL_VERSION:
            raise VersionError(f"version={self.version}, expected {PROTOCOL_VERSION}")
        check_uint("kind", self.kind, 8)
        if self.kind not in _KINDS:
            raise UnknownKindError(f"kind=0x{self.kind:02x} is not an event kind")
        check_uint("key_id", self.key_id, 8)
        check_uint("flags", self.flags, 8)
        check_reserved_bits("flags", self.flags, _FLAGS_MASK)
        check_uint("device_id", self.device_id, 32)
        check_uint("seq", self.seq, 32, minimum=1)
        check_uint("time_s", self.time_s, 32)
        check_range("time_ms", self.time_ms, 0, 999)

    @property
    def clock_unsynced(self) -> bool:
        """True when the device had no signed time yet when it stamped the event."""
        return bool(self.flags & FLAG_CLOCK_UNSYNCED)


_KINDS: Final = frozenset(int(k) for k in Kind)


@dataclass(frozen=True, slots=True)
class EventFrame:
    """A structurally valid event frame; ``raw`` is the exact bytes received."""

    header: FrameHeader
    body: bytes
    mac: bytes
    raw: bytes

    def __post_init__(self) -> None:
        check_envelope(self.raw, self.body, self.mac)

    @property
    def signed_part(self) -> bytes:
        """The bytes the MAC covers: everything before it."""
        return self.raw[:-FRAME_MAC_BYTES]

    @property
    def idempotency_key(self) -> str:
        """``"<device id text>:<seq>"``, unique from the wearable to the database."""
        return f"{device_id_text(self.header.device_id)}:{self.header.seq}"


def decode_frame(raw: bytes) -> EventFrame:
    """Parse an event frame's structure (not its body, not its MAC)."""
    raw = bytes(raw)
    version, kind, key_id, flags, device_id, seq, time_s, time_ms, body_len = read_header(
        raw, "frame"
    )
    header = FrameHeader(version, kind, key_id, flags, device_id, seq, time_s, time_ms)
    body, mac = split_body(raw, body_len, "frame")
    return EventFrame(header=header, body=body, mac=mac, raw=raw)


def verify_frame(frame: EventFrame, key: bytes) -> None:
    """Raise SignatureError unless the frame's MAC verifies under ``key``."""
    if not constant_time_equal(envelope_mac(key, frame.signed_part), frame.mac):
        raise SignatureError(
            f"mac does not verify (device {device_id_text(frame.header.device_id)}, "
            f"key_id {frame.header.key_id}, seq {frame.header.seq})"
        )


def encode_frame(
    *,
    kind: int,
    key_id: int,
    flags: int,
    device_id: int,
    seq: int,
    time_s: int,
    time_ms: int,
    body: bytes,
    key: bytes,
) -> bytes:
    """Build and sign an event frame; refuses anything ``decode_frame``/``decode_body`` would."""
    header = FrameHeader(PROTOCOL_VERSION, kind, key_id, flags, device_id, seq, time_s, time_ms)
    if not isinstance(body, bytes):
        raise MalformedError(f"body must be bytes, got {type(body).__name__}")
    if len(body) > MAX_BODY_BYTES:
        raise OversizedError(f"body is {len(body)} bytes, limit {MAX_BODY_BYTES}")
    decode_body(kind, body)
    check_bytes("key", key, DEVICE_KEY_BYTES)
    signed = (
        HEADER.pack(
            header.version,
            header.kind,
            header.key_id,
            header.flags,
            header.device_id,
            header.seq,
            header.time_s,
            header.time_ms,
            len(body),
        )
        + body
    )
    return signed + envelope_mac(key, signed)


# --- bodies -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NfcScan:
    """0x01: a tap on an NFC checkpoint tag (SUN fields only for NTAG 424 DNA)."""

    tag_type: int
    uid: bytes
    picc_enc: bytes | None = None
    sdmmac: bytes | None = None

    def __post_init__(self) -> None:
        check_choice("tag_type", self.tag_type, frozenset({TAG_NTAG424_SUN, TAG_NTAG21X}))
        if not isinstance(self.uid, bytes) or len(self.uid) not in UID_LENGTHS:
            raise MalformedError(f"uid must be 4, 7 or 10 bytes, got {self.uid!r}")
        if self.tag_type == TAG_NTAG424_SUN:
            check_bytes("picc_enc", self.picc_enc, PICC_ENC_BYTES)
            check_bytes("sdmmac", self.sdmmac, SDMMAC_BYTES)
        elif self.picc_enc is not None or self.sdmmac is not None:
            raise MalformedError("picc_enc/sdmmac only exist for tag_type 1 (NTAG 424 DNA SUN)")


@dataclass(frozen=True, slots=True)
class BleVisit:
    """0x02: the wearable stayed near a checkpoint beacon; ``adv`` is the beacon's payload."""

    rssi_dbm: int
    dwell_s: int
    company_id: int
    adv: bytes

    def __post_init__(self) -> None:
        check_int8("rssi_dbm", self.rssi_dbm)
        check_uint("dwell_s", self.dwell_s, 16)
        check_uint("company_id", self.company_id, 16)
        if not isinstance(self.adv, bytes):
            raise MalformedError(f"adv must be bytes, got {type(self.adv).__name__}")
        if len(self.adv) > MAX_ADV_PAYLOAD_BYTES:
            raise MalformedError(f"adv_len={len(self.adv)} exceeds {MAX_ADV_PAYLOAD_BYTES}")


@dataclass(frozen=True, slots=True)
class EquipmentNear:
    """One heartbeat item: an equipment tag the wearable hears."""

    tag_id: int
    rssi_dbm: int
    battery_pct: int

    def __post_init__(self) -> None:
        check_uint("tag_id", self.tag_id, 32)
        check_int8("rssi_dbm", self.rssi_dbm)
        check_range("battery_pct", self.battery_pct, 0, 100)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """0x03: battery, status bits, queue depth and the equipment near the guard."""

    battery_pct: int
    battery_mv: int
    status: int
    queue_depth: int
    items: tuple[EquipmentNear, ...] = ()

    def __post_init__(self) -> None:
        check_range("battery_pct", self.battery_pct, 0, 100)
        check_uint("battery_mv", self.battery_mv, 16)
        check_uint("status", self.status, 8)
        check_reserved_bits("status", self.status, _HEARTBEAT_STATUS_MASK)
        check_uint("queue_depth", self.queue_depth, 16)
        object.__setattr__(self, "items", tuple(self.items))
        if len(self.items) > MAX_EQUIPMENT_ITEMS:
            raise MalformedError(f"n_items={len(self.items)} exceeds {MAX_EQUIPMENT_ITEMS}")
        for item in self.items:
            if not isinstance(item, EquipmentNear):
                raise MalformedError(f"items must be EquipmentNear, got {type(item).__name__}")


@dataclass(frozen=True, slots=True)
class Sos:
    """0x04: emergency (button long press, man-down, or a test)."""

    trigger: int

    def __post_init__(self) -> None:
        check_choice("trigger", self.trigger, frozenset(int(t) for t in SosTrigger))


@dataclass(frozen=True, slots=True)
class Eviction:
    """0x05: the wearable deliberately dropped seqs first_seq..last_seq (inclusive)."""

    first_seq: int
    last_seq: int
    reason: int

    def __post_init__(self) -> None:
        check_uint("first_seq", self.first_seq, 32, minimum=1)
        check_uint("last_seq", self.last_seq, 32, minimum=1)
        if self.last_seq < self.first_seq:
            raise MalformedError(f"last_seq={self.last_seq} < first_seq={self.first_seq}")
        check_choice("reason", self.reason, frozenset(int(r) for r in EvictionReason))


@dataclass(frozen=True, slots=True)
class Boot:
    """0x06: firmware version and reset cause after a (re)boot."""

    fw_major: int
    fw_minor: int
    fw_patch: int
    reset_cause: int

    def __post_init__(self) -> None:
        check_uint("fw_major", self.fw_major, 8)
        check_uint("fw_minor", self.fw_minor, 8)
        check_uint("fw_patch", self.fw_patch, 8)
        check_choice("reset_cause", self.reset_cause, frozenset(int(r) for r in ResetCause))


@dataclass(frozen=True, slots=True)
class CmdResult:
    """0x07: the wearable's answer to command ``cmd_seq``."""

    cmd_seq: int
    result: int

    def __post_init__(self) -> None:
        check_uint("cmd_seq", self.cmd_seq, 32)
        check_choice("result", self.result, frozenset(int(r) for r in CmdResultCode))


@dataclass(frozen=True, slots=True)
class ClockJump:
    """0x08: a signed SET_TIME (``cmd_seq``) moved the device clock from ``before`` to ``after``.

    The wearable reports every move larger than its threshold (2 s), including the
    first sync, so the cloud can re-place events stamped on the old clock.
    """

    cmd_seq: int
    before_s: int
    before_ms: int
    after_s: int
    after_ms: int

    def __post_init__(self) -> None:
        check_uint("cmd_seq", self.cmd_seq, 32, minimum=1)
        check_uint("before_s", self.before_s, 32)
        check_range("before_ms", self.before_ms, 0, 999)
        check_uint("after_s", self.after_s, 32)
        check_range("after_ms", self.after_ms, 0, 999)

    @property
    def delta_ms(self) -> int:
        """How far the clock moved (positive: forward)."""
        return (self.after_s - self.before_s) * 1000 + self.after_ms - self.before_ms


Body = NfcScan | BleVisit | Heartbeat | Sos | Eviction | Boot | CmdResult | ClockJump

_EQUIPMENT_ITEM: Final = struct.Struct(">IbB")
_HEARTBEAT_FIXED: Final = struct.Struct(">BHBHB")
_BLE_FIXED: Final = struct.Struct(">bHHB")
_EVICTION: Final = struct.Struct(">IIB")
_BOOT: Final = struct.Struct(">BBBB")
_CMD_RESULT: Final = struct.Struct(">IB")
_CLOCK_JUMP: Final = struct.Struct(">IIHIH")


def _expect_len(kind: str, body: bytes, expected: int) -> None:
    if len(body) != expected:
        raise MalformedError(f"{kind} body must be {expected} bytes, got {len(body)}")


def _decode_nfc_scan(body: bytes) -> NfcScan:
    if len(body) < 2:
        raise MalformedError(f"NFC_SCAN body needs at least 2 bytes, got {len(body)}")
    tag_type, uid_len = body[0], body[1]
    check_choice("tag_type", tag_type, frozenset({TAG_NTAG424_SUN, TAG_NTAG21X}))
    if uid_len not in UID_LENGTHS:
        raise MalformedError(f"uid_len={uid_len} not one of 4, 7, 10")
    sun_len = PICC_ENC_BYTES + SDMMAC_BYTES if tag_type == TAG_NTAG424_SUN else 0
    _expect_len(f"NFC_SCAN (tag_type {tag_type}, uid_len {uid_len})", body, 2 + uid_len + sun_len)
    uid = body[2 : 2 + uid_len]
    if tag_type != TAG_NTAG424_SUN:
        return NfcScan(tag_type, uid)
    picc = body[2 + uid_len : 2 + uid_len + PICC_ENC_BYTES]
    return NfcScan(tag_type, uid, picc, body[2 + uid_len + PICC_ENC_BYTES :])


def _decode_ble_visit(body: bytes) -> BleVisit:
    if len(body) < _BLE_FIXED.size:
        raise MalformedError(f"BLE_VISIT body needs at least {_BLE_FIXED.size} bytes")
    rssi, dwell, company, adv_len = _BLE_FIXED.unpack_from(body)
    if adv_len > MAX_ADV_PAYLOAD_BYTES:
        raise MalformedError(f"adv_len={adv_len} exceeds {MAX_ADV_PAYLOAD_BYTES}")
    _expect_len(f"BLE_VISIT (adv_len {adv_len})", body, _BLE_FIXED.size + adv_len)
    return BleVisit(rssi, dwell, company, body[_BLE_FIXED.size :])


def _decode_heartbeat(body: bytes) -> Heartbeat:
    if len(body) < _HEARTBEAT_FIXED.size:
        raise MalformedError(f"HEARTBEAT body needs at least {_HEARTBEAT_FIXED.size} bytes")
    battery_pct, battery_mv, status, queue_depth, n_items = _HEARTBEAT_FIXED.unpack_from(body)
    if n_items > MAX_EQUIPMENT_ITEMS:
        raise MalformedError(f"n_items={n_items} exceeds {MAX_EQUIPMENT_ITEMS}")
    expected = _HEARTBEAT_FIXED.size + n_items * _EQUIPMENT_ITEM.size
    _expect_len(f"HEARTBEAT (n_items {n_items})", body, expected)
    items = tuple(
        EquipmentNear(*_EQUIPMENT_ITEM.unpack_from(body, _HEARTBEAT_FIXED.size + i * 6))
        for i in range(n_items)
    )
    return Heartbeat(battery_pct, battery_mv, status, queue_depth, items)


def decode_body(kind: int, body: bytes) -> Body:
    """Decode a body for its kind; its length must match the kind exactly."""
    body = bytes(body)
    if kind not in _KINDS:
        raise UnknownKindError(f"kind=0x{kind:02x} is not an event kind")
    if len(body) > MAX_BODY_BYTES:
        raise OversizedError(f"body is {len(body)} bytes, limit {MAX_BODY_BYTES}")
    if kind == Kind.NFC_SCAN:
        return _decode_nfc_scan(body)
    if kind == Kind.BLE_VISIT:
        return _decode_ble_visit(body)
    if kind == Kind.HEARTBEAT:
        return _decode_heartbeat(body)
    if kind == Kind.SOS:
        _expect_len("SOS", body, 1)
        return Sos(body[0])
    if kind == Kind.EVICTION:
        _expect_len("EVICTION", body, _EVICTION.size)
        return Eviction(*_EVICTION.unpack(body))
    if kind == Kind.BOOT:
        _expect_len("BOOT", body, _BOOT.size)
        return Boot(*_BOOT.unpack(body))
    if kind == Kind.CMD_RESULT:
        _expect_len("CMD_RESULT", body, _CMD_RESULT.size)
        return CmdResult(*_CMD_RESULT.unpack(body))
    _expect_len("CLOCK_JUMP", body, _CLOCK_JUMP.size)
    return ClockJump(*_CLOCK_JUMP.unpack(body))


def encode_body(body: Body) -> bytes:
    """Serialise a body (already validated at construction)."""
    if isinstance(body, NfcScan):
        out = bytes((body.tag_type, len(body.uid))) + body.uid
        if body.picc_enc is not None and body.sdmmac is not None:
            out += body.picc_enc + body.sdmmac
        return out
    if isinstance(body, BleVisit):
        fixed = _BLE_FIXED.pack(body.rssi_dbm, body.dwell_s, body.company_id, len(body.adv))
        return fixed + body.adv
    if isinstance(body, Heartbeat):
        fixed = _HEARTBEAT_FIXED.pack(
            body.battery_pct, body.battery_mv, body.status, body.queue_depth, len(body.items)
        )
        return fixed + b"".join(
            _EQUIPMENT_ITEM.pack(i.tag_id, i.rssi_dbm, i.battery_pct) for i in body.items
        )
    if isinstance(body, Sos):
        return bytes((body.trigger,))
    if isinstance(body, Eviction):
        return _EVICTION.pack(body.first_seq, body.last_seq, body.reason)
    if isinstance(body, Boot):
        return _BOOT.pack(body.fw_major, body.fw_minor, body.fw_patch, body.reset_cause)
    if isinstance(body, CmdResult):
        return _CMD_RESULT.pack(body.cmd_seq, body.result)
    if isinstance(body, ClockJump):
        return _CLOCK_JUMP.pack(
            body.cmd_seq, body.before_s, body.before_ms, body.after_s, body.after_ms
        )
    raise MalformedError(f"not a body: {type(body).__name__}")


_KIND_OF: Final[dict[type, Kind]] = {
    NfcScan: Kind.NFC_SCAN,
    BleVisit: Kind.BLE_VISIT,
    Heartbeat: Kind.HEARTBEAT,
    Sos: Kind.SOS,
    Eviction: Kind.EVICTION,
    Boot: Kind.BOOT,
    CmdResult: Kind.CMD_RESULT,
    ClockJump: Kind.CLOCK_JUMP,
}


def kind_of(body: Body) -> Kind:
    """The event kind a body is sent as."""
    try:
        return _KIND_OF[type(body)]
    except KeyError:
        raise MalformedError(f"not a body: {type(body).__name__}") from None
