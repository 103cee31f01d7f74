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
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

_log = logging.getLogger(__name__)

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


META_UNSYNCED_UPTO: Final = "clock_unsynced_upto_gw_seq"
META_UNSYNCED_OPEN: Final = "clock_unsynced_open"


class WatermarkStore(Protocol):
    """What :class:`ClockWatch` persists its watermark in (an :class:`EdgeQueue`)."""

    def meta(self, name: str) -> int | None: ...
    def set_meta(self, values: Mapping[str, int]) -> None: ...
    def last_gw_seq(self) -> int: ...


class ClockWatch:
    """Which queued items were stamped while the gateway clock was unsynced.

    A batch's ``clock_synced`` must describe the clocks that stamped its items'
    ``received_at``, not the clock at send time: a Pi that boots without network
    stamps events with a wrong time, and forwarding them after NTP answered must
    still flag them. ``gw_seq`` is monotonic whatever the wall clock does, so the
    watch keeps a watermark in the queue file:

    - while a check says *unsynced*, the window is open: every item committed from
      now on is unsynced (``meta clock_unsynced_open = 1``, persisted at once, so a
      restart before the clock syncs keeps the window open);
    - the first *synced* check closes it at the queue's current last ``gw_seq``
      (``clock_unsynced_upto_gw_seq``): everything committed before sync was
      confirmed is flagged, which errs on the side of flagging.

    :meth:`check` runs once before ingest starts (so no item is committed before
    the first answer) and then every ``interval_s`` from the forwarder and health
    reporter. Between a real sync and the next check, items are still flagged:
    at most ``interval_s`` of over-flagging, never an unflagged wrong time.
    """

    def __init__(
        self,
        store: WatermarkStore,
        *,
        state: Callable[[], ClockState] = clock_state,
        interval_s: float = 30.0,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        """``state`` is :func:`clock_state` unless a test injects one."""
        self._store = store
        self._state_fn = state
        self._interval_s = interval_s
        self._monotonic_s = monotonic_s
        self._lock = threading.Lock()
        self._checked_at_s: float | None = None
        self._state = ClockState(False, "unknown", "not checked yet")
        self._open = bool(store.meta(META_UNSYNCED_OPEN) or 0)
        self._upto = store.meta(META_UNSYNCED_UPTO) or 0

    @property
    def state(self) -> ClockState:
        """The last answer (``unknown`` until the first :meth:`check`)."""
        return self._state

    @property
    def unsynced_upto_gw_seq(self) -> int | None:
        """Items up to this gw_seq were stamped unsynced; None while the window is open."""
        return None if self._open else self._upto

    def check(self, *, force: bool = False) -> ClockState:
        """Ask the clock (at most once per interval unless ``force``); move the watermark."""
        with self._lock:
            now_s = self._monotonic_s()
            if (
                not force
                and self._checked_at_s is not None
                and now_s - self._checked_at_s < self._interval_s
            ):
                return self._state
            state = self._state_fn()
            if state.synced != self._state.synced or self._checked_at_s is None:
                _log.info(
                    "gateway clock synced=%s (%s: %s)", state.synced, state.source, state.detail
                )
            self._checked_at_s = now_s
            self._state = state
            if not state.synced and not self._open:
                self._open = True
                self._store.set_meta({META_UNSYNCED_OPEN: 1})
            elif state.synced and self._open:
                self._open = False
                self._upto = self._store.last_gw_seq()
                self._store.set_meta({META_UNSYNCED_OPEN: 0, META_UNSYNCED_UPTO: self._upto})
                _log.info("gateway clock synced: items up to gw_seq %d stay flagged", self._upto)
            return state

    def stamped_synced(self, gw_seq: int) -> bool:
        """Whether the item ``gw_seq`` was stamped by a synchronised clock."""
        state = self.check()
        with self._lock:
            return state.synced and not self._open and gw_seq > self._upto
