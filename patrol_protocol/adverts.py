"""Signed BLE advert payloads (beacon, equipment tag, wearable presence).

A legacy advertisement holds two AD structures::

    02 01 06                  flags: LE General Discoverable, BR/EDR not supported
    LL FF CC CC payload...    manufacturer data, LL = 3 + len(payload), CC CC = company id LE

Payloads (big-endian, last 8 bytes are the MAC)::

    beacon    (21) u8 version, u8 type=1, u8 key_id, u32 beacon_id, u32 step, i8 tx_power_dbm,
                   u8 battery_pct, mac8
    equipment (23) u8 version, u8 type=2, u8 key_id, u32 tag_id, u8 battery_pct, u16 battery_mv,
                   u8 flags, u32 counter, mac8
    presence  (20) u8 version, u8 type=3, u8 key_id, u32 device_id, u32 step, u8 battery_pct, mac8

``mac8 = HMAC-SHA256(key, company_id as u16 LE || payload[:-8])[:8]``. Decoding
checks: oversized, empty (truncated), version, type (unknown_kind), then the exact
length for the type (truncated when short, malformed when long), then fields.
"""

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from patrol_protocol._checks import (
    check_bytes,
    check_int8,
    check_range,
    check_reserved_bits,
    check_uint,
)
from patrol_protocol.crypto import constant_time_equal, hmac_sha256
from patrol_protocol.errors import (
    MalformedError,
    OversizedError,
    SignatureError,
    TruncatedError,
    UnknownKindError,
    VersionError,
)
from patrol_protocol.limits import (
    ADV_KEY_BYTES,
    ADV_MAC_BYTES,
    MAX_ADV_BYTES,
    MAX_ADV_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
)


class AdvertType(IntEnum):
    """Payload type byte (offset 1)."""

    BEACON = 1
    EQUIPMENT = 2
    PRESENCE = 3


EQUIPMENT_ON_CHARGER: Final = 0x01
EQUIPMENT_MOVING: Final = 0x02
EQUIPMENT_LOW_BATTERY: Final = 0x04
EQUIPMENT_BUTTON: Final = 0x08
"""The tag's button was pressed since its previous advert."""
EQUIPMENT_TAMPER: Final = 0x10
"""The tag's tamper switch opened since its previous advert (case opened, tag pulled off)."""
_EQUIPMENT_FLAGS_MASK: Final = 0x1F

AD_TYPE_FLAGS: Final = 0x01
AD_TYPE_MANUFACTURER: Final = 0xFF
ADV_FLAGS_AD: Final = bytes((0x02, AD_TYPE_FLAGS, 0x06))
"""LE General Discoverable, BR/EDR not supported."""

_BEACON: Final = struct.Struct(">BBBIIbB")
_EQUIPMENT: Final = struct.Struct(">BBBIBHBI")
_PRESENCE: Final = struct.Struct(">BBBIIB")
_PAYLOAD_BYTES: Final[dict[int, int]] = {
    AdvertType.BEACON: _BEACON.size + ADV_MAC_BYTES,
    AdvertType.EQUIPMENT: _EQUIPMENT.size + ADV_MAC_BYTES,
    AdvertType.PRESENCE: _PRESENCE.size + ADV_MAC_BYTES,
}


@dataclass(frozen=True, slots=True)
class BeaconAdvert:
    """Checkpoint beacon: id, time step of its own clock, calibrated TX power, battery."""

    key_id: int
    beacon_id: int
    step: int
    tx_power_dbm: int
    battery_pct: int
    mac: bytes

    def __post_init__(self) -> None:
        check_uint("key_id", self.key_id, 8)
        check_uint("beacon_id", self.beacon_id, 32)
        check_uint("step", self.step, 32)
        check_int8("tx_power_dbm", self.tx_power_dbm)
        check_range("battery_pct", self.battery_pct, 0, 100)
        check_bytes("mac", self.mac, ADV_MAC_BYTES)


@dataclass(frozen=True, slots=True)
class EquipmentAdvert:
    """Equipment tag on a radio or flashlight: battery, flags, advancing counter."""

    key_id: int
    tag_id: int
    battery_pct: int
    battery_mv: int
    flags: int
    counter: int
    mac: bytes

    def __post_init__(self) -> None:
        check_uint("key_id", self.key_id, 8)
        check_uint("tag_id", self.tag_id, 32)
        check_range("battery_pct", self.battery_pct, 0, 100)
        check_uint("battery_mv", self.battery_mv, 16)
        check_uint("flags", self.flags, 8)
        check_reserved_bits("flags", self.flags, _EQUIPMENT_FLAGS_MASK)
        check_uint("counter", self.counter, 32)
        check_bytes("mac", self.mac, ADV_MAC_BYTES)


@dataclass(frozen=True, slots=True)
class PresenceAdvert:
    """A wearable announcing itself (heard by the edge and by other wearables)."""

    key_id: int
    device_id: int
    step: int
    battery_pct: int
    mac: bytes

    def __post_init__(self) -> None:
        check_uint("key_id", self.key_id, 8)
        check_uint("device_id", self.device_id, 32)
        check_uint("step", self.step, 32)
        check_range("battery_pct", self.battery_pct, 0, 100)
        check_bytes("mac", self.mac, ADV_MAC_BYTES)


Advert = BeaconAdvert | EquipmentAdvert | PresenceAdvert


def decode_advert_payload(payload: bytes) -> Advert:
    """Parse a manufacturer-data payload (structure only; see :func:`verify_advert`)."""
    payload = bytes(payload)
    size = len(payload)
    if size > MAX_ADV_PAYLOAD_BYTES:
        raise OversizedError(f"advert payload is {size} bytes, limit {MAX_ADV_PAYLOAD_BYTES}")
    if size == 0:
        raise TruncatedError("advert payload is empty")
    if payload[0] != PROTOCOL_VERSION:
        raise VersionError(f"version={payload[0]}, expected {PROTOCOL_VERSION}")
    if size < 2:
        raise TruncatedError("advert payload lacks its type byte")
    adv_type = payload[1]
    expected = _PAYLOAD_BYTES.get(adv_type)
    if expected is None:
        raise UnknownKindError(f"type=0x{adv_type:02x} is not an advert type")
    if size < expected:
        raise TruncatedError(f"advert type {adv_type} needs {expected} bytes, got {size}")
    if size > expected:
        raise MalformedError(f"advert type {adv_type} has {size - expected} trailing bytes")
    mac = payload[-ADV_MAC_BYTES:]
    if adv_type == AdvertType.BEACON:
        _, _, key_id, beacon_id, step, tx_power, battery = _BEACON.unpack_from(payload)
        return BeaconAdvert(key_id, beacon_id, step, tx_power, battery, mac)
    if adv_type == AdvertType.EQUIPMENT:
        _, _, key_id, tag_id, battery, battery_mv, flags, counter = _EQUIPMENT.unpack_from(payload)
        return EquipmentAdvert(key_id, tag_id, battery, battery_mv, flags, counter, mac)
    _, _, key_id, device_id, step, battery = _PRESENCE.unpack_from(payload)
    return PresenceAdvert(key_id, device_id, step, battery, mac)


def _advert_mac(company_id: int, signed_part: bytes, key: bytes) -> bytes:
    check_uint("company_id", company_id, 16)
    return hmac_sha256(key, company_id.to_bytes(2, "little") + signed_part)[:ADV_MAC_BYTES]


def verify_advert(company_id: int, payload: bytes, key: bytes) -> None:
    """Decode ``payload`` and raise SignatureError unless its MAC verifies."""
    payload = bytes(payload)
    decode_advert_payload(payload)
    expected = _advert_mac(company_id, payload[:-ADV_MAC_BYTES], key)
    if not constant_time_equal(expected, payload[-ADV_MAC_BYTES:]):
        raise SignatureError(f"advert mac does not verify (company 0x{company_id:04x})")


def _sign(company_id: int, unsigned: bytes, key: bytes) -> bytes:
    check_bytes("key", key, ADV_KEY_BYTES)
    return unsigned + _advert_mac(company_id, unsigned, key)


def encode_beacon_payload(
    *,
    key_id: int,
    beacon_id: int,
    step: int,
    tx_power_dbm: int,
    battery_pct: int,
    company_id: int,
    key: bytes,
) -> bytes:
    """Signed 21-byte checkpoint-beacon payload."""
    a = BeaconAdvert(key_id, beacon_id, step, tx_power_dbm, battery_pct, bytes(ADV_MAC_BYTES))
    unsigned = _BEACON.pack(
        PROTOCOL_VERSION,
        AdvertType.BEACON,
        a.key_id,
        a.beacon_id,
        a.step,
        a.tx_power_dbm,
        a.battery_pct,
    )
    return _sign(company_id, unsigned, key)


def encode_equipment_payload(
    *,
    key_id: int,
    tag_id: int,
    battery_pct: int,
    battery_mv: int,
    flags: int,
    counter: int,
    company_id: int,
    key: bytes,
) -> bytes:
    """Signed 23-byte equipment-tag payload."""
    a = EquipmentAdvert(
        key_id, tag_id, battery_pct, battery_mv, flags, counter, bytes(ADV_MAC_BYTES)
    )
    unsigned = _EQUIPMENT.pack(
        PROTOCOL_VERSION,
        AdvertType.EQUIPMENT,
        a.key_id,
        a.tag_id,
        a.battery_pct,
        a.battery_mv,
        a.flags,
        a.counter,
    )
    return _sign(company_id, unsigned, key)


def encode_presence_payload(
    *, key_id: int, device_id: int, step: int, battery_pct: int, company_id: int, key: bytes
) -> bytes:
    """Signed 20-byte wearable-presence payload."""
    a = PresenceAdvert(key_id, device_id, step, battery_pct, bytes(ADV_MAC_BYTES))
    unsigned = _PRESENCE.pack(
        PROTOCOL_VERSION, AdvertType.PRESENCE, a.key_id, a.device_id, a.step, a.battery_pct
    )
    return _sign(company_id, unsigned, key)


def build_advertisement(company_id: int, payload: bytes) -> bytes:
    """Legacy advertisement: flags AD + manufacturer AD (company id little-endian)."""
    check_uint("company_id", company_id, 16)
    if not isinstance(payload, bytes):
        raise MalformedError(f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > MAX_ADV_PAYLOAD_BYTES:
        raise OversizedError(
            f"advert payload is {len(payload)} bytes, limit {MAX_ADV_PAYLOAD_BYTES}"
        )
    manufacturer = (
        bytes((3 + len(payload), AD_TYPE_MANUFACTURER)) + company_id.to_bytes(2, "little") + payload
    )
    return ADV_FLAGS_AD + manufacturer


def parse_manufacturer_data(adv: bytes) -> dict[int, bytes]:
    """Map company id -> payload over the manufacturer AD structures of ``adv``.

    A zero length byte ends the significant part (the rest is padding). An AD
    structure running past the end is truncated; a manufacturer AD without a
    company id, or a company id repeated, is malformed.
    """
    adv = bytes(adv)
    if len(adv) > MAX_ADV_BYTES:
        raise OversizedError(f"advertisement is {len(adv)} bytes, limit {MAX_ADV_BYTES}")
    result: dict[int, bytes] = {}
    offset = 0
    while offset < len(adv):
        length = adv[offset]
        if length == 0:
            break
        end = offset + 1 + length
        if end > len(adv):
            raise TruncatedError(
                f"AD structure at offset {offset} (len {length}) runs past the end"
            )
        if adv[offset + 1] == AD_TYPE_MANUFACTURER:
            data = adv[offset + 2 : end]
            if len(data) < 2:
                raise MalformedError(f"manufacturer AD at offset {offset} lacks a company id")
            company_id = int.from_bytes(data[:2], "little")
            if company_id in result:
                raise MalformedError(f"company id 0x{company_id:04x} appears twice")
            result[company_id] = data[2:]
        offset = end
    return result


def advert_signer_key(advert: Advert) -> str:
    """Idempotency key of an advert: its signer and its step or counter."""
    if isinstance(advert, BeaconAdvert):
        return f"beacon:{advert.beacon_id:08x}:{advert.step}"
    if isinstance(advert, EquipmentAdvert):
        return f"equip:{advert.tag_id:08x}:{advert.counter}"
    return f"presence:{advert.device_id:08x}:{advert.step}"
