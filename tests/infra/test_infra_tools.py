"""The MicroPython Unix port and mpy-cross that firmware tests run are real and usable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.micropython


def test_micropython_runs_code_in_a_small_heap(micropython: Path) -> None:
    result = subprocess.run(
        [
            micropython,
            "-X",
            "heapsize=48K",
            "-c",
            "import sys; print(sys.implementation.name, 6 * 7)",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout == "micropython 42\n"


def test_mpy_cross_compiles(mpy_cross: Path, tmp_path: Path) -> None:
    source = tmp_path / "answer.py"
    source.write_text("def answer():\n    return 42\n", encoding="utf-8")
    subprocess.run([mpy_cross, source], capture_output=True, timeout=30, check=True)
    compiled = (tmp_path / "answer.mpy").read_bytes()
    assert compiled[:1] == b"M"  # the .mpy header's magic byte
