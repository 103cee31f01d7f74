"""BLE advert payloads and advertisements: vectors, AD parsing, invalid inputs."""

import hashlib
import hmac

import pytest

from patrol_protocol.adverts import (
    AdvertType,
    BeaconAdvert,
    EquipmentAdvert,
    PresenceAdvert,
    advert_signer_key,
    build_advertisement,
    decode_advert_payload,
    encode_beacon_payload,
    encode_equipment_payload,
    encode_presence_payload,
    parse_manufacturer_data,
    verify_advert,
)
from patrol_protocol.errors import (
    MalformedError,
    OversizedError,
    ProtocolError,
    SignatureError,
    TruncatedError,
)
from patrol_protocol.limits import DEV_COMPANY_ID

from .vectors import load

VECTORS = load("adverts.json")["vectors"]
INVALID = load("invalid.json")["adverts"]

_CLASSES = {1: BeaconAdvert, 2: EquipmentAdvert, 3: PresenceAdvert}
_ENCODERS = {1: encode_beacon_payload, 2: encode_equipment_payload, 3: encode_presence_payload}


def _fields(case) -> dict:
    return {k: v for k, v in case["fields"].items() if k not in ("type", "mac_hex")}


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_advert_vector_decodes_to_exact_fields(case):
    payload = bytes.fromhex(case["payload_hex"])
    advert = decode_advert_payload(payload)
    cls = _CLASSES[case["fields"]["type"]]
    assert advert == cls(**_fields(case), mac=bytes.fromhex(case["fields"]["mac_hex"]))
    verify_advert(case["company_id"], payload, bytes.fromhex(case["key"]))


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_advert_vector_reencodes_to_exact_bytes(case):
    encode = _ENCODERS[case["fields"]["type"]]
    payload = encode(**_fields(case), company_id=case["company_id"], key=bytes.fromhex(case["key"]))
    assert payload.hex() == case["payload_hex"]
    advertisement = build_advertisement(case["company_id"], payload)
    assert advertisement.hex() == case["advertisement_hex"]
    assert len(advertisement) <= 31
    assert parse_manufacturer_data(advertisement) == {case["company_id"]: payload}


def test_vectors_cover_all_types_and_two_companies():
    assert {c["fields"]["type"] for c in VECTORS} == {int(t) for t in AdvertType}
    assert {c["company_id"] for c in VECTORS} == {DEV_COMPANY_ID, 0x02E5}


def test_beacon_layout_by_hand():
    case = next(c for c in VECTORS if c["name"] == "beacon_dev_company")
    unsigned = (
        bytes([1, 1, 1])
        + (0x000005B7).to_bytes(4, "big")
        + (179_557_920).to_bytes(4, "big")
        + (-59).to_bytes(1, "big", signed=True)
        + bytes([93])  # battery_pct
    )
    key = bytes(range(16))
    mac = hmac.new(key, b"\xff\xff" + unsigned, hashlib.sha256).digest()[:8]
    assert (unsigned + mac).hex() == case["payload_hex"]
    assert case["advertisement_hex"] == "020106" + "18ffffff" + case["payload_hex"]


def test_equipment_layout_by_hand():
    case = next(c for c in VECTORS if c["name"] == "equipment_dev_company")
    unsigned = (
        bytes([1, 2, 1])
        + (0x0000E001).to_bytes(4, "big")
        + bytes([87])  # battery_pct
        + (3980).to_bytes(2, "big")  # battery_mv
        + bytes([0x03])  # flags: on charger, moving
        + (1234).to_bytes(4, "big")
    )
    mac = hmac.new(bytes(range(16, 32)), b"\xff\xff" + unsigned, hashlib.sha256).digest()[:8]
    assert (unsigned + mac).hex() == case["payload_hex"]
    advertisement = bytes.fromhex(case["advertisement_hex"])
    assert (len(advertisement), advertisement[3]) == (30, 26)


def test_company_id_is_little_endian_on_air_and_in_the_mac():
    case = next(c for c in VECTORS if c["name"] == "beacon_espressif_edge_values")
    advertisement = bytes.fromhex(case["advertisement_hex"])
    assert advertisement[3:7] == bytes([0x18, 0xFF, 0xE5, 0x02])
    payload = bytes.fromhex(case["payload_hex"])
    key = bytes.fromhex(case["key"])
    mac = hmac.new(key, b"\xe5\x02" + payload[:-8], hashlib.sha256).digest()[:8]
    assert payload[-8:] == mac


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["name"])
def test_invalid_advert_raises_its_reason(case):
    payload = bytes.fromhex(case["hex"])
    with pytest.raises(ProtocolError) as err:
        decode_advert_payload(payload)
        if "key" in case:
            verify_advert(case["company_id"], payload, bytes.fromhex(case["key"]))
    assert err.value.reason == case["error"], str(err.value)


def test_signer_keys():
    by_name = {c["name"]: decode_advert_payload(bytes.fromhex(c["payload_hex"])) for c in VECTORS}
    assert advert_signer_key(by_name["beacon_dev_company"]) == "beacon:000005b7:179557920"
    assert advert_signer_key(by_name["equipment_dev_company"]) == "equip:0000e001:1234"
    assert advert_signer_key(by_name["presence_dev_company"]) == "presence:0000a001:179557920"


def test_parse_manufacturer_data_skips_other_ads_and_padding():
    ibeacon = bytes.fromhex("4c000215") + bytes(18)  # Apple 0x004C data, cut to fit 31 bytes
    adv = (
        bytes([2, 0x01, 0x06])
        + bytes([3, 0x03, 0xAA, 0xFE])  # 16-bit service UUIDs (Eddystone)
        + bytes([1 + len(ibeacon), 0xFF])
        + ibeacon
    )
    assert len(adv) == 31
    assert parse_manufacturer_data(adv) == {0x004C: ibeacon[2:]}
    assert parse_manufacturer_data(bytes([2, 1, 6, 0, 0, 0])) == {}
    assert parse_manufacturer_data(b"") == {}


@pytest.mark.parametrize(
    ("adv", "error", "match"),
    [
        (bytes(32), OversizedError, "32 bytes, limit 31"),
        (bytes([5, 0xFF, 0xFF, 0xFF]), TruncatedError, "runs past the end"),
        (bytes([2, 0xFF, 0x01]), MalformedError, "lacks a company id"),
        (bytes([3, 0xFF, 0x01, 0x02, 3, 0xFF, 0x01, 0x02]), MalformedError, "appears twice"),
    ],
)
def test_parse_manufacturer_data_rejects(adv, error, match):
    with pytest.raises(error, match=match):
        parse_manufacturer_data(adv)


def test_build_advertisement_checks():
    with pytest.raises(OversizedError, match="25 bytes, limit 24"):
        build_advertisement(DEV_COMPANY_ID, bytes(25))
    with pytest.raises(MalformedError, match="company_id=65536"):
        build_advertisement(0x10000, b"")
    assert build_advertisement(0x0059, b"") == bytes([2, 1, 6, 3, 0xFF, 0x59, 0x00])


@pytest.mark.parametrize(
    ("encode", "kwargs", "match"),
    [
        (encode_beacon_payload, {"tx_power_dbm": 128}, "tx_power_dbm=128"),
        (encode_beacon_payload, {"step": -1}, "step=-1"),
        (encode_beacon_payload, {"key": bytes(32)}, "key must be 16 bytes"),
        (encode_beacon_payload, {"company_id": -1}, "company_id=-1"),
        (encode_beacon_payload, {"battery_pct": 101}, "battery_pct=101"),
        (encode_equipment_payload, {"battery_pct": 101}, "battery_pct=101"),
        (encode_equipment_payload, {"battery_mv": 1 << 16}, "battery_mv=65536"),
        (encode_equipment_payload, {"flags": 0x20}, "flags=0x20"),
        (encode_equipment_payload, {"counter": 1 << 32}, "counter=4294967296"),
        (encode_presence_payload, {"battery_pct": -1}, "battery_pct=-1"),
        (encode_presence_payload, {"device_id": 1 << 32}, "device_id=4294967296"),
    ],
)
def test_encoders_refuse_out_of_range(encode, kwargs, match):
    base = {
        encode_beacon_payload: {
            "key_id": 1,
            "beacon_id": 1,
            "step": 1,
            "tx_power_dbm": -59,
            "battery_pct": 50,
        },
        encode_equipment_payload: {
            "key_id": 1,
            "tag_id": 1,
            "battery_pct": 50,
            "battery_mv": 3700,
            "flags": 0,
            "counter": 1,
        },
        encode_presence_payload: {"key_id": 1, "device_id": 1, "step": 1, "battery_pct": 50},
    }[encode]
    args = {**base, "company_id": DEV_COMPANY_ID, "key": bytes(16), **kwargs}
    with pytest.raises(MalformedError, match=match):
        encode(**args)


def test_verify_advert_wrong_key():
    case = VECTORS[0]
    with pytest.raises(SignatureError, match="advert mac does not verify"):
        verify_advert(case["company_id"], bytes.fromhex(case["payload_hex"]), bytes(16))
