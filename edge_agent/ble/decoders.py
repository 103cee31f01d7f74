"""Pure decoders for off-the-shelf BLE tags: iBeacon, Eddystone-UID, Eddystone-TLM.

The project's own signed adverts (beacon, equipment tag, presence) are decoded by
:mod:`patrol_protocol.adverts`, never here. Everything in this module is bytes in,
frozen dataclass out; a bad input raises a :class:`patrol_protocol.errors.ProtocolError`
subclass whose ``reason`` is the stable string used in dead letters and counters.

Layouts (all multi-byte fields big-endian, except the BLE company id)::

    iBeacon   manufacturer data, company 0x004C (Apple), 23 bytes after the company id:
              u8 type=0x02, u8 length=0x15, uuid16, u16 major, u16 minor, i8 tx_power_dbm
              (Apple "Proximity Beacon Specification" R1; tx power = RSSI measured at 1 m)
    Eddystone service data of UUID 0xFEAA (github.com/google/eddystone):
      UID     u8 frame=0x00, i8 tx_power_dbm (at 0 m), namespace10, instance6, rfu2 = 0
              (the spec allows 18 bytes from implementations that omit the RFU bytes)
      TLM     u8 frame=0x20, u8 version=0x00 (unencrypted), u16 battery_mv,
              s8.8 temperature_c (0x8000 = not supported), u32 adv_count,
              u32 since_boot_ds (0.1 s resolution)
"""

import struct
import uuid
from dataclasses import dataclass
from typing import Final

from patrol_protocol.errors import (
    MalformedError,
    OversizedError,
    TruncatedError,
    UnknownKindError,
    VersionError,
)

APPLE_COMPANY_ID: Final = 0x004C
IBEACON_TYPE: Final = 0x02
IBEACON_LENGTH: Final = 0x15
"""Bytes after the type and length bytes: uuid 16 + major 2 + minor 2 + tx power 1."""
IBEACON_BYTES: Final = 2 + IBEACON_LENGTH

EDDYSTONE_UUID16: Final = 0xFEAA
EDDYSTONE_SERVICE_UUID: Final = "0000feaa-0000-1000-8000-00805f9b34fb"
"""How bleak keys Eddystone service data (128-bit form of the 16-bit UUID)."""
EDDYSTONE_UID_FRAME: Final = 0x00
EDDYSTONE_URL_FRAME: Final = 0x10
EDDYSTONE_TLM_FRAME: Final = 0x20
EDDYSTONE_EID_FRAME: Final = 0x30
TLM_VERSION_PLAIN: Final = 0x00
TLM_VERSION_ENCRYPTED: Final = 0x01
EDDYSTONE_UID_BYTES: Final = 20
EDDYSTONE_UID_NO_RFU_BYTES: Final = 18
"""Older UID senders truncate the two RFU bytes (Eddystone-UID field notes)."""
EDDYSTONE_TLM_BYTES: Final = 14
TLM_TEMPERATURE_UNSUPPORTED: Final = -0x8000
"""0x8000 as s8.8: the beacon has no temperature sensor (-128 degC by the spec)."""
MAX_TAG_DATA_BYTES: Final = 27
"""A legacy advert holds 31 bytes; minus the AD header (length, type) and a 16-bit
UUID or company id, no manufacturer or service data can be longer."""

_IBEACON: Final = struct.Struct(">BB16sHHb")
_UID: Final = struct.Struct(">Bb10s6s")
_TLM: Final = struct.Struct(">BBHhII")


@dataclass(frozen=True, slots=True)
class IBeacon:
    """An Apple iBeacon advert: who (uuid, major, minor) and its calibrated power at 1 m."""

    uuid: uuid.UUID
    major: int
    minor: int
    tx_power_dbm: int

    @property
    def tag(self) -> str:
        """Stable tag name for dedup and observations."""
        return f"ibeacon:{self.uuid}:{self.major}:{self.minor}"


@dataclass(frozen=True, slots=True)
class EddystoneUid:
    """An Eddystone-UID frame: 10-byte namespace, 6-byte instance, power at 0 m."""

    tx_power_dbm: int
    namespace: bytes
    instance: bytes

    @property
    def tag(self) -> str:
        """Stable tag name for dedup and observations."""
        return f"eddystone:{self.namespace.hex()}:{self.instance.hex()}"


@dataclass(frozen=True, slots=True)
class EddystoneTlm:
    """An unencrypted Eddystone-TLM frame: the beacon's own health (it carries no id)."""

    battery_mv: int
    """0 when the beacon does not measure its supply (e.g. USB powered)."""
    temperature_x256: int
    """Signed 8.8 fixed point, degrees Celsius times 256 (-32768 = not supported)."""
    adv_count: int
    since_boot_ds: int
    """Deciseconds since power-on or reboot."""

    @property
    def temperature_c(self) -> float | None:
        """Degrees Celsius (exact: a 8.8 value is a binary fraction), None if unsupported."""
        if self.temperature_x256 == TLM_TEMPERATURE_UNSUPPORTED:
            return None
        return self.temperature_x256 / 256


Eddystone = EddystoneUid | EddystoneTlm


def _check_size(name: str, data: bytes) -> None:
    if len(data) > MAX_TAG_DATA_BYTES:
        raise OversizedError(f"{name} is {len(data)} bytes, limit {MAX_TAG_DATA_BYTES}")
    if not data:
        raise TruncatedError(f"{name} is empty")


def is_ibeacon(apple_data: bytes) -> bool:
    """True when Apple manufacturer data claims to be an iBeacon (type 0x02).

    Apple devices send many other types (0x10 Nearby, 0x12 Find My, ...): those
    are not tags and are ignored, never counted as bad.
    """
    return len(apple_data) >= 1 and apple_data[0] == IBEACON_TYPE


def decode_ibeacon(apple_data: bytes) -> IBeacon:
    """Parse Apple manufacturer data (the bytes after company id 0x004C)."""
    data = bytes(apple_data)
    _check_size("iBeacon data", data)
    if data[0] != IBEACON_TYPE:
        raise UnknownKindError(f"apple type=0x{data[0]:02x} is not iBeacon (0x02)")
    if len(data) < 2:
        raise TruncatedError("iBeacon data lacks its length byte")
    if data[1] != IBEACON_LENGTH:
        raise MalformedError(f"iBeacon length=0x{data[1]:02x}, expected 0x15")
    if len(data) < IBEACON_BYTES:
        raise TruncatedError(f"iBeacon needs {IBEACON_BYTES} bytes, got {len(data)}")
    if len(data) > IBEACON_BYTES:
        raise MalformedError(f"iBeacon has {len(data) - IBEACON_BYTES} trailing bytes")
    _, _, raw_uuid, major, minor, tx_power = _IBEACON.unpack(data)
    return IBeacon(uuid.UUID(bytes=raw_uuid), major, minor, tx_power)


def decode_eddystone(service_data: bytes) -> Eddystone:
    """Parse Eddystone service data (UUID 0xFEAA): UID or unencrypted TLM.

    URL and EID frames carry no stable identity for a tag, and encrypted TLM
    needs the beacon's key: all three are ``unknown_kind`` / ``bad_version``.
    """
    data = bytes(service_data)
    _check_size("Eddystone data", data)
    frame = data[0]
    if frame == EDDYSTONE_UID_FRAME:
        return _decode_uid(data)
    if frame == EDDYSTONE_TLM_FRAME:
        return _decode_tlm(data)
    raise UnknownKindError(f"eddystone frame=0x{frame:02x} is not UID (0x00) or TLM (0x20)")


def _decode_uid(data: bytes) -> EddystoneUid:
    if len(data) < EDDYSTONE_UID_NO_RFU_BYTES:
        raise TruncatedError(
            f"Eddystone-UID needs {EDDYSTONE_UID_NO_RFU_BYTES} bytes, got {len(data)}"
        )
    if len(data) not in (EDDYSTONE_UID_NO_RFU_BYTES, EDDYSTONE_UID_BYTES):
        raise MalformedError(f"Eddystone-UID is {len(data)} bytes, expected 18 or 20")
    if data[EDDYSTONE_UID_NO_RFU_BYTES:] not in (b"", b"\x00\x00"):
        raise MalformedError(f"Eddystone-UID rfu={data[18:].hex()}, must be 0000")
    _, tx_power, namespace, instance = _UID.unpack_from(data)
    return EddystoneUid(tx_power, namespace, instance)


def _decode_tlm(data: bytes) -> EddystoneTlm:
    if len(data) < 2:
        raise TruncatedError("Eddystone-TLM lacks its version byte")
    if data[1] != TLM_VERSION_PLAIN:
        detail = (
            " (encrypted TLM needs the beacon's key)" if data[1] == TLM_VERSION_ENCRYPTED else ""
        )
        raise VersionError(f"Eddystone-TLM version=0x{data[1]:02x}, expected 0x00{detail}")
    if len(data) < EDDYSTONE_TLM_BYTES:
        raise TruncatedError(f"Eddystone-TLM needs {EDDYSTONE_TLM_BYTES} bytes, got {len(data)}")
    if len(data) > EDDYSTONE_TLM_BYTES:
        raise MalformedError(f"Eddystone-TLM has {len(data) - EDDYSTONE_TLM_BYTES} trailing bytes")
    _, _, battery_mv, temperature, adv_count, since_boot_ds = _TLM.unpack(data)
    return EddystoneTlm(battery_mv, temperature, adv_count, since_boot_ds)


__all__ = [
    "APPLE_COMPANY_ID",
    "EDDYSTONE_SERVICE_UUID",
    "Eddystone",
    "EddystoneTlm",
    "EddystoneUid",
    "IBeacon",
    "decode_eddystone",
    "decode_ibeacon",
    "is_ibeacon",
]
