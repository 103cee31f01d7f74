"""BLE advertisement payloads (beacon, equipment tag, wearable presence).

A legacy advert here is two AD structures (docs/protocol.md "BLE advertisements")::

    02 01 06                 flags: LE General Discoverable, BR/EDR not supported
    LL FF CC CC payload...   manufacturer data: LL = 3 + len(payload), company id LE

Payloads (big-endian, MAC last)::

    beacon    (21): u8 ver, u8 type=1, u8 key_id, u32 beacon_id, u32 step, i8 tx_power_dbm,
                    u8 battery_pct, mac8
    equipment (23): u8 ver, u8 type=2, u8 key_id, u32 tag_id, u8 battery_pct, u16 battery_mv,
                    u8 flags, u32 counter, mac8
    presence  (20): u8 ver, u8 type=3, u8 key_id, u32 device_id, u32 step, u8 battery_pct, mac8

    mac8 = HMAC-SHA256(key, company_id as u16 LE || payload[0:-8])[0:8]
"""

import struct

from patrol.compat import const
from patrol.errors import MalformedError, OversizedError, SignatureError, TruncatedError, UnknownKindError, VersionError
from patrol.hmac256 import constant_time_equal, hmac_sha256
from patrol.limits import ADV_MAC_BYTES, MAX_ADV_BYTES, MAX_ADV_PAYLOAD_BYTES, PROTOCOL_VERSION

TYPE_BEACON = const(1)
TYPE_EQUIPMENT = const(2)
TYPE_PRESENCE = const(3)

_AD_FLAGS = const(0x01)
_AD_MANUFACTURER = const(0xFF)
_FLAGS_LE_GENERAL_NO_BREDR = const(0x06)

_BEACON_FMT = ">BBBIIbB"  # 13 bytes before the MAC
_EQUIPMENT_FMT = ">BBBIBHBI"  # 15 bytes before the MAC
_PRESENCE_FMT = ">BBBIIB"  # 12 bytes before the MAC
# bit0 on charger, bit1 moving, bit2 low battery, bit3 button, bit4 tamper
EQUIPMENT_ON_CHARGER = const(0x01)
EQUIPMENT_MOVING = const(0x02)
EQUIPMENT_LOW_BATTERY = const(0x04)
EQUIPMENT_BUTTON = const(0x08)
EQUIPMENT_TAMPER = const(0x10)
_EQUIPMENT_FLAGS_MASK = const(0x1F)
_BEACON_BYTES = const(21)
_EQUIPMENT_BYTES = const(23)
_PRESENCE_BYTES = const(20)


def _adv_mac(key, company_id, unsigned):
    return hmac_sha256(key, struct.pack("<H", company_id) + unsigned)[:ADV_MAC_BYTES]


def _signed(key, company_id, unsigned):
    return unsigned + _adv_mac(key, company_id, unsigned)


def encode_beacon_payload(key_id, beacon_id, step, tx_power_dbm, battery_pct, company_id, key):
    """Checkpoint beacon payload (21 bytes)."""
    return _signed(
        key,
        company_id,
        struct.pack(_BEACON_FMT, PROTOCOL_VERSION, TYPE_BEACON, key_id, beacon_id, step, tx_power_dbm, battery_pct),
    )


def encode_equipment_payload(key_id, tag_id, battery_pct, battery_mv, flags, counter, company_id, key):
    """Equipment tag payload (23 bytes)."""
    return _signed(
        key,
        company_id,
        struct.pack(
            _EQUIPMENT_FMT, PROTOCOL_VERSION, TYPE_EQUIPMENT, key_id, tag_id, battery_pct, battery_mv, flags, counter
        ),
    )


def encode_presence_payload(key_id, device_id, step, battery_pct, company_id, key):
    """Wearable presence payload (20 bytes)."""
    return _signed(
        key,
        company_id,
        struct.pack(_PRESENCE_FMT, PROTOCOL_VERSION, TYPE_PRESENCE, key_id, device_id, step, battery_pct),
    )


def build_advertisement(company_id, payload):
    """Full legacy advert: flags AD + manufacturer AD; at most 31 bytes."""
    if len(payload) > MAX_ADV_PAYLOAD_BYTES:
        raise MalformedError("payload too long")
    return (
        bytes((2, _AD_FLAGS, _FLAGS_LE_GENERAL_NO_BREDR, 3 + len(payload), _AD_MANUFACTURER))
        + struct.pack("<H", company_id)
        + bytes(payload)
    )


def parse_manufacturer_data(adv):
    """Company id -> payload for each manufacturer AD structure in ``adv``.

    Walks the AD structures (u8 length, u8 type, data); a zero length ends the
    significant part; a structure running past the end raises TruncatedError.
    """
    if len(adv) > MAX_ADV_BYTES:
        raise MalformedError("advert longer than 31 bytes")
    found = {}
    offset = 0
    size = len(adv)
    while offset < size:
        length = adv[offset]
        if length == 0:
            break
        if offset + 1 + length > size:
            raise TruncatedError("AD structure runs past the advert")
        if adv[offset + 1] == _AD_MANUFACTURER:
            if length < 3:
                raise MalformedError("manufacturer AD without a company id")
            company_id = adv[offset + 2] | (adv[offset + 3] << 8)
            found[company_id] = bytes(adv[offset + 4 : offset + 1 + length])
        offset += 1 + length
    return found


class Advert:
    """A decoded advert payload. ``signer_id`` is beacon_id, tag_id or device_id;
    ``step`` is the beacon/presence step or the equipment counter."""

    __slots__ = ("type", "key_id", "signer_id", "step", "tx_power_dbm", "battery_pct", "battery_mv", "flags", "mac")

    def __init__(self, type_, key_id, signer_id, step, tx_power_dbm, battery_pct, flags, mac, battery_mv=None):
        self.type = type_
        self.key_id = key_id
        self.signer_id = signer_id
        self.step = step
        self.tx_power_dbm = tx_power_dbm
        self.battery_pct = battery_pct
        self.flags = flags
        self.mac = mac
        self.battery_mv = battery_mv


def decode_advert_payload(payload):
    """Parse a manufacturer payload into an Advert (structure only, no MAC check)."""
    size = len(payload)
    if size > MAX_ADV_PAYLOAD_BYTES:
        raise OversizedError("payload too long")
    if size == 0:
        raise TruncatedError("empty payload")
    if payload[0] != PROTOCOL_VERSION:
        raise VersionError("bad version")
    if size < 2:
        raise TruncatedError("no type byte")
    kind = payload[1]
    if kind == TYPE_BEACON:
        expected = _BEACON_BYTES
    elif kind == TYPE_EQUIPMENT:
        expected = _EQUIPMENT_BYTES
    elif kind == TYPE_PRESENCE:
        expected = _PRESENCE_BYTES
    else:
        raise UnknownKindError("unknown advert type")
    if size < expected:
        raise TruncatedError("short payload")
    if size > expected:
        raise MalformedError("trailing bytes")
    mac = bytes(payload[-ADV_MAC_BYTES:])
    if kind == TYPE_BEACON:
        _, _, key_id, beacon_id, step, tx_power_dbm, battery_pct = struct.unpack_from(_BEACON_FMT, payload)
        if battery_pct > 100:
            raise MalformedError("battery_pct out of range")
        return Advert(kind, key_id, beacon_id, step, tx_power_dbm, battery_pct, None, mac)
    if kind == TYPE_EQUIPMENT:
        _, _, key_id, tag_id, battery_pct, battery_mv, flags, counter = struct.unpack_from(_EQUIPMENT_FMT, payload)
        if battery_pct > 100:
            raise MalformedError("battery_pct out of range")
        if flags & ~_EQUIPMENT_FLAGS_MASK:
            raise MalformedError("reserved equipment flag set")
        return Advert(kind, key_id, tag_id, counter, None, battery_pct, flags, mac, battery_mv)
    _, _, key_id, device_id, step, battery_pct = struct.unpack_from(_PRESENCE_FMT, payload)
    if battery_pct > 100:
        raise MalformedError("battery_pct out of range")
    return Advert(kind, key_id, device_id, step, None, battery_pct, None, mac)


def verify_advert(company_id, payload, key):
    """Raise SignatureError unless the payload's 8-byte MAC verifies under ``key``."""
    expected = _adv_mac(key, company_id, payload[:-ADV_MAC_BYTES])
    if not constant_time_equal(expected, payload[-ADV_MAC_BYTES:]):
        raise SignatureError("advert mac does not verify")
