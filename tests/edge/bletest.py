"""Helpers of the BLE tests: published advertisements and bleak's own objects.

Sources of the byte-exact frames (recorded per the issue):

- iBeacon: the packet table of Apr Brother's "iBeacon packet structure"
  (https://wiki.aprbrother.com/en/iBeacon_Packet.html), which follows Apple's
  Proximity Beacon Specification R1: flags ``02 01 06``, ``1a ff 4c 00 02 15``,
  proximity UUID ``b5b182c7-eab1-4988-aa99-b5c1517008d9``, major, minor, measured
  power ``c6`` (-58 dBm). The table leaves major and minor as ``xx``: 0x0001 / 0x0002 here.
- Eddystone: github.com/google/eddystone, eddystone-uid/README.md and
  eddystone-tlm/tlm-plain.md: UID service data length byte ``0x17`` (``0x15`` without
  RFU), namespace ``8b0ca750095477cb3e77`` (the spec's own elided-UUID example), TLM
  length byte ``0x11``, battery 0 and temperature ``0x8000`` for "not supported".
- the project's adverts: tests/vectors/adverts.json (patrol_protocol's encoders).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edge_agent.settings import EdgeSettings

IBEACON_ADV = bytes.fromhex("0201061aff4c000215b5b182c7eab14988aa99b5c1517008d900010002c6")
EDDYSTONE_UID_ADV = bytes.fromhex("0201060303aafe1716aafe00ee8b0ca750095477cb3e770000000000010000")
"""Ranging data 0xee = -18 dBm at 0 m (the spec's advice: -59 dBm at 1 m plus 41)."""
EDDYSTONE_UID_NO_RFU_ADV = bytes.fromhex(
    "0201060303aafe1516aafe00ee8b0ca750095477cb3e77000000000001"
)
EDDYSTONE_TLM_UNSUPPORTED_ADV = bytes.fromhex("0201060303aafe1116aafe2000000080000000006400000258")
"""USB powered (battery 0), no sensor (0x8000), 100 adverts, 60.0 s since boot."""
EDDYSTONE_TLM_ADV = bytes.fromhex("0201060303aafe1116aafe20000bb817800001e24000002710")
"""3000 mV, 0x1780 = 23.5 degC, 123456 adverts, 1000.0 s since boot."""

EDDYSTONE_KEY = "0000feaa-0000-1000-8000-00805f9b34fb"
_VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "adverts.json"


def advert_vector(name: str) -> dict[str, Any]:
    """One named vector of tests/vectors/adverts.json (payload, company id, key, fields)."""
    for vector in json.loads(_VECTORS.read_text())["vectors"]:
        if vector["name"] == name:
            return dict(vector)
    raise KeyError(name)


def ad_structures(adv: bytes) -> list[tuple[int, bytes]]:
    """(AD type, data) of each AD structure of a legacy advertisement."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(adv) and adv[offset]:
        length = adv[offset]
        out.append((adv[offset + 1], adv[offset + 2 : offset + 1 + length]))
        offset += 1 + length
    return out


def uuid16(value: int) -> str:
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


def advertisement(adv: bytes, rssi: int) -> AdvertisementData:
    """bleak's AdvertisementData as BlueZ would fill it for these raw advertisement bytes."""
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    uuids: list[str] = []
    for ad_type, data in ad_structures(adv):
        if ad_type == 0xFF:
            manufacturer[int.from_bytes(data[:2], "little")] = data[2:]
        elif ad_type == 0x16:
            service_data[uuid16(int.from_bytes(data[:2], "little"))] = data[2:]
        elif ad_type == 0x03:
            uuids.extend(
                uuid16(int.from_bytes(data[i : i + 2], "little")) for i in range(0, len(data), 2)
            )
    return AdvertisementData(
        local_name=None,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        tx_power=None,
        rssi=rssi,
        platform_data=(),
    )


def device(address: str) -> BLEDevice:
    """bleak's BLEDevice as the BlueZ backend builds it (details: D-Bus path and props)."""
    path = "/org/bluez/hci0/dev_" + address.replace(":", "_")
    return BLEDevice(address, None, {"path": path, "props": {"Address": address}})


def manufacturer_adv(company_id: int, payload: bytes) -> bytes:
    """Flags + one manufacturer AD, as patrol_protocol.adverts.build_advertisement lays it out."""
    return (
        bytes.fromhex("020106")
        + bytes((3 + len(payload), 0xFF))
        + company_id.to_bytes(2, "little")
        + payload
    )


def make_settings(queue_path: Path, **overrides: Any) -> EdgeSettings:
    """Agent settings for BLE tests: nothing listens at cloud_url; 10 s interval, 30 s away."""
    values: dict[str, Any] = {
        "cloud_url": "http://127.0.0.1:9",
        "gateway_id": "gw-test",
        "gateway_api_key": "not-used-here",
        "queue_path": queue_path,
        "ble_heartbeat_interval_s": 10.0,
        "ble_away_after_s": 30.0,
        "ble_rssi_alpha": 0.25,
    }
    values.update(overrides)
    return EdgeSettings(**values)
