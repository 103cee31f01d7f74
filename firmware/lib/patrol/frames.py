"""Event frames (encode + sign), command frames and acks (decode + verify).

Event frame, big-endian (docs/protocol.md "Event frame")::

    0 u8 version=1 | 1 u8 kind | 2 u8 key_id | 3 u8 flags | 4 u32 device_id
    8 u32 seq | 12 u32 time_s | 16 u16 time_ms | 18 u16 body_len | 20 body | mac16
    mac = HMAC-SHA256(device_key, bytes[0:20+n])[0:16]

Commands use the same layout with kinds 0x90..0x9f and ``cmd_seq, issued_s,
valid_for_s`` in place of ``seq, time_s, time_ms``. The wearable stores signed
frames in flash and resends those exact bytes; nothing is ever re-encoded.
"""

import struct

from patrol.compat import const
from patrol.errors import (
    MalformedError,
    OversizedError,
    SignatureError,
    TruncatedError,
    UnknownKindError,
    VersionError,
)
from patrol.hmac256 import constant_time_equal, hmac_sha256
from patrol.limits import (
    ACK_FRAME_BYTES,
    FRAME_HEADER_BYTES,
    FRAME_MAC_BYTES,
    MAX_ADV_PAYLOAD_BYTES,
    MAX_BODY_BYTES,
    MAX_EQUIPMENT_ITEMS,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
)

# Event kinds (0x01..0x7f)
NFC_SCAN = const(0x01)
BLE_VISIT = const(0x02)
HEARTBEAT = const(0x03)
SOS = const(0x04)
EVICTION = const(0x05)
BOOT = const(0x06)
CMD_RESULT = const(0x07)
CLOCK_JUMP = const(0x08)
_LAST_EVENT_KIND = const(0x08)

# Command kinds (0x90..0x9f) and the ack
SET_TIME = const(0x90)
SET_CONFIG = const(0x91)
LOCATE = const(0x92)
LOCATE_MAX_S = const(300)  # five minutes of noise finds a dropped wearable; longer drains it
ACK_KIND = const(0x81)

FLAG_CLOCK_UNSYNCED = const(0x01)

TAG_NTAG424_SUN = const(1)
TAG_NTAG21X = const(2)

SOS_BUTTON = const(1)
SOS_MAN_DOWN = const(2)
SOS_TEST = const(3)

EVICTION_FLASH_FULL = const(1)

# CMD_RESULT codes
RESULT_APPLIED = const(0)
RESULT_BAD_MAC = const(1)
RESULT_STALE = const(2)
RESULT_EXPIRED = const(3)
RESULT_UNSUPPORTED = const(4)

# SET_CONFIG keys
CONFIG_HEARTBEAT_INTERVAL_S = const(1)
CONFIG_VISIT_RSSI_DBM = const(2)
CONFIG_VISIT_DWELL_S = const(3)
CONFIG_MAN_DOWN_S = const(4)

_HEADER_FMT = ">BBBBIIIHH"
_SET_TIME_BODY_BYTES = const(6)
_LOCATE_BODY_BYTES = const(2)


def _mac(key, signed_part):
    return hmac_sha256(key, signed_part)[:FRAME_MAC_BYTES]


def encode_frame(kind, key_id, flags, device_id, seq, time_s, time_ms, body, key):
    """Build and sign one event frame; returns the exact bytes to store and send."""
    if not 1 <= kind <= _LAST_EVENT_KIND:
        raise UnknownKindError("not an event kind")
    if len(body) > MAX_BODY_BYTES:
        raise OversizedError("body too long")
    if not 1 <= seq <= 0xFFFFFFFF:
        raise MalformedError("seq out of range")
    if not 0 <= time_ms <= 999:
        raise MalformedError("time_ms out of range")
    signed = struct.pack(
        _HEADER_FMT, PROTOCOL_VERSION, kind, key_id, flags, device_id, seq, time_s, time_ms, len(body)
    ) + bytes(body)
    return signed + _mac(key, signed)


def frame_kind(frame):
    """Kind byte of a stored frame (no checks: the queue only holds frames we built)."""
    return frame[1]


def frame_seq(frame):
    """Sequence number of a stored frame."""
    return struct.unpack_from(">I", frame, 8)[0]


# --- bodies -------------------------------------------------------------------------


def nfc_scan_body(tag_type, uid, picc_enc=None, sdmmac=None):
    """0x01: u8 tag_type, u8 uid_len, uid, [16 picc_enc, 8 sdmmac for tag_type 1]."""
    if len(uid) not in (4, 7, 10):
        raise MalformedError("uid must be 4, 7 or 10 bytes")
    out = bytes((tag_type, len(uid))) + bytes(uid)
    if tag_type == TAG_NTAG424_SUN:
        if picc_enc is None or len(picc_enc) != 16 or sdmmac is None or len(sdmmac) != 8:
            raise MalformedError("SUN scan needs 16-byte picc_enc and 8-byte sdmmac")
        out += bytes(picc_enc) + bytes(sdmmac)
    elif tag_type != TAG_NTAG21X or picc_enc is not None or sdmmac is not None:
        raise MalformedError("bad tag_type")
    return out


def ble_visit_body(rssi_dbm, dwell_s, company_id, adv):
    """0x02: i8 rssi_dbm, u16 dwell_s, u16 company_id, u8 adv_len, adv."""
    if len(adv) > MAX_ADV_PAYLOAD_BYTES:
        raise MalformedError("adv too long")
    return struct.pack(">bHHB", rssi_dbm, dwell_s, company_id, len(adv)) + bytes(adv)


def heartbeat_body(battery_pct, battery_mv, status, queue_depth, items):
    """0x03: u8 pct, u16 mv, u8 status, u16 queue_depth, u8 n, n x (u32 tag_id, i8 rssi, u8 pct)."""
    if len(items) > MAX_EQUIPMENT_ITEMS:
        raise MalformedError("too many equipment items")
    out = bytearray(struct.pack(">BHBHB", battery_pct, battery_mv, status, queue_depth, len(items)))
    for tag_id, rssi_dbm, item_battery_pct in items:
        out += struct.pack(">IbB", tag_id, rssi_dbm, item_battery_pct)
    return bytes(out)


def sos_body(trigger):
    """0x04: u8 trigger (1 button, 2 man-down, 3 test)."""
    return bytes((trigger,))


def eviction_body(first_seq, last_seq, reason=EVICTION_FLASH_FULL):
    """0x05: u32 first_seq, u32 last_seq (inclusive), u8 reason."""
    if last_seq < first_seq:
        raise MalformedError("last_seq < first_seq")
    return struct.pack(">IIB", first_seq, last_seq, reason)


def boot_body(fw_major, fw_minor, fw_patch, reset_cause):
    """0x06: u8 fw_major, u8 fw_minor, u8 fw_patch, u8 reset_cause."""
    return bytes((fw_major, fw_minor, fw_patch, reset_cause))


def cmd_result_body(cmd_seq, result):
    """0x07: u32 cmd_seq, u8 result."""
    return struct.pack(">IB", cmd_seq, result)


def clock_jump_body(cmd_seq, before_s, before_ms, after_s, after_ms):
    """0x08: u32 cmd_seq, u32 before_s, u16 before_ms, u32 after_s, u16 after_ms."""
    return struct.pack(">IIHIH", cmd_seq, before_s, before_ms, after_s, after_ms)


# --- commands (cloud -> edge -> wearable) --------------------------------------------


class Command:
    """A structurally valid command frame; ``raw`` is exactly what arrived."""

    __slots__ = ("kind", "key_id", "device_id", "cmd_seq", "issued_s", "valid_for_s", "body", "mac", "raw")

    def __init__(self, kind, key_id, device_id, cmd_seq, issued_s, valid_for_s, body, mac, raw):
        self.kind = kind
        self.key_id = key_id
        self.device_id = device_id
        self.cmd_seq = cmd_seq
        self.issued_s = issued_s
        self.valid_for_s = valid_for_s
        self.body = body
        self.mac = mac
        self.raw = raw


def decode_command(raw):
    """Parse a command frame's structure and body (not its MAC).

    Same check order as patrol_protocol.commands.decode_command, so both sides
    reject the same bytes with the same reason string.
    """
    raw = bytes(raw)
    size = len(raw)
    if size > MAX_FRAME_BYTES:
        raise OversizedError("frame too long")
    if size == 0:
        raise TruncatedError("empty")
    if raw[0] != PROTOCOL_VERSION:
        raise VersionError("bad version")
    if size < FRAME_HEADER_BYTES:
        raise TruncatedError("short header")
    _, kind, key_id, flags, device_id, cmd_seq, issued_s, valid_for_s, body_len = struct.unpack_from(
        _HEADER_FMT, raw
    )
    if kind != SET_TIME and kind != SET_CONFIG and kind != LOCATE:
        raise UnknownKindError("not a command kind")
    if flags != 0:
        raise MalformedError("command flags must be zero")
    if cmd_seq == 0:
        raise MalformedError("cmd_seq starts at 1")
    if body_len > MAX_BODY_BYTES:
        raise OversizedError("body_len too large")
    expected = FRAME_HEADER_BYTES + body_len + FRAME_MAC_BYTES
    if size < expected:
        raise TruncatedError("short frame")
    if size > expected:
        raise MalformedError("trailing bytes")
    body = raw[FRAME_HEADER_BYTES : FRAME_HEADER_BYTES + body_len]
    if kind == SET_TIME:
        decode_set_time(body)
    elif kind == LOCATE:
        decode_locate(body)
    else:
        decode_set_config(body)
    return Command(kind, key_id, device_id, cmd_seq, issued_s, valid_for_s, body, raw[-FRAME_MAC_BYTES:], raw)


def verify_command(command, key):
    """Raise SignatureError unless the command's MAC verifies under ``key``."""
    if not constant_time_equal(_mac(key, command.raw[:-FRAME_MAC_BYTES]), command.mac):
        raise SignatureError("command mac does not verify")


def decode_set_time(body):
    """SET_TIME body: u32 time_s, u16 time_ms -> (time_s, time_ms)."""
    if len(body) != _SET_TIME_BODY_BYTES:
        raise MalformedError("SET_TIME body must be 6 bytes")
    time_s, time_ms = struct.unpack(">IH", body)
    if time_ms > 999:
        raise MalformedError("time_ms out of range")
    return time_s, time_ms


def decode_locate(body):
    """LOCATE body: u16 duration_s (1..300) -> duration_s."""
    if len(body) != _LOCATE_BODY_BYTES:
        raise MalformedError("LOCATE body must be 2 bytes")
    duration_s = (body[0] << 8) | body[1]
    if not 1 <= duration_s <= LOCATE_MAX_S:
        raise MalformedError("duration_s out of range")
    return duration_s


# SET_CONFIG value sizes and signedness by key: (length, struct format)
_CONFIG_FORMATS = {
    CONFIG_HEARTBEAT_INTERVAL_S: ">H",
    CONFIG_VISIT_RSSI_DBM: ">b",
    CONFIG_VISIT_DWELL_S: ">H",
    CONFIG_MAN_DOWN_S: ">H",
}


def decode_set_config(body):
    """SET_CONFIG body: entries ``u8 key, u8 len, value`` -> list of (key, int value).

    Empty bodies, unknown keys, wrong lengths, values running past the body and
    repeated keys are all MalformedError (as in patrol_protocol).
    """
    if not body:
        raise MalformedError("SET_CONFIG needs an entry")
    entries = []
    seen = []
    offset = 0
    size = len(body)
    while offset < size:
        if offset + 2 > size:
            raise MalformedError("config entry lacks its len byte")
        key = body[offset]
        length = body[offset + 1]
        fmt = _CONFIG_FORMATS.get(key)
        if fmt is None:
            raise MalformedError("unknown config key")
        if struct.calcsize(fmt) != length:
            raise MalformedError("bad config value length")
        if offset + 2 + length > size:
            raise MalformedError("config value runs past the body")
        if key in seen:
            raise MalformedError("config key repeated")
        seen.append(key)
        entries.append((key, struct.unpack_from(fmt, body, offset + 2)[0]))
        offset += 2 + length
    return entries


def encode_command(kind, key_id, device_id, cmd_seq, issued_s, valid_for_s, body, key):
    """Build and sign a command (the cloud's job; here for tests and the demo)."""
    signed = struct.pack(
        _HEADER_FMT, PROTOCOL_VERSION, kind, key_id, 0, device_id, cmd_seq, issued_s, valid_for_s, len(body)
    ) + bytes(body)
    return signed + _mac(key, signed)


# --- ack and status ------------------------------------------------------------------


def decode_ack(raw):
    """Ack (edge -> wearable): u8 version, u8 0x81, u16 reserved 0, u32 device_id,
    u32 acked_seq -> (device_id, acked_seq)."""
    raw = bytes(raw)
    if len(raw) > MAX_FRAME_BYTES:
        raise OversizedError("ack too long")
    if len(raw) == 0:
        raise TruncatedError("empty")
    if raw[0] != PROTOCOL_VERSION:
        raise VersionError("bad version")
    if len(raw) < ACK_FRAME_BYTES:
        raise TruncatedError("short ack")
    if len(raw) > ACK_FRAME_BYTES:
        raise MalformedError("trailing bytes")
    if raw[1] != ACK_KIND:
        raise UnknownKindError("not an ack")
    _, _, reserved, device_id, acked_seq = struct.unpack(">BBHII", raw)
    if reserved != 0:
        raise MalformedError("reserved must be zero")
    return device_id, acked_seq


def encode_ack(device_id, acked_seq):
    """Ack frame bytes (the edge's job; here for tests)."""
    return struct.pack(">BBHII", PROTOCOL_VERSION, ACK_KIND, 0, device_id, acked_seq)


def encode_status(device_id, online):
    """Status frame (retained birth / last will): u8 version, u8 state, u32 device_id."""
    return struct.pack(">BBI", PROTOCOL_VERSION, 1 if online else 0, device_id)
