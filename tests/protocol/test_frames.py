"""Event frames: project vectors, the byte layout by hand, invalid inputs, encoder checks."""

import hashlib
import hmac
import struct

import pytest

from patrol_protocol.errors import (
    MalformedError,
    OversizedError,
    ProtocolError,
    SignatureError,
    UnknownKindError,
    VersionError,
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
    EventFrame,
    Eviction,
    FrameHeader,
    Heartbeat,
    Kind,
    NfcScan,
    Sos,
    decode_body,
    decode_frame,
    encode_body,
    encode_frame,
    kind_of,
    verify_frame,
)

from .vectors import load

FRAMES = load("frames.json")["vectors"]
INVALID = load("invalid.json")["frames"]
KEY = bytes(range(32))


def _expected_body(kind: int, fields: dict) -> object:
    """Build the body dataclass from the vector's JSON fields (the reader's view)."""
    h = bytes.fromhex
    if kind == Kind.NFC_SCAN:
        return NfcScan(
            fields["tag_type"],
            h(fields["uid_hex"]),
            None if fields["picc_enc_hex"] is None else h(fields["picc_enc_hex"]),
            None if fields["sdmmac_hex"] is None else h(fields["sdmmac_hex"]),
        )
    if kind == Kind.BLE_VISIT:
        return BleVisit(
            fields["rssi_dbm"], fields["dwell_s"], fields["company_id"], h(fields["adv_hex"])
        )
    if kind == Kind.HEARTBEAT:
        items = tuple(
            EquipmentNear(i["tag_id"], i["rssi_dbm"], i["battery_pct"]) for i in fields["items"]
        )
        return Heartbeat(
            fields["battery_pct"],
            fields["battery_mv"],
            fields["status"],
            fields["queue_depth"],
            items,
        )
    if kind == Kind.SOS:
        return Sos(fields["trigger"])
    if kind == Kind.EVICTION:
        return Eviction(fields["first_seq"], fields["last_seq"], fields["reason"])
    if kind == Kind.BOOT:
        return Boot(
            fields["fw_major"], fields["fw_minor"], fields["fw_patch"], fields["reset_cause"]
        )
    if kind == Kind.CMD_RESULT:
        return CmdResult(fields["cmd_seq"], fields["result"])
    return ClockJump(
        fields["cmd_seq"],
        fields["before_s"],
        fields["before_ms"],
        fields["after_s"],
        fields["after_ms"],
    )


@pytest.mark.parametrize("case", FRAMES, ids=lambda c: c["name"])
def test_vector_decodes_to_exact_fields(case):
    raw = bytes.fromhex(case["frame_hex"])
    frame = decode_frame(raw)
    assert frame.header == FrameHeader(version=1, **case["header"])
    assert frame.body == bytes.fromhex(case["body_hex"])
    assert frame.raw == raw
    assert frame.signed_part + frame.mac == raw
    verify_frame(frame, bytes.fromhex(case["key"]))
    body = decode_body(frame.header.kind, frame.body)
    assert body == _expected_body(case["header"]["kind"], case["body"])
    assert kind_of(body) == case["header"]["kind"]


@pytest.mark.parametrize("case", FRAMES, ids=lambda c: c["name"])
def test_vector_reencodes_to_exact_bytes(case):
    body = _expected_body(case["header"]["kind"], case["body"])
    assert encode_body(body).hex() == case["body_hex"]
    raw = encode_frame(**case["header"], body=encode_body(body), key=bytes.fromhex(case["key"]))
    assert raw.hex() == case["frame_hex"]


def test_vectors_cover_every_kind_and_both_tag_types():
    kinds = {c["header"]["kind"] for c in FRAMES}
    assert kinds == {int(k) for k in Kind}
    tag_types = {c["body"]["tag_type"] for c in FRAMES if c["header"]["kind"] == Kind.NFC_SCAN}
    assert tag_types == {TAG_NTAG424_SUN, TAG_NTAG21X}
    n_items = {len(c["body"]["items"]) for c in FRAMES if c["header"]["kind"] == Kind.HEARTBEAT}
    assert {0, 16} <= n_items and len(n_items) >= 3
    assert any(c["header"]["seq"] == 0xFFFFFFFF for c in FRAMES)
    assert any(c["header"]["flags"] == FLAG_CLOCK_UNSYNCED for c in FRAMES)


def test_layout_by_hand_sos_frame():
    """Spell out docs/protocol.md's table for one frame, independently of the encoder."""
    case = next(c for c in FRAMES if c["name"] == "sos_button")
    signed = (
        bytes([1, 0x04, 1, 0])  # version, kind SOS, key_id, flags
        + (0x0000A001).to_bytes(4, "big")
        + (10).to_bytes(4, "big")  # seq
        + (1_795_579_200 + 481).to_bytes(4, "big")
        + (42).to_bytes(2, "big")  # time_ms
        + (1).to_bytes(2, "big")  # body_len
        + bytes([1])  # trigger = button
    )
    mac = hmac.new(KEY, signed, hashlib.sha256).digest()[:16]
    assert (signed + mac).hex() == case["frame_hex"]


def test_layout_by_hand_sun_body():
    case = next(c for c in FRAMES if c["name"] == "nfc_scan_ntag424_sun_an12196")
    body = (
        bytes([1, 7])
        + bytes.fromhex("04de5f1eacc040")
        + bytes.fromhex("ef963ff7828658a599f3041510671e88")
        + bytes.fromhex("94eed9ee65337086")
    )
    assert body.hex() == case["body_hex"]


def test_layout_by_hand_heartbeat_negative_rssi():
    case = next(c for c in FRAMES if c["name"] == "heartbeat_three_items")
    body = struct.pack(">BHBHB", 12, 3420, 0x06, 513, 3) + b"".join(
        struct.pack(">IbB", t, r, b)
        for t, r, b in ((0x0000E001, -48, 100), (0x0000E002, -91, 7), (0xFFFFFFFF, -128, 0))
    )
    assert body.hex() == case["body_hex"]
    assert bytes.fromhex(case["body_hex"])[-2] == 0x80  # -128 as i8


def _check(case):
    frame = decode_frame(bytes.fromhex(case["hex"]))
    decode_body(frame.header.kind, frame.body)
    if "key" in case:
        verify_frame(frame, bytes.fromhex(case["key"]))


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["name"])
def test_invalid_frame_raises_its_reason(case):
    with pytest.raises(ProtocolError) as err:
        _check(case)
    assert err.value.reason == case["error"], str(err.value)
    assert str(err.value)  # a message naming the field, never empty


def test_invalid_cases_name_the_field():
    by_name = {c["name"]: c for c in INVALID}
    expectations = {
        "seq_0": "seq=0",
        "time_ms_1000": "time_ms=1000",
        "flags_reserved_bit1": "flags=0x02",
        "nfc_uid_len_5": "uid_len=5",
        "heartbeat_n_items_17": "n_items=17",
        "ble_adv_len_25": "adv_len=25",
        "kind_9": "kind=0x09",
        "clock_jump_before_ms_1000": "before_ms=1000",
        "version_2": "version=2",
        "trailing_byte_after_mac": "trailing",
        "body_len_193": "body_len=193",
        "eviction_last_before_first": "last_seq=9 < first_seq=10",
    }
    for name, text in expectations.items():
        with pytest.raises(ProtocolError, match=text):
            _check(by_name[name])


def test_invalid_frames_cover_every_reason():
    assert {c["error"] for c in INVALID} == {
        "truncated",
        "oversized",
        "bad_version",
        "malformed",
        "unknown_kind",
        "bad_mac",
    }


def test_idempotency_key_and_flags():
    case = next(c for c in FRAMES if c["name"] == "nfc_scan_ntag21x_uid4_clock_unsynced")
    frame = decode_frame(bytes.fromhex(case["frame_hex"]))
    assert frame.idempotency_key == "0000a001:3"
    assert frame.header.clock_unsynced
    edge = next(c for c in FRAMES if c["name"] == "edge_values_max_header")
    assert decode_frame(bytes.fromhex(edge["frame_hex"])).idempotency_key == "ffffffff:4294967295"


def test_wrong_key_is_bad_mac():
    frame = decode_frame(bytes.fromhex(FRAMES[0]["frame_hex"]))
    with pytest.raises(SignatureError, match="mac does not verify"):
        verify_frame(frame, bytes(32))


def test_decode_accepts_bytearray_and_memoryview():
    raw = bytes.fromhex(FRAMES[0]["frame_hex"])
    assert decode_frame(bytearray(raw)).raw == raw
    assert decode_frame(memoryview(raw)).raw == raw


_GOOD = {
    "kind": Kind.SOS,
    "key_id": 1,
    "flags": 0,
    "device_id": 0x0000A001,
    "seq": 1,
    "time_s": 0,
    "time_ms": 0,
    "body": b"\x01",
    "key": KEY,
}


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"kind": 0}, UnknownKindError, "kind=0x00"),
        ({"kind": 0x90}, UnknownKindError, "kind=0x90"),
        ({"key_id": 256}, MalformedError, "key_id=256"),
        ({"flags": 0x02}, MalformedError, "flags=0x02"),
        ({"device_id": -1}, MalformedError, "device_id=-1"),
        ({"device_id": 1 << 32}, MalformedError, "device_id=4294967296"),
        ({"seq": 0}, MalformedError, "seq=0"),
        ({"seq": 1 << 32}, MalformedError, "seq=4294967296"),
        ({"time_s": -1}, MalformedError, "time_s=-1"),
        ({"time_ms": 1000}, MalformedError, "time_ms=1000"),
        ({"body": b"\x00"}, MalformedError, "trigger=0"),
        ({"body": b"\x01\x01"}, MalformedError, "SOS body must be 1 bytes"),
        ({"kind": Kind.HEARTBEAT, "body": bytes(193)}, OversizedError, "193 bytes"),
        ({"key": bytes(16)}, MalformedError, "key must be 32 bytes"),
        ({"seq": True}, MalformedError, "seq must be an int"),
    ],
)
def test_encode_frame_refuses_what_decoder_would(change, error, match):
    with pytest.raises(error, match=match):
        encode_frame(**{**_GOOD, **change})


def test_version_error_from_header():
    with pytest.raises(VersionError):
        FrameHeader(2, 1, 0, 0, 0, 1, 0, 0)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: NfcScan(3, bytes(7)), "tag_type=3"),
        (lambda: NfcScan(TAG_NTAG21X, bytes(5)), "uid must be 4, 7 or 10 bytes"),
        (lambda: NfcScan(TAG_NTAG424_SUN, bytes(7)), "picc_enc must be bytes"),
        (lambda: NfcScan(TAG_NTAG424_SUN, bytes(7), bytes(16), bytes(7)), "sdmmac must be 8"),
        (lambda: NfcScan(TAG_NTAG21X, bytes(7), bytes(16), bytes(8)), "only exist for tag_type 1"),
        (lambda: BleVisit(-129, 0, 0, b""), "rssi_dbm=-129"),
        (lambda: BleVisit(0, 1 << 16, 0, b""), "dwell_s=65536"),
        (lambda: BleVisit(0, 0, 0x10000, b""), "company_id=65536"),
        (lambda: BleVisit(0, 0, 0, bytes(25)), "adv_len=25"),
        (lambda: EquipmentNear(0, 128, 0), "rssi_dbm=128"),
        (lambda: EquipmentNear(0, 0, 101), "battery_pct=101"),
        (lambda: Heartbeat(101, 0, 0, 0), "battery_pct=101"),
        (lambda: Heartbeat(0, 0, 0x08, 0), "status=0x08"),
        (lambda: Heartbeat(0, 0, 0, 1 << 16), "queue_depth=65536"),
        (lambda: Heartbeat(0, 0, 0, 0, (EquipmentNear(0, 0, 0),) * 17), "n_items=17"),
        (lambda: Sos(0), "trigger=0"),
        (lambda: Eviction(0, 1, 1), "first_seq=0"),
        (lambda: Eviction(5, 4, 1), "last_seq=4 < first_seq=5"),
        (lambda: Eviction(1, 1, 2), "reason=2"),
        (lambda: Boot(256, 0, 0, 0), "fw_major=256"),
        (lambda: Boot(0, 0, 0, 4), "reset_cause=4"),
        (lambda: CmdResult(0, 5), "result=5"),
        (lambda: CmdResult(-1, 0), "cmd_seq=-1"),
    ],
)
def test_bodies_validate_at_construction(factory, match):
    with pytest.raises(MalformedError, match=match):
        factory()


def test_heartbeat_items_become_a_tuple():
    items = [EquipmentNear(1, -50, 90)]
    hb = Heartbeat(50, 3900, 0, 0, items)  # type: ignore[arg-type]
    assert hb.items == (EquipmentNear(1, -50, 90),)


def test_decode_body_unknown_kind():
    with pytest.raises(UnknownKindError):
        decode_body(0x09, b"")
    with pytest.raises(OversizedError):
        decode_body(Kind.HEARTBEAT, bytes(193))


def test_bodies_are_frozen():
    body = Sos(1)
    with pytest.raises(AttributeError):
        body.trigger = 2  # type: ignore[misc]


def test_event_frame_parts_must_agree_with_raw():
    frame = decode_frame(bytes.fromhex(FRAMES[0]["frame_hex"]))
    with pytest.raises(MalformedError, match="raw must be"):
        EventFrame(header=frame.header, body=frame.body[:-1], mac=frame.mac, raw=frame.raw)
    with pytest.raises(MalformedError, match="mac must be 16 bytes"):
        EventFrame(header=frame.header, body=frame.body, mac=frame.mac[:8], raw=frame.raw)
    assert EventFrame(frame.header, frame.body, frame.mac, frame.raw) == frame


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (bytes([2]) * 300, "oversized"),  # size limit before version
        (bytes([2, 1]), "bad_version"),  # version before header length
        (bytes([1, 1]), "truncated"),
        (bytes([1, 0x09, 0, 0x02]) + bytes(16), "unknown_kind"),  # kind before flags
        (bytes([1, 0x04, 0, 0x02]) + bytes(16), "malformed"),  # flags (and seq 0)
        # header fields before body_len: seq 0 with a body_len of 0xffff
        (bytes([1, 0x04, 0, 0]) + bytes(12) + b"\x00\x00\xff\xff", "malformed"),
        # body_len limit before total length
        (bytes([1, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]) + bytes(6) + b"\x00\xc1", "oversized"),
    ],
)
def test_documented_check_order(raw, reason):
    with pytest.raises(ProtocolError) as err:
        decode_frame(raw)
    assert err.value.reason == reason
