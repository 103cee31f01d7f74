"""Edge-side safety net for SOS (issue 7): raise it locally while the uplink is down.

An SOS or man-down frame waits in the queue's urgent lane (priority 0) until the
cloud answers it. If it is still there ``grace_s`` after it was received (the
uplink is down or too slow), this module publishes it on the site broker's alarm
topic for sirens and radio gateways::

    patrol/v1/gw/{gateway_id}/alarm     QoS 1, not retained, JSON:
    {"v": 1, "state": "raised", "device": "0000a001", "seq": 17, "trigger": "man_down",
     "received_at": "2026-11-25T04:00:05.123Z", "gateway_id": "gw-1"}

and, once the forwarder delivered it (the item left the queue: the cloud accepted
it or reported it duplicate), the same object with ``"state": "delivered"``, so a
siren can stop and a radio gateway can announce that the control room has it.

Delivery upstream stays the forwarder's: the SOS is never taken out of the queue
here, so it is sent the moment the uplink returns, once (the cloud's idempotency
keys answer any retry ``duplicate``). A poll thread reads the urgent lane (a few
rows at most); raised SOS are remembered in memory, so after an agent restart a
still-queued SOS is raised again, which is the safe side for an alarm.

Hook: :class:`edge_agent.agent.EdgeAgent` starts ``LocalAlarm.from_settings(...)``
when ``local_alarm_enabled`` (see docs/alerts.md).
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.queue import EdgeQueue, QueuedItem
from edge_agent.settings import EdgeSettings
from patrol_protocol.errors import ProtocolError
from patrol_protocol.frames import Kind, Sos, decode_body, decode_frame

_log = logging.getLogger(__name__)

ALARM_TOPIC: Final = "patrol/v1/gw/{gateway_id}/alarm"
TRIGGERS: Final = {1: "button", 2: "man_down", 3: "test"}
URGENT_SCAN: Final = 200
"""Urgent items read per poll (SOS and eviction records only: a handful)."""


def alarm_topic(gateway_id: str) -> str:
    """The site alarm topic of ``gateway_id``."""
    return ALARM_TOPIC.format(gateway_id=gateway_id)


@dataclass(frozen=True, slots=True)
class SosItem:
    """A queued SOS frame, as the alarm announces it."""

    device_id: int
    seq: int
    trigger: str
    received_at_ms: int


def sos_of(item: QueuedItem) -> SosItem | None:
    """The SOS in a queued item, None for anything else (or a frame that does not parse)."""
    if item.type != "device_frame":
        return None
    try:
        frame = decode_frame(item.payload)
        if frame.header.kind != Kind.SOS:
            return None
        body = decode_body(frame.header.kind, frame.body)
    except ProtocolError:
        return None  # the cloud will refuse it with a reason; not an alarm
    trigger = TRIGGERS.get(body.trigger, "button") if isinstance(body, Sos) else "button"
    return SosItem(frame.header.device_id, frame.header.seq, trigger, item.received_at_ms)


class LocalAlarm:
    """Polls the urgent lane; raises overdue SOS on the alarm topic, reports delivery."""

    def __init__(
        self,
        queue: EdgeQueue,
        *,
        gateway_id: str,
        client: mqtt.Client,
        grace_s: float = 2.0,
        poll_s: float = 0.25,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._queue = queue
        self._gateway_id = gateway_id
        self._topic = alarm_topic(gateway_id)
        self._client = client
        self._grace_ms = int(grace_s * 1000)
        self._poll_s = poll_s
        self._now_ms = now_ms
        self._raised: dict[tuple[int, int], SosItem] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.raised_count = 0
        self.delivered_count = 0

    @classmethod
    def from_settings(
        cls, settings: EdgeSettings, queue: EdgeQueue, *, grace_s: float = 2.0, poll_s: float = 0.25
    ) -> "LocalAlarm":
        """A LocalAlarm on the site broker of ``settings`` (its own MQTT connection)."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{settings.mqtt_client_id[:17]}-alarm"
        )
        if settings.mqtt_username is not None:
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            client.username_pw_set(settings.mqtt_username, password)
        client.reconnect_delay_set(1, 10)
        client.connect_async(settings.mqtt_host, settings.mqtt_port, keepalive=30)
        return cls(
            queue, gateway_id=settings.gateway_id, client=client, grace_s=grace_s, poll_s=poll_s
        )

    def start(self) -> None:
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="local-alarm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._client.disconnect()
        self._client.loop_stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the alarm must outlive a bad poll
                _log.exception("local alarm poll failed")
            self._stop.wait(self._poll_s)

    def _publish(self, sos: SosItem, state: str) -> None:
        received = datetime.fromtimestamp(sos.received_at_ms / 1000, UTC)
        payload = {
            "v": 1,
            "state": state,
            "device": f"{sos.device_id:08x}",
            "seq": sos.seq,
            "trigger": sos.trigger,
            "received_at": received.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "gateway_id": self._gateway_id,
        }
        # Queued by paho while the broker is away and sent on reconnect (QoS 1).
        self._client.publish(self._topic, json.dumps(payload, separators=(",", ":")), qos=1)

    def poll_once(self) -> tuple[int, int]:
        """One look at the urgent lane: (newly raised, newly delivered)."""
        queued: dict[tuple[int, int], SosItem] = {}
        for item in self._queue.peek_batch(URGENT_SCAN, lane="urgent"):
            sos = sos_of(item)
            if sos is not None:
                queued[(sos.device_id, sos.seq)] = sos
        now = self._now_ms()
        raised = delivered = 0
        for key, sos in queued.items():
            if key not in self._raised and now - sos.received_at_ms >= self._grace_ms:
                _log.warning(
                    "SOS of %08x seq %d not delivered after %d ms: raised on %s",
                    sos.device_id,
                    sos.seq,
                    now - sos.received_at_ms,
                    self._topic,
                )
                self._publish(sos, "raised")
                self._raised[key] = sos
                raised += 1
        for key in [k for k in self._raised if k not in queued]:
            self._publish(self._raised.pop(key), "delivered")
            delivered += 1
        self.raised_count += raised
        self.delivered_count += delivered
        return raised, delivered
