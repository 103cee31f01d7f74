"""Run scripts in the real MicroPython Unix port with firmware/lib on its path."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_LIB = REPO / "firmware" / "lib"
SCRIPTS = Path(__file__).resolve().parent / "scripts"
VECTORS = REPO / "tests" / "vectors"
RUN_TIMEOUT_S = 120


def run(
    micropython: Path,
    script: str,
    *args: str,
    heapsize: str | None = None,
    lib: Path = FIRMWARE_LIB,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run tests/firmware/scripts/<script> under MicroPython; fail loudly on a traceback."""
    command = [str(micropython)]
    if heapsize:
        command += ["-X", f"heapsize={heapsize}"]
    command += [str(SCRIPTS / script), *args]
    env = dict(os.environ, MICROPYPATH=f"{lib}:{SCRIPTS}")
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Non-empty stdout lines."""
    return [line for line in result.stdout.splitlines() if line.strip()]


def results_by_key(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    """Scripts print one JSON object per line with a "key" field; index them."""
    out: dict[str, dict[str, object]] = {}
    for line in lines(result):
        record = json.loads(line)
        out[str(record["key"])] = record
    return out


def load_vectors(name: str) -> dict[str, object]:
    """A vector file from tests/vectors."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))
