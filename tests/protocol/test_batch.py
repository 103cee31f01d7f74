"""Gateway -> cloud batch models: envelope validation and per-item base64 decoding."""

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from patrol_protocol.batch import (
    AdvertItem,
    BatchItem,
    DeviceFrameItem,
    IngestBatch,
    IngestResponse,
    ItemResult,
    ObservationItem,
    decode_b64_item,
)
from patrol_protocol.errors import MalformedError, OversizedError
from patrol_protocol.frames import decode_frame
from patrol_protocol.limits import MAX_BATCH_ITEMS

from .vectors import load

FRAME = bytes.fromhex(load("frames.json")["vectors"][0]["frame_hex"])
PAYLOAD = bytes.fromhex(load("adverts.json")["vectors"][0]["payload_hex"])
BATCH_ID = "9d2a7c1e-6a43-4f0e-9b8f-3f4f1f2d8e10"


def _frame_item(gw_seq: int = 17, frame_b64: str | None = None) -> dict:
    return {
        "type": "device_frame",
        "gw_seq": gw_seq,
        "received_at": "2026-11-25T04:09:58.010Z",
        "topic": "patrol/v1/dev/0000a001/up",
        "frame_b64": base64.b64encode(FRAME).decode() if frame_b64 is None else frame_b64,
    }


def _batch(items: list) -> dict:
    return {
        "v": 1,
        "gateway_id": "gw-site-1",
        "batch_id": BATCH_ID,
        "sent_at": "2026-11-25T04:10:00.125Z",
        "clock_synced": True,
        "items": items,
    }


DOC_ITEMS = [
    _frame_item(),
    {
        "type": "advert",
        "gw_seq": 18,
        "received_at": "2026-11-25T04:09:58.500Z",
        "company_id": 65535,
        "payload_b64": base64.b64encode(PAYLOAD).decode(),
        "rssi_dbm": -61,
    },
    {
        "type": "observation",
        "gw_seq": 19,
        "received_at": "2026-11-25T04:09:59.000Z",
        "observation": {
            "kind": "evicted",
            "first_gw_seq": 3,
            "last_gw_seq": 9,
            "count": 7,
            "reason": "disk_budget",
        },
    },
]


def test_documented_batch_parses():
    batch = IngestBatch.model_validate_json(json.dumps(_batch(DOC_ITEMS)))
    assert batch.batch_id == uuid.UUID(BATCH_ID)
    assert batch.sent_at == datetime(2026, 11, 25, 4, 10, 0, 125000, tzinfo=UTC)
    assert [type(i) for i in batch.items] == [DeviceFrameItem, AdvertItem, ObservationItem]
    frame_item, advert_item, observation = batch.items
    assert isinstance(frame_item, DeviceFrameItem)
    assert decode_frame(decode_b64_item(frame_item)).raw == FRAME
    assert isinstance(advert_item, AdvertItem)
    assert decode_b64_item(advert_item) == PAYLOAD
    assert isinstance(observation, ObservationItem)
    assert observation.observation["count"] == 7


def test_batch_round_trips_through_json():
    batch = IngestBatch.model_validate(_batch(DOC_ITEMS))
    assert IngestBatch.model_validate_json(batch.model_dump_json()) == batch


def test_bad_base64_fails_only_its_item():
    """A garbled frame never rejects the batch: the model accepts, the item decode refuses."""
    batch = IngestBatch.model_validate(_batch([_frame_item(1, "!!!not base64"), _frame_item(2)]))
    bad, good = batch.items
    assert isinstance(bad, DeviceFrameItem) and isinstance(good, DeviceFrameItem)
    with pytest.raises(MalformedError, match="frame_b64 is not valid base64") as err:
        decode_b64_item(bad)
    assert err.value.reason == "malformed"
    assert decode_b64_item(good) == FRAME


@pytest.mark.parametrize(
    "text", ["AQID\n", "AQI", "AQ==AQ==", " AQID", "AQID====", "ÄQID", "AR=="], ids=repr
)
def test_decode_b64_item_is_strict(text):
    item = DeviceFrameItem.model_validate(_frame_item(1, text))
    with pytest.raises(MalformedError, match="not valid base64"):
        decode_b64_item(item)


def test_decode_b64_item_limits():
    big_frame = DeviceFrameItem.model_validate(
        _frame_item(1, base64.b64encode(bytes(257)).decode())
    )
    with pytest.raises(OversizedError, match="frame_b64"):
        decode_b64_item(big_frame)
    huge = DeviceFrameItem.model_validate(_frame_item(1, "A" * 100_000))
    with pytest.raises(OversizedError, match="frame_b64 is 100000 chars"):
        decode_b64_item(huge)
    big_payload = AdvertItem.model_validate(
        {**DOC_ITEMS[1], "payload_b64": base64.b64encode(bytes(25)).decode()}
    )
    with pytest.raises(OversizedError, match="payload_b64 is 36 chars, more than 24 bytes"):
        decode_b64_item(big_payload)
    exact = DeviceFrameItem.model_validate(_frame_item(1, base64.b64encode(bytes(256)).decode()))
    assert decode_b64_item(exact) == bytes(256)


def _errors(doc) -> list[dict]:
    with pytest.raises(ValidationError) as err:
        IngestBatch.model_validate(doc)
    return err.value.errors()


def test_too_many_items():
    items = [_frame_item(i) for i in range(MAX_BATCH_ITEMS + 1)]
    errors = _errors(_batch(items))
    assert errors[0]["type"] == "too_long"
    assert IngestBatch.model_validate(_batch(items[:MAX_BATCH_ITEMS]))


def test_empty_batch_refused():
    assert _errors(_batch([]))[0]["type"] == "too_short"


def test_bad_discriminator():
    errors = _errors(_batch([{**_frame_item(), "type": "frame"}]))
    assert errors[0]["type"] == "union_tag_invalid"
    errors = _errors(_batch([{k: v for k, v in _frame_item().items() if k != "type"}]))
    assert errors[0]["type"] == "union_tag_not_found"


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"v": 2}, ("v",)),
        ({"batch_id": "not-a-uuid"}, ("batch_id",)),
        ({"sent_at": "2026-11-25T04:10:00"}, ("sent_at",)),  # naive: refused
        ({"clock_synced": "maybe"}, ("clock_synced",)),
        ({"extra": 1}, ("extra",)),
    ],
)
def test_envelope_fields(change, loc):
    errors = _errors({**_batch(DOC_ITEMS), **change})
    assert errors[0]["loc"] == loc


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({**_frame_item(), "gw_seq": -1}, "gw_seq"),
        ({**_frame_item(), "gw_seq": 1 << 64}, "gw_seq"),
        ({**DOC_ITEMS[1], "company_id": 0x10000}, "company_id"),
        ({**DOC_ITEMS[1], "rssi_dbm": -129}, "rssi_dbm"),
        ({**DOC_ITEMS[2], "observation": "evicted"}, "observation"),
    ],
)
def test_item_fields(item, field):
    errors = _errors(_batch([item]))
    assert errors[0]["loc"][-1] == field


def test_batch_item_adapter():
    adapter: TypeAdapter[object] = TypeAdapter(BatchItem)
    assert isinstance(adapter.validate_python(DOC_ITEMS[1]), AdvertItem)


def test_response_model():
    response = IngestResponse(
        batch_id=uuid.UUID(BATCH_ID),
        results=[
            ItemResult(gw_seq=17, status="accepted", key="0000a001:42"),
            ItemResult(gw_seq=18, status="duplicate", key="beacon:000005b7:80"),
            ItemResult(gw_seq=19, status="rejected", reason="bad_mac"),
        ],
    )
    doc = json.loads(response.model_dump_json(exclude_none=True))
    assert doc == {
        "v": 1,
        "batch_id": BATCH_ID,
        "results": [
            {"gw_seq": 17, "status": "accepted", "key": "0000a001:42"},
            {"gw_seq": 18, "status": "duplicate", "key": "beacon:000005b7:80"},
            {"gw_seq": 19, "status": "rejected", "reason": "bad_mac"},
        ],
    }
    with pytest.raises(ValidationError):
        ItemResult(gw_seq=1, status="lost")  # type: ignore[arg-type]
