"""The wearable loop on the simulated board, in the real MicroPython Unix port.

Each scenario runs tests/firmware/scripts/wearable_ops.py offline (no broker); the
frames it queued are then decoded and verified here with patrol_protocol, the
CPython implementation the edge and the cloud use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patrol_protocol.adverts import (
    build_advertisement,
    encode_beacon_payload,
    encode_equipment_payload,
)
from patrol_protocol.commands import (
    Ack,
    CommandKind,
    encode_ack,
    encode_command,
    encode_locate,
    encode_set_config,
    encode_set_time,
)
from patrol_protocol.frames import (
    FLAG_CLOCK_UNSYNCED,
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
    decode_body,
    decode_frame,
    verify_frame,
)

from . import upy

pytestmark = pytest.mark.micropython

KEY = bytes(range(32))
DEVICE_ID = 0x0000A001
START_S = 1_795_579_200
SUN_URL = "https://patrol.example/t?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"
UID = "04de5f1eacc040"
BEACON_KEY = bytes(range(16))
COMPANY = 0xFFFF


def _run(micropython: Path, flash: Path, *ops: str) -> dict[str, dict[str, object]]:
    return upy.results_by_key(
        upy.run(micropython, "wearable_ops.py", str(flash), str(START_S), *ops)
    )


def _decoded(show: dict[str, object]) -> list[tuple[int, int, int, object]]:
    """(seq, kind, flags, body) of every queued frame, each verified under the device key."""
    out = []
    for frame_hex in show["frames"]:  # type: ignore[union-attr]
        frame = decode_frame(bytes.fromhex(str(frame_hex)))
        verify_frame(frame, KEY)
        assert frame.header.device_id == DEVICE_ID
        out.append(
            (
                frame.header.seq,
                frame.header.kind,
                frame.header.flags,
                decode_body(frame.header.kind, frame.body),
            )
        )
    return out


def _beacon_adv(step: int) -> str:
    payload = encode_beacon_payload(
        key_id=1,
        beacon_id=0x5B7,
        step=step,
        tx_power_dbm=-59,
        battery_pct=90,
        company_id=COMPANY,
        key=BEACON_KEY,
    )
    return build_advertisement(COMPANY, payload).hex()


def _equipment_adv(tag_id: int, counter: int, battery_pct: int) -> str:
    payload = encode_equipment_payload(
        key_id=1,
        tag_id=tag_id,
        battery_pct=battery_pct,
        battery_mv=3900,
        flags=0,
        counter=counter,
        company_id=COMPANY,
        key=BEACON_KEY,
    )
    return build_advertisement(COMPANY, payload).hex()


def test_boot_and_nfc_scans_one_per_tap(micropython: Path, tmp_path: Path) -> None:
    got = _run(
        micropython,
        tmp_path / "flash",
        f"tag:{UID}:ntag424:{SUN_URL}",
        "step:3",
        "untag",
        "step",
        "tag:04112233445566:ntag21x:https://patrol.example/c/7",
        "step:2",
        "show:end",
    )
    frames = _decoded(got["end"])
    assert frames == [
        (1, Kind.BOOT, FLAG_CLOCK_UNSYNCED, Boot(0, 1, 0, 0)),
        (
            2,
            Kind.NFC_SCAN,
            FLAG_CLOCK_UNSYNCED,
            NfcScan(
                1,
                bytes.fromhex(UID),
                bytes.fromhex("ef963ff7828658a599f3041510671e88"),
                bytes.fromhex("94eed9ee65337086"),
            ),
        ),
        (3, Kind.NFC_SCAN, FLAG_CLOCK_UNSYNCED, NfcScan(2, bytes.fromhex("04112233445566"))),
    ]


def test_tag_removed_mid_read_gives_no_scan_then_retries(micropython: Path, tmp_path: Path) -> None:
    got = _run(
        micropython,
        tmp_path / "flash",
        "step",  # PN532 initialised
        f"tag:{UID}:ntag424:{SUN_URL}",
        "removeafter:2",
        "step",
        "show:removed",
        f"tag:{UID}:ntag424:{SUN_URL}",
        "step",
        "show:again",
    )
    assert [kind for _, kind, _, _ in _decoded(got["removed"])] == [Kind.BOOT]
    assert got["removed"]["stats"]["nfc_read_errors"] == 1  # type: ignore[index]
    assert [kind for _, kind, _, _ in _decoded(got["again"])] == [Kind.BOOT, Kind.NFC_SCAN]


def test_ble_visit_after_dwell_and_equipment_in_heartbeat(
    micropython: Path, tmp_path: Path
) -> None:
    adv = _beacon_adv(179_557_920)
    got = _run(
        micropython,
        tmp_path / "flash",
        f"advert:-80:{adv}:20:1000",  # weak: never a visit
        "advance:6000",
        f"advert:-60:{adv}:12:1000",  # strong for 11 s: one visit at 10 s
        f"advert:-62:{_equipment_adv(0xE001, 7, 90)}",
        f"advert:-71:{_equipment_adv(0xE002, 3, 15)}",
        f"advert:-58:{_equipment_adv(0xE001, 8, 89)}",
        "battery:15:3500:1",
        "advance:40000",
        "step",
        "show:end",
    )
    frames = _decoded(got["end"])
    assert [kind for _, kind, _, _ in frames] == [Kind.BOOT, Kind.BLE_VISIT, Kind.HEARTBEAT]
    beacon_payload = bytes.fromhex(adv)[7:]
    assert frames[1][3] == BleVisit(
        rssi_dbm=-60, dwell_s=10, company_id=COMPANY, adv=beacon_payload
    )
    assert frames[2][3] == Heartbeat(
        battery_pct=15,
        battery_mv=3500,
        status=0x07,
        queue_depth=2,
        items=(EquipmentNear(0xE001, -58, 89), EquipmentNear(0xE002, -71, 15)),
    )


def test_sos_long_press_then_man_down_after_an_uncancelled_pre_alarm(
    micropython: Path, tmp_path: Path
) -> None:
    got = _run(
        micropython,
        tmp_path / "flash",
        "cfg:man_down_s:30",
        "cfg:man_down_cancel_s:10",
        "press",
        "step",
        "advance:1500",
        "step",
        "advance:600",
        "step",  # held 2.1 s: SOS trigger 1
        "advance:5000",
        "step",
        "release",
        "step",
        "move",
        "step",  # t = 7.1 s: last movement
        "advance:29000",
        "step",
        "advance:1000",
        "step",  # 30 s still: local pre-alarm, no SOS yet
        "show:prealarm",
        "advance:9999",
        "step",
        "show:still",
        "advance:1",
        "step",  # the 10 s window passed uncancelled: SOS trigger 2
        "show:end",
    )
    kinds = [(kind, body) for _, kind, _, body in _decoded(got["end"])]
    assert kinds == [(Kind.BOOT, Boot(0, 1, 0, 0)), (Kind.SOS, Sos(1)), (Kind.SOS, Sos(2))]
    for label in ("prealarm", "still"):
        assert len(_decoded(got[label])) == 2
        assert got[label]["playing"] == "prealarm"
    # the pre-alarm (LED + buzzer + vibration, 500 ms on / 500 ms off) ran until the SOS
    assert [37100, 7] in got["end"]["outputs"]  # type: ignore[operator]
    assert got["end"]["playing"] == "offline"  # SOS raised while offline


def test_button_cancels_the_man_down_pre_alarm(micropython: Path, tmp_path: Path) -> None:
    got = _run(
        micropython,
        tmp_path / "flash",
        "cfg:man_down_s:30",
        "cfg:man_down_cancel_s:10",
        "advance:30000",
        "step",  # pre-alarm starts
        "advance:5000",
        "step",
        "press",
        "step",  # cancelled at 35 s
        "advance:3000",
        "step",  # still held 3 s: the cancelling press never counts as an SOS press
        "release",
        "step",
        "advance:9000",
        "step",
        "show:end",
    )
    end = got["end"]
    assert [kind for _, kind, _, _ in _decoded(end)] == [Kind.BOOT]
    assert end["stats"]["prealarms_cancelled"] == 1  # type: ignore[index]
    assert end["outputs"] == [[0, 0], [30000, 7], [35000, 0]]
    assert end["playing"] is None


def test_feedback_patterns_are_exact(micropython: Path, tmp_path: Path) -> None:
    ok = _run(
        micropython,
        tmp_path / "ok",
        "tag:04112233445566:ntag21x:https://patrol.example/c/7",
        "tick:10:30",
        "show:end",
    )["end"]
    assert ok["outputs"] == [[0, 0], [10, 3], [110, 0]]  # scan OK: LED + buzzer 100 ms

    rejected = _run(
        micropython,
        tmp_path / "rejected",
        "step",  # PN532 initialised
        f"tag:{UID}:ntag424:{SUN_URL}",
        "removeafter:2",
        "tick:10:50",
        "show:end",
    )["end"]
    # read error: three 80 ms beeps, 80 ms apart
    assert rejected["outputs"] == [
        [0, 0],
        [10, 3],
        [90, 0],
        [170, 3],
        [250, 0],
        [330, 3],
        [410, 0],
    ]

    ack2 = encode_ack(Ack(device_id=DEVICE_ID, acked_seq=2)).hex()
    sos = _run(
        micropython,
        tmp_path / "sos",
        "press",
        "tick:100:25",  # SOS at 2.1 s while offline: the offline pattern
        "release",
        "tick:100:10",
        f"msg:ack:{ack2}",  # the edge committed the SOS: "SOS sent", 1 s LED + vibration
        "tick:100:12",
        "show:end",
    )["end"]
    assert sos["outputs"] == [
        [0, 0],
        [2100, 1],
        [2200, 0],
        [2600, 1],
        [2700, 0],
        [3500, 5],
        [4500, 0],
    ]


def test_locate_command_plays_only_when_signed(micropython: Path, tmp_path: Path) -> None:
    locate = encode_locate(2)
    got = _run(
        micropython,
        tmp_path / "flash",
        f"msg:cmd:{_command(CommandKind.LOCATE, 1, locate, key=bytes(32))}",  # forged
        "tick:100:5",
        f"msg:cmd:{_command(CommandKind.LOCATE, 2, locate)}",
        "tick:100:25",
        "show:end",
    )
    end = got["end"]
    assert [body for _, _, _, body in _decoded(end)][1:] == [CmdResult(1, 1), CmdResult(2, 0)]
    # LED + buzzer 200 ms every second, for the 2 s asked, then silence
    assert end["outputs"] == [[0, 0], [500, 3], [700, 0], [1500, 3], [1700, 0]]
    assert end["playing"] is None


def _command(
    kind: int,
    cmd_seq: int,
    body: bytes,
    *,
    issued_s: int = START_S,
    valid_for_s: int = 300,
    key: bytes = KEY,
) -> str:
    return encode_command(
        kind=kind,
        key_id=1,
        device_id=DEVICE_ID,
        cmd_seq=cmd_seq,
        issued_s=issued_s,
        valid_for_s=valid_for_s,
        body=body,
        key=key,
    ).hex()


def test_commands_apply_only_when_signed_fresh_and_unexpired(
    micropython: Path, tmp_path: Path
) -> None:
    set_time = encode_set_time(START_S + 3600, 250)
    config = encode_set_config({1: 300, 2: -65})
    small_step = encode_set_time(START_S + 3601, 250)
    backwards = encode_set_time(START_S + 3500, 0)
    got = _run(
        micropython,
        tmp_path / "flash",
        f"msg:cmd:{_command(CommandKind.SET_TIME, 5, set_time, key=bytes(32))}",  # wrong key
        f"msg:cmd:{_command(CommandKind.SET_TIME, 5, set_time)}",  # applied; clock now synced
        f"msg:cmd:{_command(CommandKind.SET_TIME, 5, set_time)}",  # replay: stale
        # expired (issued at START_S, valid 60 s, clock now START_S + 3600), then applied
        f"msg:cmd:{_command(CommandKind.SET_CONFIG, 6, config, valid_for_s=60)}",
        f"msg:cmd:{_command(CommandKind.SET_CONFIG, 7, config, issued_s=START_S + 3600)}",
        "msg:cmd:00",
        # a 1 s correction is not a jump; a 101.25 s step backwards is
        f"msg:cmd:{_command(CommandKind.SET_TIME, 8, small_step, issued_s=START_S + 3600)}",
        f"msg:cmd:{_command(CommandKind.SET_TIME, 9, backwards, issued_s=START_S + 3600)}",
        "show:end",
    )
    show = got["end"]
    frames = _decoded(show)
    assert [(kind, flags, body) for _, kind, flags, body in frames] == [
        (Kind.BOOT, FLAG_CLOCK_UNSYNCED, Boot(0, 1, 0, 0)),
        (Kind.CMD_RESULT, FLAG_CLOCK_UNSYNCED, CmdResult(5, 1)),
        # the first sync moved the clock by an hour: reported, then the command's answer
        (Kind.CLOCK_JUMP, 0, ClockJump(5, START_S, 0, START_S + 3600, 250)),
        (Kind.CMD_RESULT, 0, CmdResult(5, 0)),
        (Kind.CMD_RESULT, 0, CmdResult(5, 2)),
        (Kind.CMD_RESULT, 0, CmdResult(6, 3)),
        (Kind.CMD_RESULT, 0, CmdResult(7, 0)),
        (Kind.CMD_RESULT, 0, CmdResult(8, 0)),
        (Kind.CLOCK_JUMP, 0, ClockJump(9, START_S + 3601, 250, START_S + 3500, 0)),
        (Kind.CMD_RESULT, 0, CmdResult(9, 0)),
    ]
    assert show["time"] == [START_S + 3500, 0]
    assert (show["last_cmd_seq"], show["heartbeat_interval_s"], show["visit_rssi_dbm"]) == (
        9,
        300,
        -65,
    )
    assert show["stats"]["bad_commands"] == 1  # type: ignore[index]

    # Reboot: the applied cmd_seq and configuration persist, so the replay is still stale.
    again = _run(
        micropython,
        tmp_path / "flash",
        f"msg:cmd:{_command(CommandKind.SET_CONFIG, 7, config, issued_s=START_S + 3600)}",
        "show:end",
    )
    assert (again["end"]["last_cmd_seq"], again["end"]["heartbeat_interval_s"]) == (9, 300)
    assert _decoded(again["end"])[-1][3] == CmdResult(7, 2)


def test_ack_frees_queue_and_seq_survives_reboot(micropython: Path, tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    ack3 = encode_ack(Ack(device_id=DEVICE_ID, acked_seq=3)).hex()
    other = encode_ack(Ack(device_id=0x0000A002, acked_seq=99)).hex()
    got = _run(
        micropython,
        flash,
        "press",
        "step",
        "advance:2000",
        "step",
        "release",
        "advance:60000",
        "step",
        "advance:60000",
        "step",
        "show:before",
        f"msg:ack:{other}",
        "msg:ack:0181",
        f"msg:ack:{ack3}",
        "show:after",
    )
    assert [seq for seq, _, _, _ in _decoded(got["before"])] == [1, 2, 3, 4]
    assert (got["after"]["depth"], got["after"]["acked_seq"]) == (1, 3)
    assert got["after"]["stats"]["bad_acks"] == 1  # type: ignore[index]
    # Reboot: BOOT takes seq 5, never reusing 1..4; the ack and the unacked frame persist.
    rebooted = _run(micropython, flash, "show")["show0"]
    assert [(seq, kind) for seq, kind, _, _ in _decoded(rebooted)] == [
        (4, Kind.HEARTBEAT),
        (5, Kind.BOOT),
    ]
    assert rebooted["acked_seq"] == 3


def test_full_queue_evicts_oldest_but_never_sos(micropython: Path, tmp_path: Path) -> None:
    ops = [
        "cfg:queue_max_frames:70",
        "cfg:heartbeat_interval_s:1",
        "press",
        "step",
        "advance:2500",
        "step",
        "release",
    ]
    ops += ["advance:1000", "step"] * 70
    ops += ["show:end"]
    got = _run(micropython, tmp_path / "flash", *ops)
    frames = _decoded(got["end"])
    kinds = [kind for _, kind, _, _ in frames]
    assert Kind.SOS in kinds
    evictions = [body for _, kind, _, body in frames if kind == Kind.EVICTION]
    # Segment 1 held BOOT (1), the SOS (2) and heartbeats 3..64: heartbeats go first.
    assert evictions == [Eviction(3, 64, 1)]
    assert [seq for seq, kind, _, _ in frames if kind == Kind.SOS] == [2]
    assert frames[0][:2] == (1, Kind.BOOT)


def test_full_flash_evicts_retries_and_never_reuses_a_seq(
    micropython: Path, tmp_path: Path
) -> None:
    flash = tmp_path / "flash"
    got = _run(
        micropython,
        flash,
        "cfg:heartbeat_interval_s:1",
        "advance:1000",
        "step",  # heartbeat seq 2
        "failwrites:1",
        "advance:1000",
        "step",  # heartbeat 3: the write fails; BOOT and heartbeat 2 are evicted, 3 retried
        "failwrites:2",
        "advance:1000",
        "step",  # heartbeat 5: fails twice; heartbeat 3 evicted, seq 5 dropped (lost)
        "show:end",
    )
    end = got["end"]
    frames = [(seq, kind, body) for seq, kind, _, body in _decoded(end)]
    # One lone heartbeat per segment would cost a record each: the oldest segment goes whole.
    assert frames == [
        (4, Kind.EVICTION, Eviction(1, 2, 1)),
        (6, Kind.EVICTION, Eviction(3, 3, 1)),
    ]
    assert (end["stats"]["store_errors"], end["stats"]["evicted"]) == (2, 3)  # type: ignore[index]
    assert end["last_seq"] == 6
    # Reboot: seq 5 was never stored, yet it is never reused.
    rebooted = _run(micropython, flash, "show")["show0"]
    assert [seq for seq, _, _, _ in _decoded(rebooted)] == [4, 6, 7]


def test_a_scan_beep_never_cuts_the_pre_alarm_short(micropython: Path, tmp_path: Path) -> None:
    got = _run(
        micropython,
        tmp_path / "flash",
        "cfg:man_down_s:30",
        "cfg:man_down_cancel_s:10",
        "advance:30000",
        "step",  # pre-alarm
        "tag:04112233445566:ntag21x:https://patrol.example/c/7",
        "advance:100",
        "step",  # the tap is stored, its "scan OK" beep is dropped
        "show:end",
    )
    end = got["end"]
    assert [kind for _, kind, _, _ in _decoded(end)] == [Kind.BOOT, Kind.NFC_SCAN]
    assert end["playing"] == "prealarm"
    assert end["outputs"] == [[0, 0], [30000, 7]]
