"""The signed envelope that event frames and commands share (private).

Both are ``20-byte header | body | 16-byte MAC`` with the MAC an HMAC-SHA256
over everything before it (docs/protocol.md); only the meaning of the header's
fields differs, so the size, version and length checks live here once.
"""

import struct
from typing import Final

from patrol_protocol._checks import check_bytes
from patrol_protocol.crypto import hmac_sha256
from patrol_protocol.errors import MalformedError, OversizedError, TruncatedError, VersionError
from patrol_protocol.limits import (
    FRAME_HEADER_BYTES,
    FRAME_MAC_BYTES,
    MAX_BODY_BYTES,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
)

HEADER: Final = struct.Struct(">BBBBIIIHH")
"""version, kind, key_id, flags, u32, u32, u32, u16, body_len."""


def envelope_mac(key: bytes, signed_part: bytes) -> bytes:
    """The truncated HMAC-SHA256 that ends every envelope."""
    return hmac_sha256(key, signed_part)[:FRAME_MAC_BYTES]


def read_header(raw: bytes, what: str) -> tuple[int, ...]:
    """Check size limits and version; return the header fields, body_len last.

    The caller validates the header's own fields next, then calls
    :func:`split_body`: that is the documented order of checks.
    """
    size = len(raw)
    if size > MAX_FRAME_BYTES:
        raise OversizedError(f"{what} is {size} bytes, limit {MAX_FRAME_BYTES}")
    if size == 0:
        raise TruncatedError(f"{what} is empty")
    if raw[0] != PROTOCOL_VERSION:
        raise VersionError(f"version={raw[0]}, expected {PROTOCOL_VERSION}")
    if size < FRAME_HEADER_BYTES:
        raise TruncatedError(f"{what} header needs {FRAME_HEADER_BYTES} bytes, got {size}")
    return HEADER.unpack_from(raw)


def split_body(raw: bytes, body_len: int, what: str) -> tuple[bytes, bytes]:
    """Check ``body_len`` against the limit and the real size; return (body, mac)."""
    size = len(raw)
    if body_len > MAX_BODY_BYTES:
        raise OversizedError(f"body_len={body_len} exceeds {MAX_BODY_BYTES}")
    expected = FRAME_HEADER_BYTES + body_len + FRAME_MAC_BYTES
    if size < expected:
        raise TruncatedError(f"body_len={body_len} needs a {expected}-byte {what}, got {size}")
    if size > expected:
        raise MalformedError(f"{size - expected} trailing bytes after the mac")
    return raw[FRAME_HEADER_BYTES : FRAME_HEADER_BYTES + body_len], raw[-FRAME_MAC_BYTES:]


def check_envelope(raw: bytes, body: bytes, mac: bytes) -> None:
    """Value-type check: ``raw`` must be exactly header + ``body`` + ``mac``."""
    if len(body) > MAX_BODY_BYTES:
        raise OversizedError(f"body is {len(body)} bytes, limit {MAX_BODY_BYTES}")
    check_bytes("mac", mac, FRAME_MAC_BYTES)
    if (
        len(raw) != FRAME_HEADER_BYTES + len(body) + FRAME_MAC_BYTES
        or raw[FRAME_HEADER_BYTES:-FRAME_MAC_BYTES] != body
        or raw[-FRAME_MAC_BYTES:] != mac
    ):
        raise MalformedError("raw must be the 20-byte header + body + mac")
