"""The two MAC primitives of the protocol (HMAC-SHA256, AES-CMAC) and a safe compare."""

import hashlib
import hmac

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from patrol_protocol.errors import MalformedError

AES_KEY_BYTES = 16
"""NTAG 424 DNA keys are AES-128."""


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """Full 32-byte HMAC-SHA256 (RFC 2104 / FIPS 198); callers truncate."""
    return hmac.new(key, data, hashlib.sha256).digest()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """16-byte AES-128 CMAC (RFC 4493) of ``data``."""
    if len(key) != AES_KEY_BYTES:
        raise MalformedError(f"AES-CMAC key must be {AES_KEY_BYTES} bytes, got {len(key)}")
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare MACs without leaking where they differ."""
    return hmac.compare_digest(a, b)
