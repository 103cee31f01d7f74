"""Feedback to the guard: LED, buzzer and vibration patterns, played without blocking.

A pattern is a tuple of steps ``(outputs, duration_ms)``; ``outputs`` is a bit
mask of LED / BUZZER / VIBRATE. ``Player.poll()`` runs from the wearable's
``step()`` and switches the HAL outputs (``hal.outputs.set(mask)``) when a step
ends, so nothing sleeps. A repeating pattern (pre-alarm, locate) loops until its
deadline or ``stop()``. A pattern of lower priority than the one playing is
dropped (a "scan OK" beep never cuts the man-down pre-alarm short).
"""

from patrol.compat import const, ticks_add, ticks_diff

LED = const(0x01)
BUZZER = const(0x02)
VIBRATE = const(0x04)

# name: (priority, steps). Short, distinct rhythms a guard can tell apart by ear and touch.
SCAN_OK = ("scan_ok", 0, ((LED | BUZZER, 100),))
SCAN_REJECTED = ("scan_rejected", 0, ((LED | BUZZER, 80), (0, 80), (LED | BUZZER, 80), (0, 80), (LED | BUZZER, 80)))
OFFLINE = ("offline", 0, ((LED, 50), (0, 450), (LED, 50)))
SOS_SENT = ("sos_sent", 2, ((LED | VIBRATE, 1000),))
LOCATE = ("locate", 1, ((LED | BUZZER, 200), (0, 800)))
PREALARM = ("prealarm", 3, ((LED | BUZZER | VIBRATE, 500), (0, 500)))


class Player:
    """Plays one pattern at a time on ``outputs`` (an object with ``set(mask)``)."""

    def __init__(self, outputs, clock):
        self._outputs = outputs
        self._clock = clock
        self._pattern = None
        self._index = 0
        self._step_end = 0
        self._until = None  # ticks deadline of a repeating pattern, None: play once
        self._mask = 0
        self.dropped = 0
        outputs.set(0)

    @property
    def playing(self):
        """Name of the pattern playing, or None."""
        return self._pattern[0] if self._pattern is not None else None

    def play(self, pattern, repeat_ms=0):
        """Start ``pattern``; with ``repeat_ms`` > 0 it loops for that long."""
        if self._pattern is not None and pattern[1] < self._pattern[1]:
            self.dropped += 1
            return
        now = self._clock.ticks_ms()
        self._pattern = pattern
        self._until = ticks_add(now, repeat_ms) if repeat_ms > 0 else None
        self._start_step(pattern, 0, now)

    def stop(self, name=None):
        """Stop the current pattern (only if it is ``name``, when given); outputs off."""
        if self._pattern is None or (name is not None and self._pattern[0] != name):
            return
        self._pattern = None
        self._set(0)

    def poll(self, now):
        """Advance the pattern; call once per main-loop step."""
        pattern = self._pattern
        if pattern is None or ticks_diff(now, self._step_end) < 0:
            return
        index = self._index + 1
        if index >= len(pattern[2]):
            if self._until is None or ticks_diff(now, self._until) >= 0:
                self.stop()
                return
            index = 0
        self._start_step(pattern, index, self._step_end)

    def _start_step(self, pattern, index, start):
        self._index = index
        mask, duration_ms = pattern[2][index]
        self._step_end = ticks_add(start, duration_ms)
        self._set(mask)

    def _set(self, mask):
        if mask != self._mask:
            self._mask = mask
            self._outputs.set(mask)
