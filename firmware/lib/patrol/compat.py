"""Shims for the few names MicroPython and CPython spell differently.

MicroPython has ``micropython.const`` and ``time.ticks_ms``; CPython has neither.
Firmware modules import them from here so the same file runs on both.
"""

try:
    from micropython import const  # type: ignore[import-not-found]
except ImportError:  # CPython

    def const(value):  # type: ignore[no-redef]
        """CPython stand-in: MicroPython folds const() at compile time."""
        return value


try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms  # type: ignore[attr-defined]
except ImportError:  # CPython
    import time as _time

    # MicroPython's tick counter wraps at a power of two; mirror it so
    # ticks_diff() behaves the same on both interpreters.
    _TICKS_PERIOD = 1 << 30
    _TICKS_HALF = _TICKS_PERIOD // 2

    def ticks_ms():  # type: ignore[no-redef]
        """Monotonic milliseconds, wrapping like MicroPython's."""
        return int(_time.monotonic() * 1000) % _TICKS_PERIOD  # pyright: ignore[reportAttributeAccessIssue]

    def ticks_add(ticks, delta_ms):  # type: ignore[no-redef]
        """``ticks + delta`` modulo the tick period."""
        return (ticks + delta_ms) % _TICKS_PERIOD

    def ticks_diff(end, start):  # type: ignore[no-redef]
        """Signed difference ``end - start`` that survives wrap-around."""
        return ((end - start + _TICKS_HALF) % _TICKS_PERIOD) - _TICKS_HALF

    def sleep_ms(duration_ms):  # type: ignore[no-redef]
        """Block for ``duration_ms`` milliseconds."""
        _time.sleep(duration_ms / 1000)


def hexlify(data):
    """Lowercase hex text of ``data`` (bytes.hex() exists on both, binascii differs)."""
    return bytes(data).hex()


def path_exists(path):
    """True if ``path`` exists (MicroPython has no os.path)."""
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path):
    """Create ``path`` and its parents if missing (MicroPython has no os.makedirs)."""
    import os

    prefix = "/" if path.startswith("/") else ""
    current = ""
    for part in path.split("/"):
        if not part:
            continue
        current = prefix + part if not current else current + "/" + part
        if not path_exists(current):
            os.mkdir(current)
