"""Decoders of off-the-shelf tags against published frames, and every way to be wrong."""

from __future__ import annotations

import uuid

import pytest
from bletest import (
    EDDYSTONE_TLM_ADV,
    EDDYSTONE_TLM_UNSUPPORTED_ADV,
    EDDYSTONE_UID_ADV,
    EDDYSTONE_UID_NO_RFU_ADV,
    IBEACON_ADV,
    ad_structures,
)
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.ble.decoders import (
    EddystoneTlm,
    EddystoneUid,
    IBeacon,
    decode_eddystone,
    decode_ibeacon,
    is_ibeacon,
)
from patrol_protocol.errors import ProtocolError


def _manufacturer(adv: bytes) -> tuple[int, bytes]:
    data = next(d for t, d in ad_structures(adv) if t == 0xFF)
    return int.from_bytes(data[:2], "little"), data[2:]


def _service(adv: bytes) -> bytes:
    data = next(d for t, d in ad_structures(adv) if t == 0x16)
    assert data[:2] == b"\xaa\xfe"
    return data[2:]


def test_ibeacon_published_frame() -> None:
    company_id, data = _manufacturer(IBEACON_ADV)
    assert company_id == 0x004C
    assert is_ibeacon(data)
    beacon = decode_ibeacon(data)
    assert beacon == IBeacon(uuid.UUID("b5b182c7-eab1-4988-aa99-b5c1517008d9"), 1, 2, -58)
    assert beacon.tag == "ibeacon:b5b182c7-eab1-4988-aa99-b5c1517008d9:1:2"


def test_eddystone_uid_published_frame_with_and_without_rfu() -> None:
    expected = EddystoneUid(
        -18, bytes.fromhex("8b0ca750095477cb3e77"), bytes.fromhex("000000000001")
    )
    assert decode_eddystone(_service(EDDYSTONE_UID_ADV)) == expected
    assert decode_eddystone(_service(EDDYSTONE_UID_NO_RFU_ADV)) == expected
    assert expected.tag == "eddystone:8b0ca750095477cb3e77:000000000001"


def test_eddystone_tlm_frames() -> None:
    tlm = decode_eddystone(_service(EDDYSTONE_TLM_ADV))
    assert tlm == EddystoneTlm(3000, 0x1780, 123_456, 10_000)
    assert isinstance(tlm, EddystoneTlm) and tlm.temperature_c == 23.5
    unsupported = decode_eddystone(_service(EDDYSTONE_TLM_UNSUPPORTED_ADV))
    assert unsupported == EddystoneTlm(0, -0x8000, 100, 600)
    assert isinstance(unsupported, EddystoneTlm) and unsupported.temperature_c is None


def test_tlm_negative_temperature() -> None:
    tlm = decode_eddystone(bytes.fromhex("20000c1cff800000000100000002"))
    assert isinstance(tlm, EddystoneTlm) and tlm.temperature_c == -0.5


def test_apple_non_ibeacon_types_are_not_ibeacons() -> None:
    assert not is_ibeacon(bytes.fromhex("1005031c"))  # Apple "Nearby Info"
    assert not is_ibeacon(b"")


_IBEACON_DATA = _manufacturer(IBEACON_ADV)[1]


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (b"", "truncated", "iBeacon data is empty"),
        (b"\x02", "truncated", "lacks its length byte"),
        (_IBEACON_DATA[:-1], "truncated", "needs 23 bytes, got 22"),
        (_IBEACON_DATA + b"\x00", "malformed", "1 trailing bytes"),
        (b"\x02\x16" + _IBEACON_DATA[2:], "malformed", "length=0x16, expected 0x15"),
        (b"\x12\x15" + _IBEACON_DATA[2:], "unknown_kind", "apple type=0x12"),
        (_IBEACON_DATA + bytes(5), "oversized", "28 bytes, limit 27"),
    ],
)
def test_ibeacon_rejects(data: bytes, reason: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        decode_ibeacon(data)
    assert info.value.reason == reason


_UID = _service(EDDYSTONE_UID_ADV)
_TLM = _service(EDDYSTONE_TLM_ADV)


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (b"", "truncated", "Eddystone data is empty"),
        (_UID[:17], "truncated", "Eddystone-UID needs 18 bytes, got 17"),
        (_UID[:19], "malformed", "19 bytes, expected 18 or 20"),
        (_UID[:18] + b"\x00\x01", "malformed", "rfu=0001"),
        (_UID + b"\x00", "malformed", "21 bytes, expected 18 or 20"),
        (b"\x20", "truncated", "lacks its version byte"),
        (b"\x20\x01" + _TLM[2:], "bad_version", "encrypted TLM needs the beacon's key"),
        (b"\x20\x02" + _TLM[2:], "bad_version", "version=0x02, expected 0x00"),
        (_TLM[:13], "truncated", "Eddystone-TLM needs 14 bytes, got 13"),
        (_TLM + b"\x00", "malformed", "Eddystone-TLM has 1 trailing bytes"),
        (b"\x10\x00\x03google", "unknown_kind", "frame=0x10"),
        (b"\x30" + bytes(9), "unknown_kind", "frame=0x30"),
        (bytes(28), "oversized", "28 bytes, limit 27"),
    ],
)
def test_eddystone_rejects(data: bytes, reason: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        decode_eddystone(data)
    assert info.value.reason == reason


@given(st.binary(max_size=40))
def test_decoders_raise_only_protocol_errors(data: bytes) -> None:
    for decode in (decode_ibeacon, decode_eddystone):
        try:
            decode(data)
        except ProtocolError as exc:
            assert exc.reason in {
                "truncated",
                "oversized",
                "bad_version",
                "malformed",
                "unknown_kind",
            }
