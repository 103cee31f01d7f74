"""HMAC-SHA256 (RFC 2104) written out over hashlib.sha256.

Why by hand: MicroPython builds ship hashlib.sha256 but no ``hmac`` module, and
micropython-lib's hmac is not frozen into the ESP32 image we target. The function
is small, runs unchanged under CPython, and the RFC 4231 vectors pin it down.
"""

from hashlib import sha256

from patrol.compat import const

_BLOCK_BYTES = const(64)  # SHA-256 block size
_IPAD = const(0x36)
_OPAD = const(0x5C)


def hmac_sha256(key, data):
    """HMAC-SHA256 of ``data`` under ``key``; returns 32 bytes."""
    if len(key) > _BLOCK_BYTES:
        key = sha256(key).digest()
    inner_key = bytearray(_BLOCK_BYTES)
    outer_key = bytearray(_BLOCK_BYTES)
    for i in range(len(key)):
        inner_key[i] = key[i] ^ _IPAD
        outer_key[i] = key[i] ^ _OPAD
    for i in range(len(key), _BLOCK_BYTES):
        inner_key[i] = _IPAD
        outer_key[i] = _OPAD
    inner = sha256(inner_key)
    inner.update(data)
    outer = sha256(outer_key)
    outer.update(inner.digest())
    return outer.digest()


def constant_time_equal(a, b):
    """Compare two byte strings without an early exit on the first difference."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
