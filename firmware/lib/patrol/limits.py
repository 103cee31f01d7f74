"""Named limits of wire protocol v1 (docs/protocol.md), one reason each.

Mirrors patrol_protocol/limits.py; the shared test vectors keep the two honest.
"""

from patrol.compat import const

PROTOCOL_VERSION = const(1)  # every format starts with this version byte
MAX_FRAME_BYTES = const(256)  # header 20 + body 192 + MAC 16 = 228; anything larger is not ours
MAX_BODY_BYTES = const(192)  # one small MQTT packet and one flash-queue slot
FRAME_HEADER_BYTES = const(20)  # fixed event/command header
FRAME_MAC_BYTES = const(16)  # HMAC-SHA256 truncated to 128 bits
MAX_EQUIPMENT_ITEMS = const(16)  # a guard carries a handful of items; 16 x 6 bytes fits the body
MAX_ADV_PAYLOAD_BYTES = const(24)  # 31-byte legacy advert - flags AD (3) - manufacturer AD header (4)
ADV_MAC_BYTES = const(8)  # 64-bit advert MAC: valid for one step or counter only
MAX_ADV_BYTES = const(31)  # legacy advertising PDU payload
DEV_COMPANY_ID = const(0xFFFF)  # Bluetooth SIG id reserved for testing
DEVICE_KEY_BYTES = const(32)  # per-wearable HMAC-SHA256 key
ACK_FRAME_BYTES = const(12)  # version, kind, reserved u16, device_id, acked_seq
STATUS_FRAME_BYTES = const(6)  # version, state, device_id
MAX_SEQ = const(0xFFFFFFFF)  # seq is u32 and never reused
