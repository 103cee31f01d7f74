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
