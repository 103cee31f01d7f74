"""Patrol wearable, beacon and equipment-tag firmware (MicroPython, CPython-importable).

The same modules run on an ESP32 (hal/esp32.py), in the MicroPython Unix port under
test (hal/sim.py), and under CPython in the demo. Everything here sticks to the
subset both interpreters share.
"""

FW_VERSION = (0, 1, 0)
