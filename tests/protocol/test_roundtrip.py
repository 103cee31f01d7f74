"""Property tests: encode -> decode is the identity; decoders only ever raise ProtocolError."""

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from patrol_protocol.adverts import (
    build_advertisement,
    decode_advert_payload,
    encode_beacon_payload,
    encode_equipment_payload,
    encode_presence_payload,
    parse_manufacturer_data,
    verify_advert,
)
from patrol_protocol.commands import (
    Ack,
    CommandKind,
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
from patrol_protocol.errors import ProtocolError
from patrol_protocol.frames import (
    FLAG_CLOCK_UNSYNCED,
    TAG_NTAG21X,
    TAG_NTAG424_SUN,
    BleVisit,
    Body,
    Boot,
    ClockJump,
    CmdResult,
    EquipmentNear,
    Eviction,
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

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i8 = st.integers(-128, 127)
pct = st.integers(0, 100)
seq = st.integers(1, 0xFFFFFFFF)
device_keys = st.binary(min_size=32, max_size=32)
adv_keys = st.binary(min_size=16, max_size=16)


@st.composite
def nfc_scans(draw: st.DrawFn) -> NfcScan:
    uid = draw(st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
    if draw(st.booleans()):
        return NfcScan(
            TAG_NTAG424_SUN,
            uid,
            draw(st.binary(min_size=16, max_size=16)),
            draw(st.binary(min_size=8, max_size=8)),
        )
    return NfcScan(TAG_NTAG21X, uid)


@st.composite
def evictions(draw: st.DrawFn) -> Eviction:
    first = draw(seq)
    return Eviction(first, draw(st.integers(first, 0xFFFFFFFF)), 1)


equipment = st.builds(EquipmentNear, u32, i8, pct)
bodies: st.SearchStrategy[Body] = st.one_of(
    nfc_scans(),
    st.builds(BleVisit, i8, u16, u16, st.binary(max_size=24)),
    st.builds(
        Heartbeat,
        pct,
        u16,
        st.integers(0, 7),
        u16,
        st.lists(equipment, max_size=16).map(tuple),
    ),
    st.builds(Sos, st.integers(1, 3)),
    evictions(),
    st.builds(Boot, u8, u8, u8, st.integers(0, 3)),
    st.builds(CmdResult, u32, st.integers(0, 4)),
    st.builds(ClockJump, seq, u32, st.integers(0, 999), u32, st.integers(0, 999)),
)


@settings(max_examples=200, derandomize=True)
@given(
    body=bodies,
    key_id=u8,
    flags=st.sampled_from([0, FLAG_CLOCK_UNSYNCED]),
    device_id=u32,
    seq=seq,
    time_s=u32,
    time_ms=st.integers(0, 999),
    key=device_keys,
)
def test_event_frame_round_trip(body, key_id, flags, device_id, seq, time_s, time_ms, key):
    raw = encode_frame(
        kind=kind_of(body),
        key_id=key_id,
        flags=flags,
        device_id=device_id,
        seq=seq,
        time_s=time_s,
        time_ms=time_ms,
        body=encode_body(body),
        key=key,
    )
    frame = decode_frame(raw)
    verify_frame(frame, key)
    assert frame.raw == raw
    assert (frame.header.kind, frame.header.key_id, frame.header.flags) == (
        kind_of(body),
        key_id,
        flags,
    )
    assert (frame.header.device_id, frame.header.seq) == (device_id, seq)
    assert (frame.header.time_s, frame.header.time_ms) == (time_s, time_ms)
    assert decode_body(frame.header.kind, frame.body) == body


@settings(max_examples=200, derandomize=True)
@given(raw=st.binary(max_size=300))
def test_decoders_raise_only_protocol_errors(raw):
    for decode in (decode_frame, decode_command, decode_ack, decode_status, decode_advert_payload):
        with contextlib.suppress(ProtocolError):
            decode(raw)
    for kind in [*Kind, 0, 0x7F]:  # every body decoder, and unknown kinds
        with contextlib.suppress(ProtocolError):
            decode_body(kind, raw[:192])
    with contextlib.suppress(ProtocolError):
        parse_manufacturer_data(raw[:31])


@settings(max_examples=200, derandomize=True)
@given(data=st.data(), cut=st.integers(0, 500))
def test_any_truncation_or_extension_of_a_frame_is_refused(data, cut):
    body = data.draw(bodies)
    raw = encode_frame(
        kind=kind_of(body),
        key_id=1,
        flags=0,
        device_id=1,
        seq=1,
        time_s=0,
        time_ms=0,
        body=encode_body(body),
        key=bytes(32),
    )
    changed = raw[: cut % len(raw)] if cut < 250 else raw + bytes([cut & 0xFF])
    try:
        decode_frame(changed)
    except ProtocolError as err:
        assert err.reason in {"truncated", "malformed", "oversized"}
    else:
        raise AssertionError("a changed-length frame was accepted")


@settings(max_examples=200, derandomize=True)
@given(data=st.data(), key=device_keys, device_id=u32, cmd_seq=seq, issued_s=u32, valid=u16)
def test_command_round_trip(data, key, device_id, cmd_seq, issued_s, valid):
    choice = data.draw(st.integers(0, 2))
    if choice == 2:
        kind = CommandKind.LOCATE
        duration_s = data.draw(st.integers(1, 300))
        body = encode_locate(duration_s)
        assert decode_locate(body).duration_s == duration_s
    elif choice == 1:
        kind = CommandKind.SET_TIME
        time_s, time_ms = data.draw(u32), data.draw(st.integers(0, 999))
        body = encode_set_time(time_s, time_ms)
        assert decode_set_time(body).time_s == time_s
    else:
        kind = CommandKind.SET_CONFIG
        entries = data.draw(
            st.fixed_dictionaries(
                {},
                optional={1: u16, 2: i8, 3: u16, 4: u16},
            ).filter(bool)
        )
        body = encode_set_config(entries)
        assert decode_set_config(body) == entries
    raw = encode_command(
        kind=kind,
        key_id=1,
        device_id=device_id,
        cmd_seq=cmd_seq,
        issued_s=issued_s,
        valid_for_s=valid,
        body=body,
        key=key,
    )
    cmd = decode_command(raw)
    verify_command(cmd, key)
    assert (cmd.kind, cmd.device_id, cmd.cmd_seq, cmd.issued_s, cmd.valid_for_s, cmd.body) == (
        kind,
        device_id,
        cmd_seq,
        issued_s,
        valid,
        body,
    )


@settings(max_examples=200, derandomize=True)
@given(device_id=u32, acked=u32, state=st.integers(0, 1))
def test_ack_and_status_round_trip(device_id, acked, state):
    assert decode_ack(encode_ack(Ack(device_id, acked))) == Ack(device_id, acked)
    assert decode_status(encode_status(Status(device_id, state))) == Status(device_id, state)


@settings(max_examples=200, derandomize=True)
@given(data=st.data(), company_id=u16, key=adv_keys, key_id=u8)
def test_advert_round_trip(data, company_id, key, key_id):
    advert_type = data.draw(st.integers(1, 3))
    if advert_type == 1:
        fields = {
            "beacon_id": data.draw(u32),
            "step": data.draw(u32),
            "tx_power_dbm": data.draw(i8),
            "battery_pct": data.draw(pct),
        }
        payload = encode_beacon_payload(key_id=key_id, **fields, company_id=company_id, key=key)
    elif advert_type == 2:
        fields = {
            "tag_id": data.draw(u32),
            "battery_pct": data.draw(pct),
            "battery_mv": data.draw(st.integers(0, 0xFFFF)),
            "flags": data.draw(st.integers(0, 0x1F)),
            "counter": data.draw(u32),
        }
        payload = encode_equipment_payload(key_id=key_id, **fields, company_id=company_id, key=key)
    else:
        fields = {
            "device_id": data.draw(u32),
            "step": data.draw(u32),
            "battery_pct": data.draw(pct),
        }
        payload = encode_presence_payload(key_id=key_id, **fields, company_id=company_id, key=key)
    advert = decode_advert_payload(payload)
    assert advert.key_id == key_id
    for name, value in fields.items():
        assert getattr(advert, name) == value
    assert advert.mac == payload[-8:]
    verify_advert(company_id, payload, key)
    assert parse_manufacturer_data(build_advertisement(company_id, payload)) == {
        company_id: payload
    }
