"""MQTT ingest: persistent QoS 1 session, commit before acknowledge, application acks.

Flow of one message (DESIGN "Delivery guarantees")::

    broker --PUBLISH(mid)--> on_message: check_up_message() -> bounded buffer
    committer: take a group -> EdgeQueue.append_many() (ONE transaction, fsync)
            -> client.ack(mid) for each message of the group   (MQTT PUBACK)
            -> publish Ack(device, highest contiguous seq) to patrol/v1/dev/<id>/ack

- ``clean_session=False`` with a fixed client id: while the agent is down the
  broker queues QoS 1 messages for it; messages delivered but not PUBACKed are
  redelivered on the next connect. ``manual_ack=True``: paho sends no PUBACK on
  its own, so a message killed with the process before its commit comes back.
- PUBACKs are only sent on the connection that delivered the message (a
  "generation" counter bumps on every disconnect): a packet id from a lost
  connection may belong to a different message on the next one. Messages whose
  connection is gone are redelivered and then counted as duplicates.
- The broker never has more than its ``max_inflight_messages`` unacknowledged
  messages out to us, so that window bounds the size of a group; size it to
  ``commit_max_messages`` (see :func:`edge_agent.broker.mosquitto_conf`).

Hot path (bench/edge_ingest.py): paho's network thread only appends
``(topic, payload, mid, qos, generation, received_at_ms)`` to a deque; the
structural check runs in the committer, once per message, next to the commit.
The PUBACKs of a group go out as ONE write: the very bytes ``client.ack(mid, 1)``
would queue one packet at a time (MQTT 3.1.1 PUBACK ``40 02 <mid>``),
concatenated and queued through paho's packet queue, so a group of 500 costs one
wake-up and one ``send`` instead of 500 of each.
"""

import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.inbound import Inbound, ReceivedFrame, Rejected, check_up_message
from edge_agent.queue import AppendResult, EdgeQueue
from edge_agent.settings import EdgeSettings
from patrol_protocol.commands import Ack, encode_ack
from patrol_protocol.topics import UP_SUBSCRIPTION, ack_topic

_log = logging.getLogger(__name__)

REASON_INTERNAL_ERROR: Final = "internal_error"
"""The check itself failed (a bug): the bytes are kept as a dead letter, never lost."""

_BUFFER_FULL_POLL_S: Final = 0.001
"""How often paho's thread looks again when the hand-off is full (rare: the broker's
inflight window normally bounds it below ingest_buffer_messages)."""
_PUBACK_HEADER: Final = 0x40
"""MQTT 3.1.1 PUBACK fixed header byte; remaining length 2, then the packet id."""
_IDLE_POLL_S: Final = 0.1
_COMMIT_RETRY_MAX_S: Final = 5.0
_OUTGOING_QUEUE_MESSAGES: Final = 100_000
"""Ack frames waiting for a connection; each device only needs its latest, so a
long outage never needs more than this."""


def utc_now_ms() -> int:
    """Wall-clock UTC in milliseconds (the gateway's receive time)."""
    return time.time_ns() // 1_000_000


_Delivery = tuple[str, bytes, int, int, int, int]
"""(topic, payload, mid, qos, generation, received_at_ms): the cheapest hand-off."""


@dataclass(frozen=True, slots=True)
class _Checked:
    entry: Inbound
    mid: int
    qos: int
    generation: int


@dataclass(frozen=True, slots=True)
class IngestStats:
    """Counters since start, for health output and tests."""

    connected: bool
    received: int
    stored: int
    duplicates: int
    dead_lettered: int
    groups: int
    acks_published: int


class MqttIngest:
    """Subscribes to every wearable's ``up`` topic and commits before acknowledging."""

    def __init__(
        self,
        settings: EdgeSettings,
        queue: EdgeQueue,
        *,
        clock_ms: Callable[[], int] = utc_now_ms,
        on_committed: Callable[[AppendResult], None] | None = None,
    ) -> None:
        """Prepare the client; nothing connects until :meth:`start`."""
        self._settings = settings
        self._queue = queue
        self._clock_ms = clock_ms
        self._on_committed = on_committed
        self._buffer: deque[_Delivery] = deque()
        self._buffer_max = settings.ingest_buffer_messages
        self._buffer_ready = threading.Event()
        self._stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._subscribed = threading.Event()
        self._broken = False  # logged a break, waiting to log the recovery
        self._stats_lock = threading.Lock()
        self._received = self._stored = self._duplicates = 0
        self._dead_lettered = self._groups = self._acks_published = 0
        self._committer: threading.Thread | None = None
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        s = self._settings
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
        )
        if s.mqtt_username is not None:
            password = s.mqtt_password.get_secret_value() if s.mqtt_password else None
            client.username_pw_set(s.mqtt_username, password)
        client.reconnect_delay_set(s.mqtt_reconnect_min_delay_s, s.mqtt_reconnect_max_delay_s)
        client.max_queued_messages_set(_OUTGOING_QUEUE_MESSAGES)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start the committer and the paho network thread (which reconnects on its own)."""
        self._committer = threading.Thread(
            target=self._commit_loop, name="edge-committer", daemon=True
        )
        self._committer.start()
        s = self._settings
        self._client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive_s)
        self._client.loop_start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Commit and acknowledge what is buffered, then disconnect (the session stays)."""
        self._stopping.set()
        if self._committer is not None:
            self._committer.join(timeout_s)
        self._client.disconnect()
        self._client.loop_stop()

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the broker confirmed the subscription (False on timeout)."""
        return self._subscribed.wait(timeout_s)

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up."""
        return self._connected

    @property
    def committer_alive(self) -> bool:
        """Whether the committer thread runs (False before start and after a fatal error)."""
        return self._committer is not None and self._committer.is_alive()

    def stats(self) -> IngestStats:
        """A snapshot of the counters."""
        with self._stats_lock:
            return IngestStats(
                connected=self._connected,
                received=self._received,
                stored=self._stored,
                duplicates=self._duplicates,
                dead_lettered=self._dead_lettered,
                groups=self._groups,
                acks_published=self._acks_published,
            )

    # --- paho callbacks (network thread: copy into the buffer, nothing more) -----

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            self._log_break(f"broker refused the connection: {reason_code}")
            return
        self._connected = True
        # Subscribing again is harmless with a present session and required without one.
        client.subscribe(UP_SUBSCRIPTION, qos=1)
        if self._broken:
            self._broken = False
            _log.info(
                "MQTT connection to %s:%d recovered (session present: %s)",
                self._settings.mqtt_host,
                self._settings.mqtt_port,
                flags.session_present,
            )
        else:
            _log.info(
                "MQTT connected to %s:%d as %r (session present: %s)",
                self._settings.mqtt_host,
                self._settings.mqtt_port,
                self._settings.mqtt_client_id,
                flags.session_present,
            )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        if all(not code.is_failure for code in reason_codes):
            _log.info("subscribed to %s at QoS 1", UP_SUBSCRIPTION)
            self._subscribed.set()
        else:
            _log.error("broker refused the subscription to %s: %s", UP_SUBSCRIPTION, reason_codes)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._log_break("cannot connect to the broker; retrying with backoff")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        with self._conn_lock:
            self._generation += 1
            self._connected = False
            self._subscribed.clear()
        if not self._stopping.is_set():
            self._log_break(f"MQTT connection lost ({reason_code}); reconnecting with backoff")

    def _log_break(self, message: str) -> None:
        if not self._broken:
            self._broken = True
            _log.warning(message)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received_at_ms = self._clock_ms()
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<invalid utf-8>"
        buffer = self._buffer
        while len(buffer) >= self._buffer_max:
            if self._stopping.is_set():
                return  # never acknowledged: the broker redelivers it next time
            time.sleep(_BUFFER_FULL_POLL_S)
        buffer.append(
            (
                topic,
                bytes(message.payload),
                message.mid,
                message.qos,
                self._generation,
                received_at_ms,
            )
        )
        if not self._buffer_ready.is_set():
            self._buffer_ready.set()
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("buffered mid=%d qos=%d topic=%s", message.mid, message.qos, topic)

    # --- committer thread --------------------------------------------------------

    def _take(self, group: list[_Delivery], max_messages: int) -> None:
        buffer = self._buffer
        while buffer and len(group) < max_messages:
            group.append(buffer.popleft())

    def _commit_loop(self) -> None:
        max_messages = self._settings.commit_max_messages
        max_wait_s = self._settings.commit_max_wait_ms / 1000
        ready = self._buffer_ready
        while True:
            group: list[_Delivery] = []
            ready.clear()  # clear, then take: an append after this sets it again
            self._take(group, max_messages)
            if not group:
                if self._stopping.is_set():
                    return
                ready.wait(_IDLE_POLL_S)
                continue
            deadline = time.monotonic() + max_wait_s
            while len(group) < max_messages:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0 or self._stopping.is_set():
                    break
                ready.wait(min(remaining_s, _IDLE_POLL_S))
                ready.clear()
                self._take(group, max_messages)
            checked = [self._check(delivery) for delivery in group]
            result = self._commit_with_retry(checked)
            if result is None:
                return  # stopping while the disk fails: nothing acked, the broker keeps it
            self._acknowledge(checked, result)

    def _check(self, delivery: _Delivery) -> _Checked:
        topic, payload, mid, qos, generation, received_at_ms = delivery
        entry: Inbound
        try:
            entry = check_up_message(topic, payload, received_at_ms)
        except Exception as exc:  # a bug in the check must not stop the committer
            _log.exception("checking a message on %r failed", topic)
            entry = Rejected(REASON_INTERNAL_ERROR, payload, topic, received_at_ms, repr(exc))
        if isinstance(entry, ReceivedFrame) and entry.eviction_ignored:
            _log.warning(
                "eviction frame %08x:%d relayed, its range ignored: %s",
                entry.device_id,
                entry.seq,
                entry.eviction_ignored,
            )
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("checked mid=%d qos=%d %s", mid, qos, _describe(entry))
        return _Checked(entry, mid, qos, generation)

    def _commit_with_retry(self, group: list[_Checked]) -> AppendResult | None:
        delay_s = 0.1
        failing = False
        while True:
            try:
                result = self._queue.append_many([d.entry for d in group])
            except Exception:  # the committer's outer loop: disk full, I/O error, or a bug
                # Nothing of the group is acknowledged, so nothing is lost: the broker
                # keeps the messages until a commit succeeds (or redelivers after a restart).
                if not failing:
                    failing = True
                    _log.exception("committing %d messages failed; retrying", len(group))
                if self._stopping.wait(delay_s):
                    return None
                delay_s = min(delay_s * 2, _COMMIT_RETRY_MAX_S)
                continue
            if failing:
                _log.info("committing to the queue works again")
            return result

    def _acknowledge(self, group: list[_Checked], result: AppendResult) -> None:
        with self._conn_lock:
            generation = self._generation
            mids = [d.mid for d in group if d.qos == 1 and d.generation == generation]
            for delivery in group:  # QoS 2 is not used by wearables; acked one by one
                if delivery.qos == 2 and delivery.generation == generation:
                    self._client.ack(delivery.mid, delivery.qos)
            self._send_pubacks(mids)
        published = 0
        for device_id, acked_seq in result.acked_seqs.items():
            info = self._client.publish(
                ack_topic(device_id), encode_ack(Ack(device_id, acked_seq)), qos=1
            )
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                published += 1  # NO_CONN: queued by paho, sent after the reconnect
        with self._stats_lock:
            self._received += len(group)
            self._stored += result.stored
            self._duplicates += result.duplicates
            self._dead_lettered += result.dead_lettered
            self._groups += 1
            self._acks_published += published
        if self._on_committed is not None:
            self._on_committed(result)

    def _send_pubacks(self, mids: list[int]) -> None:
        """PUBACK every mid in one write (module docstring); paho's own ack() as fallback."""
        if not mids:
            return
        packet_queue = getattr(self._client, "_packet_queue", None)
        if packet_queue is None:  # a paho without the packet queue: one ack() per mid
            for mid in mids:
                self._client.ack(mid, 1)
            return
        packets = b"".join([_PUBACK.pack(_PUBACK_HEADER, 2, mid) for mid in mids])
        packet_queue(mqtt.PUBACK, packets, 0, 0)


_PUBACK: Final = struct.Struct("!BBH")


def _describe(entry: Inbound) -> str:
    if isinstance(entry, Rejected):
        return f"rejected reason={entry.reason}"
    return (
        type(entry).__name__
        + " "
        + " ".join(
            f"{name}={getattr(entry, name)}"
            for name in ("device_id", "seq")
            if hasattr(entry, name)
        )
    )
