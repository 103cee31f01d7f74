"""Gateway -> cloud ingest batch (``POST /api/v1/ingest``) as pydantic v2 models.

The JSON wrapper is never signed: frames and adverts travel as base64 of the exact
bytes received, and only those bytes are verified. The models therefore check the
envelope (types, discriminator, item count) but keep ``frame_b64`` / ``payload_b64``
as plain strings: one bad item must be rejected on its own (with a reason in its
:class:`ItemResult`), never make the whole batch fail validation. Decode each item
with :func:`decode_b64_item`, which raises a :class:`ProtocolError` per item.
"""

import base64
import binascii
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from patrol_protocol.errors import MalformedError, OversizedError
from patrol_protocol.limits import MAX_ADV_PAYLOAD_BYTES, MAX_BATCH_ITEMS, MAX_FRAME_BYTES

GwSeq = Annotated[int, Field(ge=0, le=2**64 - 1)]
"""The gateway's own strictly increasing u64 sequence, persisted with its queue."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceFrameItem(_Model):
    """A wearable's event frame, relayed byte for byte from its MQTT ``up`` topic."""

    type: Literal["device_frame"]
    gw_seq: GwSeq
    received_at: AwareDatetime
    topic: str
    frame_b64: str


class AdvertItem(_Model):
    """A signed BLE advert payload the gateway heard, with its RSSI."""

    type: Literal["advert"]
    gw_seq: GwSeq
    received_at: AwareDatetime
    company_id: Annotated[int, Field(ge=0, le=0xFFFF)]
    payload_b64: str
    rssi_dbm: Annotated[int, Field(ge=-128, le=127)]


class ObservationItem(_Model):
    """What the gateway itself saw (eviction record, tag away/back, health): lower assurance."""

    type: Literal["observation"]
    gw_seq: GwSeq
    received_at: AwareDatetime
    observation: dict[str, JsonValue]


BatchItem = Annotated[DeviceFrameItem | AdvertItem | ObservationItem, Field(discriminator="type")]


class IngestBatch(_Model):
    """One ingest request; ``clock_synced`` says whether ``received_at`` clocks were NTP-synced."""

    v: Literal[1]
    gateway_id: str
    batch_id: UUID
    sent_at: AwareDatetime
    clock_synced: bool
    items: Annotated[list[BatchItem], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]


class ItemResult(_Model):
    """The final verdict on one item; ``key`` when stored, ``reason`` when rejected."""

    gw_seq: GwSeq
    status: Literal["accepted", "duplicate", "rejected"]
    key: str | None = None
    reason: str | None = None


class IngestResponse(_Model):
    """One result per item, in the batch's order."""

    v: Literal[1] = 1
    batch_id: UUID
    results: list[ItemResult]


def _b64_limit(max_bytes: int) -> int:
    return 4 * ((max_bytes + 2) // 3)


def decode_b64_item(item: DeviceFrameItem | AdvertItem) -> bytes:
    """The exact bytes inside an item; MalformedError for bad base64, OversizedError beyond limits.

    Strict canonical base64 with padding (RFC 4648 section 4): whitespace, missing or
    excess padding and non-zero trailing bits are refused, so one byte string has
    exactly one accepted text.
    """
    if isinstance(item, DeviceFrameItem):
        field, text, limit = "frame_b64", item.frame_b64, MAX_FRAME_BYTES
    else:
        field, text, limit = "payload_b64", item.payload_b64, MAX_ADV_PAYLOAD_BYTES
    if len(text) > _b64_limit(limit):
        raise OversizedError(f"{field} is {len(text)} chars, more than {limit} bytes encode to")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedError(f"{field} is not valid base64: {exc}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedError(f"{field} is not valid base64: not the canonical encoding")
    if len(raw) > limit:
        raise OversizedError(f"{field} decodes to {len(raw)} bytes, limit {limit}")
    return raw
