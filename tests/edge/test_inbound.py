"""The structural check of an MQTT message on patrol/v1/dev/+/up (pure)."""

import json
from pathlib import Path

import pytest
from edgetest import eviction_frame, heartbeat_frame

from edge_agent.inbound import ReceivedFrame, Rejected, check_up_message
from patrol_protocol.frames import Kind, decode_frame

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
RECEIVED_AT_MS = 1_795_580_000_123
DEVICE = 0x0000A001
TOPIC = "patrol/v1/dev/0000a001/up"


def _invalid_frames() -> list[tuple[str, bytes, str]]:
    """invalid.json frames that fail decode_frame (the structure the edge checks)."""
    doc = json.loads((VECTORS / "invalid.json").read_text(encoding="utf-8"))
    cases = []
    for vector in doc["frames"]:
        raw = bytes.fromhex(vector["hex"])
        try:
            decode_frame(raw)
        except ValueError:
            cases.append((vector["name"], raw, vector["error"]))
    return cases


def test_good_frame_becomes_a_received_frame():
    raw = heartbeat_frame(DEVICE, 7)
    assert check_up_message(TOPIC, raw, RECEIVED_AT_MS) == ReceivedFrame(
        topic=TOPIC,
        raw=raw,
        device_id=DEVICE,
        seq=7,
        kind=Kind.HEARTBEAT,
        received_at_ms=RECEIVED_AT_MS,
    )


@pytest.mark.parametrize(("name", "raw", "reason"), _invalid_frames(), ids=lambda v: str(v)[:40])
def test_structurally_invalid_frame_is_rejected_with_the_codec_reason(name, raw, reason):
    result = check_up_message(TOPIC, raw, RECEIVED_AT_MS)
    assert isinstance(result, Rejected), name
    assert (result.reason, result.raw, result.topic) == (reason, raw, TOPIC)


def test_invalid_vectors_cover_every_structural_reason():
    reasons = {reason for _, _, reason in _invalid_frames()}
    assert reasons == {"truncated", "oversized", "bad_version", "unknown_kind", "malformed"}


def test_frame_of_another_device_is_a_topic_mismatch():
    result = check_up_message(TOPIC, heartbeat_frame(0x0000A002, 1), RECEIVED_AT_MS)
    assert isinstance(result, Rejected)
    assert result.reason == "topic_mismatch"
    assert result.detail == "frame device 0000a002 on topic of 0000a001"


@pytest.mark.parametrize(
    "topic",
    ["patrol/v1/dev/A001/up", "patrol/v1/dev/0000A001/up", "patrol/v1/dev/0000a001/status", "x"],
)
def test_bad_topic(topic):
    result = check_up_message(topic, heartbeat_frame(DEVICE, 1), RECEIVED_AT_MS)
    assert isinstance(result, Rejected)
    assert result.reason == "bad_topic"


def test_oversized_payload_is_refused_before_decoding():
    result = check_up_message(TOPIC, b"\x01" * 100_000, RECEIVED_AT_MS)
    assert isinstance(result, Rejected)
    assert result.reason == "oversized"
    assert len(result.raw) == 100_000  # the queue keeps only the first bytes


def test_eviction_frame_carries_its_range():
    result = check_up_message(TOPIC, eviction_frame(DEVICE, 10, 5, 9), RECEIVED_AT_MS)
    assert isinstance(result, ReceivedFrame)
    assert (result.kind, result.evicted, result.eviction_ignored) == (Kind.EVICTION, (5, 9), "")


def test_eviction_range_not_below_its_own_seq_is_relayed_but_ignored():
    result = check_up_message(TOPIC, eviction_frame(DEVICE, 7, 5, 9), RECEIVED_AT_MS)
    assert isinstance(result, ReceivedFrame)
    assert result.evicted is None
    assert result.eviction_ignored == "range 5..9 not below seq 7"
