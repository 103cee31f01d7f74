"""The flash queue survives reboots (a new MicroPython process on the same directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import upy

pytestmark = pytest.mark.micropython

HEARTBEAT = 3
SOS = 4


def _ops(
    micropython: Path, directory: Path, *ops: str, max_frames: int = 5000
) -> dict[str, dict[str, object]]:
    return upy.results_by_key(
        upy.run(micropython, "queue_ops.py", str(directory), str(max_frames), *ops)
    )


def test_queue_survives_reboot_and_frees_by_ack(micropython: Path, tmp_path: Path) -> None:
    flash = tmp_path / "queue"
    first = _ops(micropython, flash, f"add:{HEARTBEAT}:100", "show")["show1"]
    assert (first["depth"], first["last_seq"], first["seqs"]) == (100, 100, list(range(1, 101)))
    assert first["files"] == ["q00000001.seg", "q00000002.seg"]

    # Reboot: a new interpreter sees the same 100 frames, then the edge acks up to 40.
    second = _ops(micropython, flash, "show", "free:40", "show")
    assert second["show0"]["seqs"] == list(range(1, 101))
    assert second["free1"]["freed"] == 40
    assert (second["show2"]["depth"], second["show2"]["acked_seq"]) == (60, 40)
    assert second["show2"]["seqs"] == list(range(41, 101))

    # Reboot again: the ack held; the next frame continues the sequence at 101.
    third = _ops(micropython, flash, "show", f"add:{HEARTBEAT}:1", "free:100", "show")
    assert (third["show0"]["depth"], third["show0"]["acked_seq"]) == (60, 40)
    assert third["free2"]["freed"] == 60
    assert third["show3"]["seqs"] == [101]
    assert third["show3"]["files"] == ["meta", "q00000002.seg"]

    # Everything acknowledged: segments are gone, and last_seq still survives a reboot.
    fourth = _ops(micropython, flash, "free:101", "show")
    assert fourth["show1"]["files"] == ["meta"]
    fifth = _ops(micropython, flash, "show")["show0"]
    assert (fifth["depth"], fifth["acked_seq"], fifth["last_seq"]) == (0, 101, 101)


def test_peek_after_seq_and_ack_beyond_last(micropython: Path, tmp_path: Path) -> None:
    got = _ops(
        micropython, tmp_path / "q", f"add:{HEARTBEAT}:8", "free:2", "show", "free:999", "show"
    )
    assert got["show2"]["after_5"] == [6, 7, 8]
    assert got["free3"]["freed"] == 6  # an ack beyond what was stored frees what there is
    assert (got["show4"]["depth"], got["show4"]["acked_seq"]) == (0, 8)


@pytest.mark.parametrize("free_every", [1, 3, 64, 1000])
def test_peeking_after_the_last_peek_returns_every_frame_once(
    micropython: Path, tmp_path: Path, free_every: int
) -> None:
    """The wearable's pattern: peek after the last frame it published, every step.

    peek() resumes from a cursor (segment, offset); an ack that deletes the segment
    lets a new one reuse its number (free_every=1), an eviction rewrites a segment:
    neither may make a peek skip or repeat a frame.
    """
    got = _ops(micropython, tmp_path / "q", f"walk:200:{free_every}", "evict", "walk:70:5")
    assert got["walk0"]["peeked"] == list(range(1, 201))
    assert got["walk2"]["peeked"][-70:] == list(range(201, 271))
    assert got["walk2"]["peeked"] == sorted(set(got["walk2"]["peeked"]))


def test_free_upto_counts_live_frames_inside_a_segment(micropython: Path, tmp_path: Path) -> None:
    got = _ops(micropython, tmp_path / "q", f"add:{HEARTBEAT}:100", "free:10", "free:70", "show")
    assert (got["free1"]["freed"], got["free2"]["freed"]) == (10, 60)
    assert (got["show3"]["depth"], got["show3"]["seqs"]) == (30, list(range(71, 101)))


def test_torn_tail_record_is_cut_at_load(micropython: Path, tmp_path: Path) -> None:
    flash = tmp_path / "q"
    _ops(micropython, flash, f"add:{HEARTBEAT}:5", "tear")
    got = _ops(micropython, flash, "show", f"add:{HEARTBEAT}:1", "show")
    assert (got["show0"]["depth"], got["show0"]["last_seq"]) == (5, 5)
    assert got["show2"]["seqs"] == [1, 2, 3, 4, 5, 6]
    again = _ops(micropython, flash, "show")["show0"]
    assert again["seqs"] == [1, 2, 3, 4, 5, 6]


def test_eviction_keeps_sos_and_reports_runs(micropython: Path, tmp_path: Path) -> None:
    flash = tmp_path / "q"
    got = _ops(
        micropython,
        flash,
        f"add:{HEARTBEAT}:10",
        f"add:{SOS}:1",
        f"add:{HEARTBEAT}:53",
        "evict",
        "show",
        max_frames=64,
    )
    assert got["evict3"]["runs"] == [[1, 10], [12, 64]]
    assert (got["show4"]["seqs"], got["show4"]["kinds"], got["show4"]["sos"]) == ([11], [SOS], [11])
    rebooted = _ops(micropython, flash, "show", "evict", max_frames=64)
    assert (rebooted["show0"]["depth"], rebooted["show0"]["last_seq"]) == (1, 64)
    assert rebooted["evict1"]["runs"] == []  # only SOS left: nothing may go


NFC_SCAN = 1


def test_eviction_order_heartbeats_first_then_oldest_never_sos(
    micropython: Path, tmp_path: Path
) -> None:
    got = _ops(
        micropython,
        tmp_path / "q",
        f"add:{NFC_SCAN}:10",
        f"add:{HEARTBEAT}:54",  # segment 1: scans 1..10, heartbeats 11..64
        f"add:{SOS}:1",
        f"add:{NFC_SCAN}:63",  # segment 2: SOS 65, scans 66..128
        "evict",
        "evict",
        "evict",
        "evict",
        "show",
        max_frames=128,
    )
    assert got["evict4"]["runs"] == [[11, 64]]  # heartbeats first, even though scans are older
    assert got["evict5"]["runs"] == [[1, 10]]  # then other events, oldest first
    assert got["evict6"]["runs"] == [[66, 128]]
    assert got["evict7"]["runs"] == []  # only the SOS is left, and it never goes
    assert (got["show8"]["seqs"], got["show8"]["files"]) == ([65], ["meta", "q00000002.seg"])


def test_interleaved_heartbeats_are_not_evicted_one_record_each(
    micropython: Path, tmp_path: Path
) -> None:
    # Heartbeat, scan, heartbeat, scan...: evicting only the heartbeats would cost one
    # EVICTION record per heartbeat and free nothing, so the whole oldest segment goes.
    got = _ops(micropython, tmp_path / "q", "alt:40", "evict", "show", max_frames=80)
    assert got["evict1"]["runs"] == [[1, 64]]
    assert got["show2"]["seqs"] == list(range(65, 81))


def test_queue_holds_5000_events_across_a_reboot(micropython: Path, tmp_path: Path) -> None:
    flash = tmp_path / "q"
    first = _ops(micropython, flash, f"add:{HEARTBEAT}:4999", "full", "add:3:1", "full")
    assert (first["full1"]["full"], first["full3"]["full"], first["full3"]["depth"]) == (
        False,
        True,
        5000,
    )
    again = _ops(micropython, flash, "full", "free:2500", "full")
    assert (again["full0"]["depth"], again["full0"]["full"]) == (5000, True)
    assert (again["full2"]["depth"], again["full2"]["full"]) == (2500, False)


def test_garbage_record_is_cut_and_earlier_frames_survive(
    micropython: Path, tmp_path: Path
) -> None:
    flash = tmp_path / "q"
    _ops(micropython, flash, f"add:{HEARTBEAT}:3")
    segment = flash / "q00000001.seg"
    data = segment.read_bytes()
    # a complete-looking record whose bytes are not a frame (erased flash reads 0xff)
    segment.write_bytes(data + b"\x00\x30" + b"\xff" * 0x30)
    got = _ops(micropython, flash, "show", f"add:{HEARTBEAT}:1", "show")
    assert got["show0"]["seqs"] == [1, 2, 3]
    assert got["show2"]["seqs"] == [1, 2, 3, 4]
    assert segment.read_bytes()[: len(data)] == data
