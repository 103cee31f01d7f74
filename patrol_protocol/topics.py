"""MQTT topic names of the site broker: ``patrol/v1/dev/{id}/{leaf}``."""

from typing import Final

from patrol_protocol.errors import MalformedError
from patrol_protocol.ids import device_id_text, parse_device_id

TOPIC_PREFIX: Final = "patrol/v1/dev"
UP_SUBSCRIPTION: Final = "patrol/v1/dev/+/up"
STATUS_SUBSCRIPTION: Final = "patrol/v1/dev/+/status"
LEAVES: Final = frozenset({"up", "ack", "cmd", "status"})
"""up/status: wearable -> edge; ack/cmd: edge -> wearable."""


def _topic(device_id: int, leaf: str) -> str:
    return f"{TOPIC_PREFIX}/{device_id_text(device_id)}/{leaf}"


def up_topic(device_id: int) -> str:
    """Topic a wearable publishes its signed event frames to."""
    return _topic(device_id, "up")


def ack_topic(device_id: int) -> str:
    """Topic the edge publishes application-level acks to."""
    return _topic(device_id, "ack")


def cmd_topic(device_id: int) -> str:
    """Topic the edge relays cloud-signed commands to."""
    return _topic(device_id, "cmd")


def status_topic(device_id: int) -> str:
    """Retained birth / last-will status topic of a wearable."""
    return _topic(device_id, "status")


def parse_device_topic(topic: str) -> tuple[int, str]:
    """Split a device topic into ``(device_id, leaf)``; anything else is MalformedError."""
    if not isinstance(topic, str):
        raise MalformedError(f"topic must be a str, got {type(topic).__name__}")
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != TOPIC_PREFIX:
        raise MalformedError(f"topic {topic!r} is not {TOPIC_PREFIX}/<id>/<leaf>")
    leaf = parts[4]
    if leaf not in LEAVES:
        raise MalformedError(f"topic {topic!r} has unknown leaf {leaf!r}")
    return parse_device_id(parts[3]), leaf
