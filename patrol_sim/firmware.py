"""Import the firmware's own MicroPython modules into CPython for simulation.

The firmware in `firmware/lib/patrol` is written in the subset MicroPython and
CPython share; the tests run it in the real MicroPython Unix port, the demo
hosts it here so one process can simulate a whole site.
"""

from __future__ import annotations

import sys
from pathlib import Path

FIRMWARE_LIB = Path(__file__).resolve().parents[1] / "firmware" / "lib"


class FirmwareNotFoundError(RuntimeError):
    pass


def load_firmware() -> Path:
    """Put `firmware/lib` on `sys.path` (once) and return it."""
    if not (FIRMWARE_LIB / "patrol" / "wearable.py").is_file():
        raise FirmwareNotFoundError(
            f"firmware sources not found at {FIRMWARE_LIB}; run the demo from a checkout"
        )
    path = str(FIRMWARE_LIB)
    if path not in sys.path:
        sys.path.insert(0, path)
    return FIRMWARE_LIB
