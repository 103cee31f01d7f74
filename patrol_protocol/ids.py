"""Device id text form: exactly 8 lowercase hexadecimal digits (MQTT topics, usernames)."""

import re

from patrol_protocol._checks import check_uint
from patrol_protocol.errors import MalformedError

_DEVICE_ID_TEXT = re.compile(r"[0-9a-f]{8}")


def device_id_text(device_id: int) -> str:
    """Return the 8-hex-digit text form of a u32 device id (0x0000a001 -> "0000a001")."""
    check_uint("device_id", device_id, 32)
    return f"{device_id:08x}"


def parse_device_id(text: str) -> int:
    """Parse the text form back to the u32; anything but 8 lowercase hex digits is refused."""
    if not isinstance(text, str) or _DEVICE_ID_TEXT.fullmatch(text) is None:
        raise MalformedError(f"device id text {text!r} is not exactly 8 lowercase hex digits")
    return int(text, 16)
