"""Is the gateway's clock synchronised? (reported as ``clock_synced`` in every batch)

A Raspberry Pi has no battery-backed clock: after a power cut during an uplink
outage its time can be wrong until NTP answers again, so receive times stamped
meanwhile must be flagged. Two read-only sources, in order:

1. ``timedatectl show -p NTPSynchronized --value`` (systemd-timesyncd / chrony
   on Raspberry Pi OS) -> ``yes`` / ``no``;
2. ``adjtimex(2)`` with ``modes = 0`` via ctypes (any Linux, no privileges): the
   kernel's ``TIME_ERROR`` state or the ``STA_UNSYNC`` status bit mean unsynced.

If neither answers (no systemd, not Linux), the state is reported as *unsynced*:
claiming a synchronised clock we cannot confirm would make unflagged events of
possibly wrong times.
"""

import ctypes
import ctypes.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Final, Literal

_TIMEDATECTL_TIMEOUT_S: Final = 2.0
_TIME_ERROR: Final = 5
"""adjtimex(2) return value: the clock is not synchronised."""
_STA_UNSYNC: Final = 0x0040
"""timex.status bit: the clock is not synchronised (linux/timex.h)."""

ClockSource = Literal["timedatectl", "adjtimex", "unknown"]


@dataclass(frozen=True, slots=True)
class ClockState:
    """Sync state of the gateway clock and where the answer came from."""

    synced: bool
    source: ClockSource
    detail: str


class _Timex(ctypes.Structure):
    """``struct timex`` (linux/timex.h) up to ``status``, then generous padding."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    )


def _from_timedatectl() -> ClockState | None:
    path = shutil.which("timedatectl")
    if path is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603  (fixed argv, no shell, no user input)
            [path, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=_TIMEDATECTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = done.stdout.strip()
    if done.returncode != 0 or answer not in ("yes", "no"):
        return None
    return ClockState(answer == "yes", "timedatectl", f"NTPSynchronized={answer}")


def _from_adjtimex() -> ClockState | None:
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    timex = _Timex()
    timex.modes = 0  # read only
    state = int(adjtimex(ctypes.byref(timex)))
    if state < 0:
        return None
    unsync_bit = bool(timex.status & _STA_UNSYNC)
    synced = state != _TIME_ERROR and not unsync_bit
    return ClockState(synced, "adjtimex", f"state={state} STA_UNSYNC={int(unsync_bit)}")


def clock_state() -> ClockState:
    """Ask timedatectl, then adjtimex(2); report unsynced when neither can tell."""
    return (
        _from_timedatectl()
        or _from_adjtimex()
        or ClockState(False, "unknown", "no timedatectl or adjtimex(2): reported as unsynced")
    )
