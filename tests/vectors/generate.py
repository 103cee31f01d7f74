"""Generate the project's own wire-format vectors: frames, commands, adverts, invalid.

Run ``.venv/bin/python tests/vectors/generate.py`` from the repository root; it
rewrites ``frames.json``, ``commands.json``, ``adverts.json`` and ``invalid.json``
beside this file. Keys are deterministic (``bytes(range(32))`` and friends), so a
re-run reproduces the files byte for byte; ``tests/protocol/test_vectors_files.py``
checks that. The published vectors (RFC 4231, RFC 4493, AN12196) are transcribed
by hand, not generated.

Valid vectors are built with ``patrol_protocol``'s encoders. Invalid inputs are
built here with raw ``struct`` packing (the encoders refuse to build them) and
each has exactly ONE defect, so every decoder reports the same reason whatever
order it checks in. Where a case has a MAC, it is valid unless the defect is the
MAC itself. How a reader checks each section of ``invalid.json``:

- ``frames``: ``decode_frame(hex)``, then ``decode_body(kind, body)``, then, if
  ``key`` is present, ``verify_frame(frame, key)``; the first error's reason must
  equal ``error``.
- ``commands``: ``decode_command(hex)`` (which checks the body), then, if ``key``
  is present, ``verify_command``.
- ``acks``: ``decode_ack(hex)``. ``status``: ``decode_status(hex)``.
- ``adverts``: ``decode_advert_payload(hex)``, then, if ``key`` is present,
  ``verify_advert(company_id, hex, key)``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path
from typing import Any

from patrol_protocol.adverts import (
    build_advertisement,
    encode_beacon_payload,
    encode_equipment_payload,
    encode_presence_payload,
)
from patrol_protocol.commands import (
    Ack,
    CommandKind,
    Status,
    encode_ack,
    encode_command,
    encode_locate,
    encode_set_config,
    encode_set_time,
    encode_status,
)
from patrol_protocol.frames import (
    FLAG_CLOCK_UNSYNCED,
    TAG_NTAG21X,
    TAG_NTAG424_SUN,
    BleVisit,
    Boot,
    ClockJump,
    CmdResult,
    EquipmentNear,
    Eviction,
    Heartbeat,
    Kind,
    NfcScan,
    Sos,
    encode_body,
    encode_frame,
    kind_of,
)

HERE = Path(__file__).resolve().parent

DEVICE_KEY = bytes(range(32))
OTHER_DEVICE_KEY = bytes(range(32, 64))
BEACON_KEY = bytes(range(16))
EQUIPMENT_KEY = bytes(range(16, 32))
PRESENCE_KEY = bytes(range(32, 48))
OTHER_ADV_KEY = bytes(range(48, 64))

DEV_COMPANY = 0xFFFF
ESPRESSIF_COMPANY = 0x02E5
DEVICE = 0x0000A001
T0 = 1_795_579_200  # 2026-11-25T04:00:00Z

# AN12196 worked example (both SDM keys all-zero): a real SUN message.
AN12196_UID = bytes.fromhex("04de5f1eacc040")
AN12196_PICC_ENC = bytes.fromhex("ef963ff7828658a599f3041510671e88")
AN12196_SDMMAC = bytes.fromhex("94eed9ee65337086")

BEACON_PAYLOAD = encode_beacon_payload(
    key_id=1,
    beacon_id=0x000005B7,
    step=T0 // 10,
    tx_power_dbm=-59,
    battery_pct=93,
    company_id=DEV_COMPANY,
    key=BEACON_KEY,
)


def _hex(data: bytes) -> str:
    return data.hex()


# --- event frames ---------------------------------------------------------------


def _body_json(body: Any) -> dict[str, Any]:
    if isinstance(body, NfcScan):
        return {
            "tag_type": body.tag_type,
            "uid_hex": _hex(body.uid),
            "picc_enc_hex": None if body.picc_enc is None else _hex(body.picc_enc),
            "sdmmac_hex": None if body.sdmmac is None else _hex(body.sdmmac),
        }
    if isinstance(body, BleVisit):
        return {
            "rssi_dbm": body.rssi_dbm,
            "dwell_s": body.dwell_s,
            "company_id": body.company_id,
            "adv_hex": _hex(body.adv),
        }
    if isinstance(body, Heartbeat):
        return {
            "battery_pct": body.battery_pct,
            "battery_mv": body.battery_mv,
            "status": body.status,
            "queue_depth": body.queue_depth,
            "items": [
                {"tag_id": i.tag_id, "rssi_dbm": i.rssi_dbm, "battery_pct": i.battery_pct}
                for i in body.items
            ],
        }
    if isinstance(body, Sos):
        return {"trigger": body.trigger}
    if isinstance(body, Eviction):
        return {"first_seq": body.first_seq, "last_seq": body.last_seq, "reason": body.reason}
    if isinstance(body, Boot):
        return {
            "fw_major": body.fw_major,
            "fw_minor": body.fw_minor,
            "fw_patch": body.fw_patch,
            "reset_cause": body.reset_cause,
        }
    if isinstance(body, CmdResult):
        return {"cmd_seq": body.cmd_seq, "result": body.result}
    assert isinstance(body, ClockJump)
    return {
        "cmd_seq": body.cmd_seq,
        "before_s": body.before_s,
        "before_ms": body.before_ms,
        "after_s": body.after_s,
        "after_ms": body.after_ms,
    }


def _frame_vector(
    name: str,
    body: Any,
    *,
    seq: int,
    time_s: int = T0,
    time_ms: int = 0,
    flags: int = 0,
    key_id: int = 1,
    device_id: int = DEVICE,
    key: bytes = DEVICE_KEY,
) -> dict[str, Any]:
    kind = int(kind_of(body))
    body_bytes = encode_body(body)
    header = {
        "kind": kind,
        "key_id": key_id,
        "flags": flags,
        "device_id": device_id,
        "seq": seq,
        "time_s": time_s,
        "time_ms": time_ms,
    }
    frame = encode_frame(**header, body=body_bytes, key=key)
    return {
        "name": name,
        "key": _hex(key),
        "header": header,
        "body": _body_json(body),
        "body_hex": _hex(body_bytes),
        "frame_hex": _hex(frame),
    }


def frame_vectors() -> list[dict[str, Any]]:
    """At least one vector per kind, both tag types, and edge values."""
    items3 = (
        EquipmentNear(tag_id=0x0000E001, rssi_dbm=-48, battery_pct=100),
        EquipmentNear(tag_id=0x0000E002, rssi_dbm=-91, battery_pct=7),
        EquipmentNear(tag_id=0xFFFFFFFF, rssi_dbm=-128, battery_pct=0),
    )
    items16 = tuple(
        EquipmentNear(tag_id=0x0000E100 + i, rssi_dbm=-40 - i, battery_pct=50 + i)
        for i in range(16)
    )
    return [
        _frame_vector(
            "nfc_scan_ntag424_sun_an12196",
            NfcScan(TAG_NTAG424_SUN, AN12196_UID, AN12196_PICC_ENC, AN12196_SDMMAC),
            seq=1,
            time_ms=125,
        ),
        _frame_vector(
            "nfc_scan_ntag21x_uid7",
            NfcScan(TAG_NTAG21X, bytes.fromhex("04a1b2c3d4e5f6")),
            seq=2,
            time_s=T0 + 61,
            time_ms=999,
        ),
        _frame_vector(
            "nfc_scan_ntag21x_uid4_clock_unsynced",
            NfcScan(TAG_NTAG21X, bytes.fromhex("08123456")),
            seq=3,
            time_s=17,
            time_ms=250,
            flags=FLAG_CLOCK_UNSYNCED,
        ),
        _frame_vector(
            "nfc_scan_ntag21x_uid10",
            NfcScan(TAG_NTAG21X, bytes.fromhex("04112233445566778899")),
            seq=4,
            time_s=T0 + 120,
        ),
        _frame_vector(
            "ble_visit_beacon_dev_company",
            BleVisit(rssi_dbm=-67, dwell_s=45, company_id=DEV_COMPANY, adv=BEACON_PAYLOAD),
            seq=5,
            time_s=T0 + 180,
            time_ms=500,
        ),
        _frame_vector(
            "ble_visit_edge_values_empty_adv",
            BleVisit(rssi_dbm=-128, dwell_s=0xFFFF, company_id=ESPRESSIF_COMPANY, adv=b""),
            seq=6,
            time_s=T0 + 240,
        ),
        _frame_vector(
            "heartbeat_no_items",
            Heartbeat(battery_pct=100, battery_mv=4180, status=0x01, queue_depth=0),
            seq=7,
            time_s=T0 + 300,
        ),
        _frame_vector(
            "heartbeat_three_items",
            Heartbeat(battery_pct=12, battery_mv=3420, status=0x06, queue_depth=513, items=items3),
            seq=8,
            time_s=T0 + 360,
            time_ms=1,
        ),
        _frame_vector(
            "heartbeat_sixteen_items_max",
            Heartbeat(
                battery_pct=0, battery_mv=0xFFFF, status=0x07, queue_depth=0xFFFF, items=items16
            ),
            seq=9,
            time_s=T0 + 420,
        ),
        _frame_vector("sos_button", Sos(trigger=1), seq=10, time_s=T0 + 481, time_ms=42),
        _frame_vector("sos_man_down", Sos(trigger=2), seq=11, time_s=T0 + 482),
        _frame_vector("sos_test", Sos(trigger=3), seq=12, time_s=T0 + 483),
        _frame_vector(
            "eviction_flash_full",
            Eviction(first_seq=100, last_seq=199, reason=1),
            seq=200,
            time_s=T0 + 600,
        ),
        _frame_vector(
            "eviction_single_seq",
            Eviction(first_seq=0xFFFFFFFE, last_seq=0xFFFFFFFE, reason=1),
            seq=0xFFFFFFFF,
            time_s=T0 + 601,
        ),
        _frame_vector(
            "boot_watchdog",
            Boot(fw_major=1, fw_minor=2, fw_patch=3, reset_cause=1),
            seq=13,
            time_s=3,
            flags=FLAG_CLOCK_UNSYNCED,
        ),
        _frame_vector(
            "boot_power_on_fw_255",
            Boot(fw_major=255, fw_minor=0, fw_patch=255, reset_cause=0),
            seq=14,
            time_s=0,
            flags=FLAG_CLOCK_UNSYNCED,
        ),
        _frame_vector(
            "cmd_result_applied", CmdResult(cmd_seq=7, result=0), seq=15, time_s=T0 + 700
        ),
        _frame_vector(
            "cmd_result_unsupported",
            CmdResult(cmd_seq=0xFFFFFFFF, result=4),
            seq=16,
            time_s=T0 + 701,
        ),
        _frame_vector(
            "clock_jump_first_sync",
            ClockJump(cmd_seq=1, before_s=17, before_ms=250, after_s=T0 + 5, after_ms=500),
            seq=17,
            time_s=T0 + 5,
            time_ms=500,
        ),
        _frame_vector(
            "clock_jump_backwards_edge_values",
            ClockJump(
                cmd_seq=0xFFFFFFFF, before_s=0xFFFFFFFF, before_ms=999, after_s=0, after_ms=0
            ),
            seq=18,
            time_s=0,
        ),
        _frame_vector(
            "edge_values_max_header",
            Sos(trigger=3),
            seq=0xFFFFFFFF,
            time_s=0xFFFFFFFF,
            time_ms=999,
            flags=FLAG_CLOCK_UNSYNCED,
            key_id=255,
            device_id=0xFFFFFFFF,
        ),
        _frame_vector(
            "edge_values_min_header",
            Sos(trigger=1),
            seq=1,
            time_s=0,
            time_ms=0,
            key_id=0,
            device_id=0,
        ),
    ]


# --- commands, acks, status -----------------------------------------------------


def _command_vector(
    name: str,
    kind: CommandKind,
    body_json: dict[str, Any],
    body: bytes,
    *,
    cmd_seq: int,
    issued_s: int = T0,
    valid_for_s: int = 300,
    key_id: int = 1,
    device_id: int = DEVICE,
) -> dict[str, Any]:
    header = {
        "kind": int(kind),
        "key_id": key_id,
        "device_id": device_id,
        "cmd_seq": cmd_seq,
        "issued_s": issued_s,
        "valid_for_s": valid_for_s,
    }
    frame = encode_command(**header, body=body, key=DEVICE_KEY)
    return {
        "name": name,
        "key": _hex(DEVICE_KEY),
        "header": header,
        "body": body_json,
        "body_hex": _hex(body),
        "frame_hex": _hex(frame),
    }


def _set_time(name: str, time_s: int, time_ms: int, **header: int) -> dict[str, Any]:
    body = encode_set_time(time_s, time_ms)
    return _command_vector(
        name, CommandKind.SET_TIME, {"time_s": time_s, "time_ms": time_ms}, body, **header
    )


def _set_config(name: str, entries: dict[int, int], **header: int) -> dict[str, Any]:
    body = encode_set_config(entries)
    body_json = {"entries": [{"key": k, "value": entries[k]} for k in sorted(entries)]}
    return _command_vector(name, CommandKind.SET_CONFIG, body_json, body, **header)


def _locate(name: str, duration_s: int, **header: int) -> dict[str, Any]:
    body = encode_locate(duration_s)
    return _command_vector(name, CommandKind.LOCATE, {"duration_s": duration_s}, body, **header)


def command_vectors() -> dict[str, Any]:
    """SET_TIME, SET_CONFIG (each key, edge values), LOCATE, acks and status frames."""
    commands = [
        _set_time("set_time", T0 + 5, 500, cmd_seq=1, issued_s=T0 + 5),
        _set_time(
            "set_time_edge_values", 0xFFFFFFFF, 999, cmd_seq=0xFFFFFFFF, issued_s=0, valid_for_s=0
        ),
        _set_config("set_config_heartbeat_interval", {1: 300}, cmd_seq=2),
        _set_config(
            "set_config_all_keys", {4: 120, 3: 30, 2: -70, 1: 60}, cmd_seq=3, valid_for_s=0xFFFF
        ),
        _set_config("set_config_edge_values", {2: -128, 4: 0xFFFF, 3: 0}, cmd_seq=4, key_id=255),
        _locate("locate_30_s", 30, cmd_seq=5, valid_for_s=60),
        _locate("locate_edge_values", 300, cmd_seq=6),
        _locate("locate_one_second", 1, cmd_seq=7),
    ]
    acks = [
        {"device_id": d, "acked_seq": s, "frame_hex": _hex(encode_ack(Ack(d, s)))}
        for d, s in ((DEVICE, 42), (DEVICE, 0), (0xFFFFFFFF, 0xFFFFFFFF))
    ]
    status = [
        {"device_id": d, "state": st, "frame_hex": _hex(encode_status(Status(d, st)))}
        for d, st in ((DEVICE, 1), (DEVICE, 0), (0, 1))
    ]
    return {"commands": commands, "acks": acks, "status": status}


# --- adverts --------------------------------------------------------------------


def _advert_vector(
    name: str, company_id: int, key: bytes, fields: dict[str, Any], payload: bytes
) -> dict[str, Any]:
    return {
        "name": name,
        "company_id": company_id,
        "key": _hex(key),
        "fields": {**fields, "mac_hex": _hex(payload[-8:])},
        "payload_hex": _hex(payload),
        "advertisement_hex": _hex(build_advertisement(company_id, payload)),
    }


def _beacon(name: str, company_id: int, **f: int) -> dict[str, Any]:
    payload = encode_beacon_payload(**f, company_id=company_id, key=BEACON_KEY)
    return _advert_vector(name, company_id, BEACON_KEY, {"type": 1, **f}, payload)


def _equipment(name: str, company_id: int, **f: int) -> dict[str, Any]:
    payload = encode_equipment_payload(**f, company_id=company_id, key=EQUIPMENT_KEY)
    return _advert_vector(name, company_id, EQUIPMENT_KEY, {"type": 2, **f}, payload)


def _presence(name: str, company_id: int, **f: int) -> dict[str, Any]:
    payload = encode_presence_payload(**f, company_id=company_id, key=PRESENCE_KEY)
    return _advert_vector(name, company_id, PRESENCE_KEY, {"type": 3, **f}, payload)


def advert_vectors() -> list[dict[str, Any]]:
    """All three payload types under the test company id and a real one (Espressif)."""
    return [
        _beacon(
            "beacon_dev_company",
            DEV_COMPANY,
            key_id=1,
            beacon_id=0x000005B7,
            step=T0 // 10,
            tx_power_dbm=-59,
            battery_pct=93,
        ),
        _beacon(
            "beacon_espressif_edge_values",
            ESPRESSIF_COMPANY,
            key_id=255,
            beacon_id=0xFFFFFFFF,
            step=0,
            tx_power_dbm=-128,
            battery_pct=0,
        ),
        _beacon(
            "beacon_positive_tx_power",
            DEV_COMPANY,
            key_id=0,
            beacon_id=1,
            step=0xFFFFFFFF,
            tx_power_dbm=127,
            battery_pct=100,
        ),
        _equipment(
            "equipment_dev_company",
            DEV_COMPANY,
            key_id=1,
            tag_id=0x0000E001,
            battery_pct=87,
            battery_mv=3980,
            flags=0x03,
            counter=1234,
        ),
        _equipment(
            "equipment_espressif_edge_values",
            ESPRESSIF_COMPANY,
            key_id=2,
            tag_id=0xFFFFFFFF,
            battery_pct=0,
            battery_mv=0xFFFF,
            flags=0x1F,
            counter=0xFFFFFFFF,
        ),
        _equipment(
            "equipment_full_battery_no_flags",
            DEV_COMPANY,
            key_id=1,
            tag_id=0x0000E002,
            battery_pct=100,
            battery_mv=0,
            flags=0,
            counter=0,
        ),
        _presence(
            "presence_dev_company",
            DEV_COMPANY,
            key_id=1,
            device_id=DEVICE,
            step=T0 // 10,
            battery_pct=64,
        ),
        _presence(
            "presence_espressif",
            ESPRESSIF_COMPANY,
            key_id=3,
            device_id=0x0000A002,
            step=1,
            battery_pct=100,
        ),
    ]


# --- invalid inputs -------------------------------------------------------------

_HEADER = struct.Struct(">BBBBIIIHH")


def _mac16(key: bytes, signed: bytes) -> bytes:
    return hmac.new(key, signed, hashlib.sha256).digest()[:16]


def _raw_frame(
    body: bytes,
    *,
    version: int = 1,
    kind: int = Kind.SOS,
    key_id: int = 1,
    flags: int = 0,
    device_id: int = DEVICE,
    seq: int = 1,
    time_s: int = T0,
    time_ms: int = 0,
    body_len: int | None = None,
    key: bytes = DEVICE_KEY,
) -> bytes:
    """Pack and sign any header/body, however wrong (the MAC is always correct)."""
    n = len(body) if body_len is None else body_len
    signed = _HEADER.pack(version, kind, key_id, flags, device_id, seq, time_s, time_ms, n) + body
    return signed + _mac16(key, signed)


def _case(name: str, raw: bytes, error: str, key: bytes | None = None) -> dict[str, Any]:
    case: dict[str, Any] = {"name": name, "hex": _hex(raw)}
    if key is not None:
        case["key"] = _hex(key)
    case["error"] = error
    return case


def _flip_last(raw: bytes) -> bytes:
    return raw[:-1] + bytes((raw[-1] ^ 0x01,))


def invalid_frames() -> list[dict[str, Any]]:
    """Event frames with exactly one defect each."""
    sos = bytes((1,))
    nfc21 = bytes((TAG_NTAG21X, 7)) + bytes.fromhex("04a1b2c3d4e5f6")
    nfc424 = bytes((TAG_NTAG424_SUN, 7)) + AN12196_UID + AN12196_PICC_ENC + AN12196_SDMMAC
    good = _raw_frame(sos)
    hb_fixed = struct.pack(">BHBHB", 80, 3900, 0, 0, 0)
    item = struct.pack(">IbB", 0x0000E001, -50, 90)

    def hb(n_items: int, items: int, battery_pct: int = 80, status: int = 0) -> bytes:
        return struct.pack(">BHBHB", battery_pct, 3900, status, 0, n_items) + item * items

    ble = struct.pack(">bHHB", -60, 30, DEV_COMPANY, len(BEACON_PAYLOAD)) + BEACON_PAYLOAD
    k = Kind
    return [
        _case("empty", b"", "truncated"),
        _case("version_only", b"\x01", "truncated"),
        _case("header_19_bytes", good[:19], "truncated"),
        _case("header_only_no_body_no_mac", good[:20], "truncated"),
        _case("mac_one_byte_short", good[:-1], "truncated"),
        _case("body_shorter_than_body_len", _raw_frame(sos, body_len=2), "truncated"),
        _case("oversized_257_bytes", good + bytes(257 - len(good)), "oversized"),
        _case(
            "body_len_193",
            _raw_frame(bytes(193), kind=k.HEARTBEAT),
            "oversized",
        ),
        _case("version_0", _raw_frame(sos, version=0), "bad_version"),
        _case("version_2", _raw_frame(sos, version=2), "bad_version"),
        _case("kind_0", _raw_frame(sos, kind=0x00), "unknown_kind"),
        _case("kind_9", _raw_frame(sos, kind=0x09), "unknown_kind"),
        _case("kind_ack_as_event", _raw_frame(sos, kind=0x81), "unknown_kind"),
        _case(
            "kind_set_time_as_event",
            _raw_frame(struct.pack(">IH", T0, 0), kind=0x90),
            "unknown_kind",
        ),
        _case("flags_reserved_bit1", _raw_frame(sos, flags=0x02), "malformed"),
        _case("flags_reserved_bit7", _raw_frame(sos, flags=0x81), "malformed"),
        _case("seq_0", _raw_frame(sos, seq=0), "malformed"),
        _case("time_ms_1000", _raw_frame(sos, time_ms=1000), "malformed"),
        _case("time_ms_65535", _raw_frame(sos, time_ms=0xFFFF), "malformed"),
        _case("trailing_byte_after_mac", good + b"\x00", "malformed"),
        # NFC_SCAN
        _case("nfc_tag_type_0", _raw_frame(b"\x00" + nfc21[1:], kind=k.NFC_SCAN), "malformed"),
        _case("nfc_tag_type_3", _raw_frame(b"\x03" + nfc21[1:], kind=k.NFC_SCAN), "malformed"),
        _case(
            "nfc_uid_len_5",
            _raw_frame(bytes((TAG_NTAG21X, 5)) + bytes(5), kind=k.NFC_SCAN),
            "malformed",
        ),
        _case(
            "nfc_uid_len_0",
            _raw_frame(bytes((TAG_NTAG21X, 0)), kind=k.NFC_SCAN),
            "malformed",
        ),
        _case("nfc_uid_shorter_than_uid_len", _raw_frame(nfc21[:-1], kind=k.NFC_SCAN), "malformed"),
        _case("nfc_body_1_byte", _raw_frame(nfc21[:1], kind=k.NFC_SCAN), "malformed"),
        _case("nfc_empty_body", _raw_frame(b"", kind=k.NFC_SCAN), "malformed"),
        _case("nfc_sun_missing_sdmmac", _raw_frame(nfc424[:-8], kind=k.NFC_SCAN), "malformed"),
        _case("nfc_sun_sdmmac_7_bytes", _raw_frame(nfc424[:-1], kind=k.NFC_SCAN), "malformed"),
        _case(
            "nfc_ntag21x_with_sun_fields",
            _raw_frame(bytes((TAG_NTAG21X,)) + nfc424[1:], kind=k.NFC_SCAN),
            "malformed",
        ),
        _case("nfc_trailing_body_byte", _raw_frame(nfc21 + b"\x00", kind=k.NFC_SCAN), "malformed"),
        # BLE_VISIT
        _case("ble_body_5_bytes", _raw_frame(ble[:5], kind=k.BLE_VISIT), "malformed"),
        _case("ble_adv_shorter_than_adv_len", _raw_frame(ble[:-1], kind=k.BLE_VISIT), "malformed"),
        _case(
            "ble_adv_longer_than_adv_len", _raw_frame(ble + b"\x00", kind=k.BLE_VISIT), "malformed"
        ),
        _case(
            "ble_adv_len_25",
            _raw_frame(
                struct.pack(">bHHB", -60, 30, DEV_COMPANY, 25) + bytes(25), kind=k.BLE_VISIT
            ),
            "malformed",
        ),
        # HEARTBEAT
        _case("heartbeat_7_bytes", _raw_frame(hb_fixed[:-1], kind=k.HEARTBEAT), "malformed"),
        _case(
            "heartbeat_battery_pct_101", _raw_frame(hb(0, 0, 101), kind=k.HEARTBEAT), "malformed"
        ),
        _case(
            "heartbeat_status_reserved_bit3",
            _raw_frame(hb(0, 0, status=0x08), kind=k.HEARTBEAT),
            "malformed",
        ),
        _case("heartbeat_n_items_17", _raw_frame(hb(17, 17), kind=k.HEARTBEAT), "malformed"),
        _case("heartbeat_n_items_2_one_item", _raw_frame(hb(2, 1), kind=k.HEARTBEAT), "malformed"),
        _case("heartbeat_n_items_0_one_item", _raw_frame(hb(0, 1), kind=k.HEARTBEAT), "malformed"),
        _case("heartbeat_item_cut", _raw_frame(hb(1, 1)[:-1], kind=k.HEARTBEAT), "malformed"),
        _case(
            "heartbeat_item_battery_pct_101",
            _raw_frame(hb(1, 0) + struct.pack(">IbB", 1, -50, 101), kind=k.HEARTBEAT),
            "malformed",
        ),
        # SOS
        _case("sos_empty_body", _raw_frame(b""), "malformed"),
        _case("sos_2_byte_body", _raw_frame(b"\x01\x00"), "malformed"),
        _case("sos_trigger_0", _raw_frame(b"\x00"), "malformed"),
        _case("sos_trigger_4", _raw_frame(b"\x04"), "malformed"),
        # EVICTION
        _case(
            "eviction_last_before_first",
            _raw_frame(struct.pack(">IIB", 10, 9, 1), kind=k.EVICTION),
            "malformed",
        ),
        _case(
            "eviction_first_seq_0",
            _raw_frame(struct.pack(">IIB", 0, 9, 1), kind=k.EVICTION),
            "malformed",
        ),
        _case(
            "eviction_reason_0",
            _raw_frame(struct.pack(">IIB", 1, 9, 0), kind=k.EVICTION),
            "malformed",
        ),
        _case(
            "eviction_8_bytes",
            _raw_frame(struct.pack(">II", 1, 9), kind=k.EVICTION),
            "malformed",
        ),
        # BOOT
        _case("boot_3_bytes", _raw_frame(b"\x01\x02\x03", kind=k.BOOT), "malformed"),
        _case("boot_reset_cause_4", _raw_frame(b"\x01\x02\x03\x04", kind=k.BOOT), "malformed"),
        # CMD_RESULT
        _case(
            "cmd_result_result_5",
            _raw_frame(struct.pack(">IB", 7, 5), kind=k.CMD_RESULT),
            "malformed",
        ),
        _case(
            "cmd_result_4_bytes",
            _raw_frame(struct.pack(">I", 7), kind=k.CMD_RESULT),
            "malformed",
        ),
        # CLOCK_JUMP
        _case(
            "clock_jump_cmd_seq_0",
            _raw_frame(struct.pack(">IIHIH", 0, 17, 0, T0, 0), kind=k.CLOCK_JUMP),
            "malformed",
        ),
        _case(
            "clock_jump_before_ms_1000",
            _raw_frame(struct.pack(">IIHIH", 1, 17, 1000, T0, 0), kind=k.CLOCK_JUMP),
            "malformed",
        ),
        _case(
            "clock_jump_after_ms_1000",
            _raw_frame(struct.pack(">IIHIH", 1, 17, 0, T0, 1000), kind=k.CLOCK_JUMP),
            "malformed",
        ),
        _case(
            "clock_jump_15_bytes",
            _raw_frame(struct.pack(">IIHIH", 1, 17, 0, T0, 0)[:-1], kind=k.CLOCK_JUMP),
            "malformed",
        ),
        # MAC
        _case("mac_bit_flipped", _flip_last(good), "bad_mac", DEVICE_KEY),
        _case(
            "signed_with_other_key", _raw_frame(sos, key=OTHER_DEVICE_KEY), "bad_mac", DEVICE_KEY
        ),
        _case(
            "seq_changed_after_signing",
            good[:11] + b"\x02" + good[12:],
            "bad_mac",
            DEVICE_KEY,
        ),
        _case(
            "nfc_sun_valid_structure_wrong_key",
            _raw_frame(nfc424, kind=k.NFC_SCAN, key=OTHER_DEVICE_KEY),
            "bad_mac",
            DEVICE_KEY,
        ),
    ]


def _raw_command(
    body: bytes,
    *,
    version: int = 1,
    kind: int = CommandKind.SET_TIME,
    key_id: int = 1,
    flags: int = 0,
    device_id: int = DEVICE,
    cmd_seq: int = 1,
    issued_s: int = T0,
    valid_for_s: int = 300,
    body_len: int | None = None,
    key: bytes = DEVICE_KEY,
) -> bytes:
    n = len(body) if body_len is None else body_len
    signed = (
        _HEADER.pack(version, kind, key_id, flags, device_id, cmd_seq, issued_s, valid_for_s, n)
        + body
    )
    return signed + _mac16(key, signed)


def invalid_commands() -> list[dict[str, Any]]:
    """Command frames with exactly one defect each."""
    st = struct.pack(">IH", T0, 0)
    good = _raw_command(st)
    cfg = CommandKind.SET_CONFIG
    return [
        _case("empty", b"", "truncated"),
        _case("header_19_bytes", good[:19], "truncated"),
        _case("mac_one_byte_short", good[:-1], "truncated"),
        _case("oversized_257_bytes", good + bytes(257 - len(good)), "oversized"),
        _case("body_len_193", _raw_command(bytes(193), kind=cfg), "oversized"),
        _case("version_0", _raw_command(st, version=0), "bad_version"),
        _case("version_2", _raw_command(st, version=2), "bad_version"),
        _case("event_kind_sos_as_command", _raw_command(b"\x01", kind=Kind.SOS), "unknown_kind"),
        _case("kind_0x93", _raw_command(st, kind=0x93), "unknown_kind"),
        _case("kind_ack", _raw_command(st, kind=0x81), "unknown_kind"),
        _case("flags_1", _raw_command(st, flags=0x01), "malformed"),
        _case("cmd_seq_0", _raw_command(st, cmd_seq=0), "malformed"),
        _case("trailing_byte_after_mac", good + b"\x00", "malformed"),
        _case("set_time_5_byte_body", _raw_command(st[:5]), "malformed"),
        _case("set_time_7_byte_body", _raw_command(st + b"\x00"), "malformed"),
        _case("set_time_time_ms_1000", _raw_command(struct.pack(">IH", T0, 1000)), "malformed"),
        _case("set_config_empty", _raw_command(b"", kind=cfg), "malformed"),
        _case("set_config_unknown_key_9", _raw_command(b"\x09\x02\x00\x3c", kind=cfg), "malformed"),
        _case("set_config_key_0", _raw_command(b"\x00\x02\x00\x3c", kind=cfg), "malformed"),
        _case("set_config_wrong_len", _raw_command(b"\x01\x01\x3c", kind=cfg), "malformed"),
        _case("set_config_rssi_len_2", _raw_command(b"\x02\x02\xff\xba", kind=cfg), "malformed"),
        _case("set_config_value_cut", _raw_command(b"\x01\x02\x00", kind=cfg), "malformed"),
        _case(
            "set_config_missing_len", _raw_command(b"\x01\x02\x00\x3c\x03", kind=cfg), "malformed"
        ),
        _case(
            "set_config_repeated_key",
            _raw_command(b"\x01\x02\x00\x3c\x01\x02\x00\x78", kind=cfg),
            "malformed",
        ),
        _case("locate_duration_0", _raw_command(b"\x00\x00", kind=0x92), "malformed"),
        _case("locate_duration_301", _raw_command(b"\x01\x2d", kind=0x92), "malformed"),
        _case("locate_1_byte_body", _raw_command(b"\x1e", kind=0x92), "malformed"),
        _case("locate_3_byte_body", _raw_command(b"\x00\x1e\x00", kind=0x92), "malformed"),
        _case("mac_bit_flipped", _flip_last(good), "bad_mac", DEVICE_KEY),
        _case(
            "signed_with_other_key", _raw_command(st, key=OTHER_DEVICE_KEY), "bad_mac", DEVICE_KEY
        ),
        _case(
            "cmd_seq_changed_after_signing", good[:11] + b"\x02" + good[12:], "bad_mac", DEVICE_KEY
        ),
    ]


def invalid_acks() -> list[dict[str, Any]]:
    """Ack frames with exactly one defect each."""
    good = struct.pack(">BBHII", 1, 0x81, 0, DEVICE, 42)
    return [
        _case("empty", b"", "truncated"),
        _case("11_bytes", good[:-1], "truncated"),
        _case("13_bytes", good + b"\x00", "malformed"),
        _case("oversized_257_bytes", good + bytes(257 - len(good)), "oversized"),
        _case("version_2", b"\x02" + good[1:], "bad_version"),
        _case("kind_0x80", good[:1] + b"\x80" + good[2:], "unknown_kind"),
        _case("kind_status_like_0x01", good[:1] + b"\x01" + good[2:], "unknown_kind"),
        _case("reserved_nonzero", good[:2] + b"\x00\x01" + good[4:], "malformed"),
    ]


def invalid_status() -> list[dict[str, Any]]:
    """Status frames with exactly one defect each."""
    good = struct.pack(">BBI", 1, 1, DEVICE)
    return [
        _case("empty", b"", "truncated"),
        _case("5_bytes", good[:-1], "truncated"),
        _case("7_bytes", good + b"\x00", "malformed"),
        _case("version_0", b"\x00" + good[1:], "bad_version"),
        _case("state_2", good[:1] + b"\x02" + good[2:], "malformed"),
    ]


def _adv_case(
    name: str,
    payload: bytes,
    error: str,
    key: bytes | None = None,
    company_id: int = DEV_COMPANY,
) -> dict[str, Any]:
    case: dict[str, Any] = {"name": name, "hex": _hex(payload), "company_id": company_id}
    if key is not None:
        case["key"] = _hex(key)
    case["error"] = error
    return case


def _raw_advert(unsigned: bytes, key: bytes = BEACON_KEY, company_id: int = DEV_COMPANY) -> bytes:
    mac = hmac.new(key, company_id.to_bytes(2, "little") + unsigned, hashlib.sha256).digest()
    return unsigned + mac[:8]


def invalid_adverts() -> list[dict[str, Any]]:
    """Advert payloads with exactly one defect each."""
    beacon = BEACON_PAYLOAD
    equip = struct.pack(">BBBIBHBI", 1, 2, 1, 0x0000E001, 87, 3980, 0x03, 1234)
    presence = struct.pack(">BBBIIB", 1, 3, 1, DEVICE, T0 // 10, 64)
    return [
        _adv_case("empty", b"", "truncated"),
        _adv_case("version_only", b"\x01", "truncated"),
        _adv_case("beacon_20_bytes", beacon[:-1], "truncated"),
        _adv_case("beacon_22_bytes", beacon + b"\x00", "malformed"),
        _adv_case("oversized_25_bytes", beacon + bytes(4), "oversized"),
        _adv_case(
            "beacon_battery_pct_101",
            _raw_advert(beacon[:12] + b"\x65"),
            "malformed",
        ),
        _adv_case("version_0", b"\x00" + beacon[1:], "bad_version"),
        _adv_case("version_2", b"\x02" + beacon[1:], "bad_version"),
        _adv_case("type_0", _raw_advert(b"\x01\x00" + beacon[2:-8]), "unknown_kind"),
        _adv_case("type_4", _raw_advert(b"\x01\x04" + beacon[2:-8]), "unknown_kind"),
        _adv_case(
            "equipment_battery_pct_101",
            _raw_advert(equip[:7] + b"\x65" + equip[8:], EQUIPMENT_KEY),
            "malformed",
        ),
        _adv_case(
            "equipment_flags_reserved_bit5",
            _raw_advert(equip[:10] + b"\x20" + equip[11:], EQUIPMENT_KEY),
            "malformed",
        ),
        _adv_case("equipment_22_bytes", _raw_advert(equip, EQUIPMENT_KEY)[:-1], "truncated"),
        _adv_case(
            "presence_battery_pct_255",
            _raw_advert(presence[:-1] + b"\xff", PRESENCE_KEY),
            "malformed",
        ),
        _adv_case("beacon_mac_bit_flipped", _flip_last(beacon), "bad_mac", BEACON_KEY),
        _adv_case(
            "beacon_signed_with_other_key",
            _raw_advert(beacon[:-8], OTHER_ADV_KEY),
            "bad_mac",
            BEACON_KEY,
        ),
        _adv_case(
            "beacon_verified_under_other_company",
            beacon,
            "bad_mac",
            BEACON_KEY,
            company_id=ESPRESSIF_COMPANY,
        ),
        _adv_case(
            "equipment_counter_changed_after_signing",
            _raw_advert(equip, EQUIPMENT_KEY)[:12]
            + b"\xd3"
            + _raw_advert(equip, EQUIPMENT_KEY)[13:],
            "bad_mac",
            EQUIPMENT_KEY,
        ),
    ]


# --- files ----------------------------------------------------------------------


def render() -> dict[str, str]:
    """File name -> exact file text (2-space indented JSON, trailing newline)."""
    documents: dict[str, Any] = {
        "frames.json": {"vectors": frame_vectors()},
        "commands.json": command_vectors(),
        "adverts.json": {"vectors": advert_vectors()},
        "invalid.json": {
            "frames": invalid_frames(),
            "commands": invalid_commands(),
            "acks": invalid_acks(),
            "status": invalid_status(),
            "adverts": invalid_adverts(),
        },
    }
    return {name: json.dumps(doc, indent=2) + "\n" for name, doc in documents.items()}


def main() -> int:
    """Write every generated file; ``--check`` only reports files that would change."""
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in render().items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
