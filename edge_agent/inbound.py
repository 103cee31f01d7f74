"""Value types for what enters the edge queue, and the pure check of an MQTT message.

The MQTT callback turns a paho message into one of these frozen values at the
boundary (STYLE habit 3: bytes in, frozen dataclass out); everything after it --
the committer, the queue -- trusts them. The check is structural only: the edge
is a relay, not a witness, so it never verifies MACs (it holds no device keys)
nor bodies. It refuses only what it cannot attribute to the device on whose
topic it arrived (no parseable frame, wrong topic, another device's id), with a
stable reason. A frame with a sound header but a bad body is relayed and counted
as received: the cloud rejects it into its rejected-events record, and the
wearable is not made to resend it forever.
"""

from dataclasses import dataclass
from typing import Final

from patrol_protocol.errors import ProtocolError
from patrol_protocol.frames import Eviction, Kind, decode_body, decode_frame
from patrol_protocol.limits import MAX_FRAME_BYTES
from patrol_protocol.topics import parse_device_topic

MAX_DEAD_LETTER_BYTES: Final = 1024
"""Raw bytes kept per dead letter: enough to see what arrived (a frame is <= 256),
never enough for a hostile publisher to fill the Pi's disk through it."""

REASON_BAD_TOPIC: Final = "bad_topic"
"""The topic is not ``patrol/v1/dev/<8 hex>/up``."""

REASON_TOPIC_MISMATCH: Final = "topic_mismatch"
"""The frame's device id differs from the device id in its topic (the broker's ACL
ties a topic to one MQTT user, so the frame claims to be someone else)."""


REASON_SEQ_CONFLICT: Final = "seq_conflict"
"""Same (device_id, seq) as a queued frame, different bytes (docs/protocol.md)."""


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    """A structurally valid event frame received on its device's ``up`` topic."""

    topic: str
    raw: bytes
    device_id: int
    seq: int
    kind: int
    received_at_ms: int
    evicted: tuple[int, int] | None = None
    """``(first_seq, last_seq)`` declared by an EVICTION frame, else None."""
    eviction_ignored: str = ""
    """Why an EVICTION frame's range does not count towards the ack (bad body, or a
    range not below the frame's own seq: acking it would let the wearable free
    frames the edge never saw). The frame itself is still queued and relayed."""


@dataclass(frozen=True, slots=True)
class ReceivedAdvert:
    """A BLE manufacturer payload heard by the gateway, forwarded byte for byte."""

    company_id: int
    payload: bytes
    rssi_dbm: int
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class GatewayObservation:
    """Something the gateway itself derived; ``body_json`` is the observation object."""

    body_json: bytes
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input that goes to the dead-letter table instead of the queue.

    ``raw`` is everything that arrived; the queue stores its first
    :data:`MAX_DEAD_LETTER_BYTES` and its length.
    """

    reason: str
    raw: bytes
    topic: str | None
    received_at_ms: int
    detail: str = ""


Inbound = ReceivedFrame | ReceivedAdvert | GatewayObservation | Rejected


def check_up_message(topic: str, payload: bytes, received_at_ms: int) -> ReceivedFrame | Rejected:
    """Check one message from ``patrol/v1/dev/+/up``: topic, frame structure, ids, eviction range.

    Pure and cheap (no MAC, no I/O), so the MQTT callback can run it inline.
    """

    def reject(reason: str, detail: str) -> Rejected:
        return Rejected(
            reason=reason,
            raw=payload,
            topic=topic,
            received_at_ms=received_at_ms,
            detail=detail,
        )

    try:
        topic_device_id, leaf = parse_device_topic(topic)
    except ProtocolError as exc:
        return reject(REASON_BAD_TOPIC, str(exc))
    if leaf != "up":
        return reject(REASON_BAD_TOPIC, f"leaf {leaf!r} is not 'up'")
    if len(payload) > MAX_FRAME_BYTES:
        return reject("oversized", f"{len(payload)} bytes > MAX_FRAME_BYTES {MAX_FRAME_BYTES}")
    try:
        frame = decode_frame(payload)
    except ProtocolError as exc:
        return reject(exc.reason, str(exc))
    header = frame.header
    if header.device_id != topic_device_id:
        return reject(
            REASON_TOPIC_MISMATCH,
            f"frame device {header.device_id:08x} on topic of {topic_device_id:08x}",
        )
    evicted: tuple[int, int] | None = None
    eviction_ignored = ""
    if header.kind == Kind.EVICTION:
        evicted, eviction_ignored = _eviction_range(header.seq, frame.body)
    return ReceivedFrame(
        topic=topic,
        raw=payload,
        device_id=header.device_id,
        seq=header.seq,
        kind=header.kind,
        received_at_ms=received_at_ms,
        evicted=evicted,
        eviction_ignored=eviction_ignored,
    )


def _eviction_range(seq: int, body: bytes) -> tuple[tuple[int, int] | None, str]:
    try:
        eviction = decode_body(Kind.EVICTION, body)
    except ProtocolError as exc:
        return None, f"{exc.reason}: {exc}"
    assert isinstance(eviction, Eviction)
    if not eviction.last_seq < seq:
        return None, f"range {eviction.first_seq}..{eviction.last_seq} not below seq {seq}"
    return (eviction.first_seq, eviction.last_seq), ""
