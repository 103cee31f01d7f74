"""A wall clock for simulated devices that follows real time.

The firmware's simulated HAL has a clock that tests advance by hand. The demo
runs in real time instead, so that every clock and verification rule applies
unchanged; this class offers the same interface (`ticks_ms`, `time`,
`set_time`, `synced`) backed by the host's monotonic and wall clocks.
"""

from __future__ import annotations

import time

TICKS_PERIOD = 1 << 30  # MicroPython's ticks_ms wraps here; firmware uses ticks_diff


class RealClock:
    def __init__(self, *, synced: bool = False, offset_ms: int = 0) -> None:
        self.synced = synced
        self._offset_ms = offset_ms  # device wall clock minus host wall clock

    def ticks_ms(self) -> int:
        return (time.monotonic_ns() // 1_000_000) % TICKS_PERIOD

    def sleep_ms(self, duration_ms: int) -> None:
        time.sleep(duration_ms / 1000)

    def time(self) -> tuple[int, int]:
        now_ms = time.time_ns() // 1_000_000 + self._offset_ms
        return now_ms // 1000, now_ms % 1000

    def set_time(self, time_s: int, time_ms: int) -> None:
        self._offset_ms = time_s * 1000 + time_ms - time.time_ns() // 1_000_000
        self.synced = True
