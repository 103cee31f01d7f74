"""Named limits of wire protocol v1, each with the reason it exists.

Decoders reject anything beyond these values; encoders refuse to build it.
The MicroPython firmware mirrors them in ``firmware/lib/patrol/limits.py``.
"""

from typing import Final

PROTOCOL_VERSION: Final = 1
"""Version byte at offset 0 of every format; anything else is refused, never guessed."""

FRAME_HEADER_BYTES: Final = 20
"""Fixed header of event and command frames (version .. body_len)."""

FRAME_MAC_BYTES: Final = 16
"""HMAC-SHA256 truncated to 128 bits: ample for a per-frame signature."""

MAX_BODY_BYTES: Final = 192
"""Keeps a frame inside one small MQTT packet and one flash-queue slot."""

MAX_FRAME_BYTES: Final = 256
"""Header 20 + body 192 + MAC 16 = 228; anything larger is not ours."""

MAX_EQUIPMENT_ITEMS: Final = 16
"""A guard carries a handful of items; 16 x 6 bytes fits the heartbeat body."""

MAX_ADV_PAYLOAD_BYTES: Final = 24
"""31-byte legacy advert - flags AD (3) - manufacturer AD header (4)."""

MAX_ADV_BYTES: Final = 31
"""A legacy BLE advertisement carries at most 31 bytes of AD structures."""

ADV_MAC_BYTES: Final = 8
"""64-bit advert MAC: enough for a value valid for one time step or counter."""

MAX_BATCH_ITEMS: Final = 500
"""One HTTPS ingest request stays well under a second to verify."""

MAX_BATCH_BYTES: Final = 1_048_576
"""Refuses a runaway or hostile ingest body before parsing it."""

DEV_COMPANY_ID: Final = 0xFFFF
"""BLE company id reserved by the Bluetooth SIG for testing; the development default."""

DEVICE_KEY_BYTES: Final = 32
"""Wearable HMAC-SHA256 keys are 32 random bytes (the hash's block-size half)."""

ADV_KEY_BYTES: Final = 16
"""Beacon, equipment-tag and presence keys are 16 random bytes."""
