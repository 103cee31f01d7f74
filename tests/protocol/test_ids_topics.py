"""Device id text form and MQTT topic names."""

import pytest

from patrol_protocol.errors import MalformedError
from patrol_protocol.ids import device_id_text, parse_device_id
from patrol_protocol.topics import (
    STATUS_SUBSCRIPTION,
    UP_SUBSCRIPTION,
    ack_topic,
    cmd_topic,
    parse_device_topic,
    status_topic,
    up_topic,
)


@pytest.mark.parametrize(
    ("device_id", "text"),
    [(0x0000A001, "0000a001"), (0, "00000000"), (0xFFFFFFFF, "ffffffff"), (0xDEADBEEF, "deadbeef")],
)
def test_device_id_text_round_trip(device_id, text):
    assert device_id_text(device_id) == text
    assert parse_device_id(text) == device_id


@pytest.mark.parametrize("device_id", [-1, 1 << 32, True])
def test_device_id_text_range_checked(device_id):
    with pytest.raises(MalformedError, match="device_id"):
        device_id_text(device_id)


@pytest.mark.parametrize(
    "text",
    [
        "0000A001",  # uppercase
        "a001",  # short
        "00000a001",  # long
        "0000a00g",
        " 000a001",
        "0000a001\n",
        "0x00a001",
        "+000a001",
        "0000_a01",
        "",
        "０000a001",  # fullwidth digit  # noqa: RUF001
    ],
)
def test_parse_device_id_rejects(text):
    with pytest.raises(MalformedError, match="not exactly 8 lowercase hex digits"):
        parse_device_id(text)


def test_topics():
    assert up_topic(0x0000A001) == "patrol/v1/dev/0000a001/up"
    assert ack_topic(0x0000A001) == "patrol/v1/dev/0000a001/ack"
    assert cmd_topic(0x0000A001) == "patrol/v1/dev/0000a001/cmd"
    assert status_topic(0x0000A001) == "patrol/v1/dev/0000a001/status"
    assert UP_SUBSCRIPTION == "patrol/v1/dev/+/up"
    assert STATUS_SUBSCRIPTION == "patrol/v1/dev/+/status"


@pytest.mark.parametrize("leaf", ["up", "ack", "cmd", "status"])
def test_parse_device_topic(leaf):
    assert parse_device_topic(f"patrol/v1/dev/ffffffff/{leaf}") == (0xFFFFFFFF, leaf)


@pytest.mark.parametrize(
    "topic",
    [
        "patrol/v1/dev/0000a001",
        "patrol/v1/dev/0000a001/up/",
        "patrol/v1/dev/0000a001/down",
        "patrol/v2/dev/0000a001/up",
        "patrol/v1/dev/0000A001/up",
        "patrol/v1/dev/+/up",
        "/patrol/v1/dev/0000a001/up",
        "patrol/v1/dev/0000a001/up/extra",
        "",
    ],
)
def test_parse_device_topic_rejects(topic):
    with pytest.raises(MalformedError):
        parse_device_topic(topic)
