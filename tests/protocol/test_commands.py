"""Command frames, acks and status frames: vectors, invalid inputs, encoder checks."""

import hashlib
import hmac

import pytest

from patrol_protocol.commands import (
    ACK_KIND,
    Ack,
    CommandKind,
    ConfigKey,
    Locate,
    SetTime,
    Status,
    decode_ack,
    decode_command,
    decode_locate,
    decode_set_config,
    decode_set_time,
    decode_status,
    encode_ack,
    encode_command,
    encode_locate,
    encode_set_config,
    encode_set_time,
    encode_status,
    verify_command,
)
from patrol_protocol.errors import (
    MalformedError,
    OversizedError,
    ProtocolError,
    SignatureError,
    UnknownKindError,
)

from .vectors import load

VECTORS = load("commands.json")
INVALID = load("invalid.json")
KEY = bytes(range(32))


def _body(case) -> bytes:
    if case["header"]["kind"] == CommandKind.SET_TIME:
        return encode_set_time(case["body"]["time_s"], case["body"]["time_ms"])
    if case["header"]["kind"] == CommandKind.LOCATE:
        return encode_locate(case["body"]["duration_s"])
    return encode_set_config({e["key"]: e["value"] for e in case["body"]["entries"]})


@pytest.mark.parametrize("case", VECTORS["commands"], ids=lambda c: c["name"])
def test_command_vector_decodes_to_exact_fields(case):
    raw = bytes.fromhex(case["frame_hex"])
    cmd = decode_command(raw)
    for field, value in case["header"].items():
        assert getattr(cmd, field) == value, field
    assert cmd.body.hex() == case["body_hex"]
    assert cmd.raw == raw
    assert cmd.expires_s == case["header"]["issued_s"] + case["header"]["valid_for_s"]
    verify_command(cmd, bytes.fromhex(case["key"]))
    if cmd.kind == CommandKind.SET_TIME:
        assert decode_set_time(cmd.body) == SetTime(**case["body"])
    elif cmd.kind == CommandKind.LOCATE:
        assert decode_locate(cmd.body) == Locate(**case["body"])
    else:
        entries = {e["key"]: e["value"] for e in case["body"]["entries"]}
        assert decode_set_config(cmd.body) == entries


@pytest.mark.parametrize("case", VECTORS["commands"], ids=lambda c: c["name"])
def test_command_vector_reencodes_to_exact_bytes(case):
    body = _body(case)
    assert body.hex() == case["body_hex"]
    raw = encode_command(**case["header"], body=body, key=bytes.fromhex(case["key"]))
    assert raw.hex() == case["frame_hex"]


def test_set_time_layout_by_hand():
    case = next(c for c in VECTORS["commands"] if c["name"] == "set_time")
    signed = (
        bytes([1, 0x90, 1, 0])
        + (0x0000A001).to_bytes(4, "big")
        + (1).to_bytes(4, "big")  # cmd_seq
        + (1_795_579_205).to_bytes(4, "big")  # issued_s
        + (300).to_bytes(2, "big")  # valid_for_s
        + (6).to_bytes(2, "big")  # body_len
        + (1_795_579_205).to_bytes(4, "big")
        + (500).to_bytes(2, "big")
    )
    assert (signed + hmac.new(KEY, signed, hashlib.sha256).digest()[:16]).hex() == (
        case["frame_hex"]
    )


def test_locate_layout_by_hand():
    assert encode_locate(30) == bytes([0, 30])
    case = next(c for c in VECTORS["commands"] if c["name"] == "locate_edge_values")
    assert (case["header"]["kind"], case["body_hex"]) == (0x92, "012c")
    for bad in (0, 301):
        with pytest.raises(MalformedError, match=f"duration_s={bad} out of range 1..300"):
            encode_locate(bad)


def test_set_config_layout_by_hand():
    assert encode_set_config({2: -70, 1: 60}) == bytes([1, 2, 0, 60, 2, 1, 0xBA])
    case = next(c for c in VECTORS["commands"] if c["name"] == "set_config_all_keys")
    assert case["body_hex"] == "0102003c0201ba0302001e04020078"


@pytest.mark.parametrize(
    "case", VECTORS["acks"], ids=lambda c: f"{c['device_id']}-{c['acked_seq']}"
)
def test_ack_vectors(case):
    raw = bytes.fromhex(case["frame_hex"])
    ack = Ack(device_id=case["device_id"], acked_seq=case["acked_seq"])
    assert decode_ack(raw) == ack
    assert encode_ack(ack) == raw
    assert raw[:4] == bytes([1, ACK_KIND, 0, 0])
    assert raw[4:8] == case["device_id"].to_bytes(4, "big")
    assert raw[8:] == case["acked_seq"].to_bytes(4, "big")


@pytest.mark.parametrize("case", VECTORS["status"], ids=lambda c: f"{c['device_id']}-{c['state']}")
def test_status_vectors(case):
    raw = bytes.fromhex(case["frame_hex"])
    status = Status(device_id=case["device_id"], state=case["state"])
    assert decode_status(raw) == status
    assert encode_status(status) == raw
    assert raw == bytes([1, case["state"]]) + case["device_id"].to_bytes(4, "big")


@pytest.mark.parametrize("case", INVALID["commands"], ids=lambda c: c["name"])
def test_invalid_command_raises_its_reason(case):
    with pytest.raises(ProtocolError) as err:
        cmd = decode_command(bytes.fromhex(case["hex"]))
        if "key" in case:
            verify_command(cmd, bytes.fromhex(case["key"]))
    assert err.value.reason == case["error"], str(err.value)


@pytest.mark.parametrize("case", INVALID["acks"], ids=lambda c: c["name"])
def test_invalid_ack_raises_its_reason(case):
    with pytest.raises(ProtocolError) as err:
        decode_ack(bytes.fromhex(case["hex"]))
    assert err.value.reason == case["error"], str(err.value)


@pytest.mark.parametrize("case", INVALID["status"], ids=lambda c: c["name"])
def test_invalid_status_raises_its_reason(case):
    with pytest.raises(ProtocolError) as err:
        decode_status(bytes.fromhex(case["hex"]))
    assert err.value.reason == case["error"], str(err.value)


def test_event_kind_is_never_a_command():
    with pytest.raises(UnknownKindError, match="kind=0x04 is not a command kind"):
        encode_command(
            kind=0x04,
            key_id=1,
            device_id=1,
            cmd_seq=1,
            issued_s=0,
            valid_for_s=0,
            body=b"\x01",
            key=KEY,
        )


_GOOD = {
    "kind": CommandKind.SET_TIME,
    "key_id": 1,
    "device_id": 0x0000A001,
    "cmd_seq": 1,
    "issued_s": 0,
    "valid_for_s": 60,
    "body": encode_set_time(0, 0),
    "key": KEY,
}


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"kind": 0x93}, UnknownKindError, "kind=0x93"),
        ({"cmd_seq": 0}, MalformedError, "cmd_seq=0"),
        ({"valid_for_s": 1 << 16}, MalformedError, "valid_for_s=65536"),
        ({"key_id": -1}, MalformedError, "key_id=-1"),
        ({"body": b"\x00" * 5}, MalformedError, "SET_TIME body must be 6 bytes"),
        ({"body": bytes(193)}, OversizedError, "193 bytes"),
        ({"kind": CommandKind.SET_CONFIG}, MalformedError, "config key=0 unknown"),
        ({"key": bytes(31)}, MalformedError, "key must be 32 bytes"),
    ],
)
def test_encode_command_refuses_what_decoder_would(change, error, match):
    with pytest.raises(error, match=match):
        encode_command(**{**_GOOD, **change})


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ({}, "at least one entry"),
        ({9: 1}, "config key=9 unknown"),
        ({ConfigKey.VISIT_RSSI_DBM: -129}, "visit_rssi_dbm=-129"),
        ({ConfigKey.HEARTBEAT_INTERVAL_S: 1 << 16}, "heartbeat_interval_s=65536"),
        ({ConfigKey.MAN_DOWN_S: -1}, "man_down_s=-1"),
    ],
)
def test_encode_set_config_checks_entries(entries, match):
    with pytest.raises(MalformedError, match=match):
        encode_set_config(entries)


def test_encode_set_time_checks_range():
    with pytest.raises(MalformedError, match="time_ms=1000"):
        encode_set_time(0, 1000)
    with pytest.raises(MalformedError, match="time_s=4294967296"):
        encode_set_time(1 << 32, 0)


def test_wrong_key_is_bad_mac():
    cmd = decode_command(bytes.fromhex(VECTORS["commands"][0]["frame_hex"]))
    with pytest.raises(SignatureError, match="command mac does not verify"):
        verify_command(cmd, bytes(32))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: Ack(-1, 0), "device_id=-1"),
        (lambda: Ack(0, 1 << 32), "acked_seq=4294967296"),
        (lambda: Status(0, 2), "state=2"),
        (lambda: Status(1 << 32, 1), "device_id=4294967296"),
    ],
)
def test_ack_and_status_validate_at_construction(factory, match):
    with pytest.raises(MalformedError, match=match):
        factory()
