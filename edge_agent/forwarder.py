"""Forwarder: queue -> ``POST <cloud_url>/api/v1/ingest`` -> delete what is final.

An item leaves the queue only when the cloud returned a final result for it
(``accepted``, ``duplicate`` or ``rejected``; docs/protocol.md). A transport
error, a timeout, a non-2xx status (401 included) or a response that does not
parse keeps every item, and the whole batch is retried after an exponential
backoff with jitter (``Retry-After`` respected): the idempotency keys make the
retry safe. Rejected items are copied into the dead-letter table with the
cloud's reason before they are deleted.
"""

import base64
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import httpx
import pydantic

from edge_agent.clock import clock_state
from edge_agent.queue import EdgeQueue, QueuedItem
from edge_agent.settings import EdgeSettings
from patrol_protocol.batch import (
    AdvertItem,
    BatchItem,
    DeviceFrameItem,
    IngestBatch,
    IngestResponse,
    ObservationItem,
)

_log = logging.getLogger(__name__)

INGEST_PATH: Final = "/api/v1/ingest"
CLOCK_CHECK_INTERVAL_S: Final = 30.0
"""The sync state changes rarely; asking timedatectl per batch would cost a process."""
MAX_RETRY_AFTER_S: Final = 3600.0
"""A cloud asking for a longer pause is more likely confused than busy."""
_JSON_OVERHEAD_BYTES_PER_ITEM: Final = 200
"""Upper estimate of the JSON around one item's base64 (type, gw_seq, times, topic)."""


@dataclass(frozen=True, slots=True)
class ForwardOutcome:
    """What one attempt did. ``error`` is None when the cloud answered with results."""

    sent: int
    deleted: int
    rejected: int
    error: str | None = None
    retry_after_s: float | None = None


def _utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_batch_item(item: QueuedItem) -> BatchItem:
    """The JSON item for one queued item (frames and adverts as base64 of the exact bytes)."""
    received_at = _utc_ms(item.received_at_ms)
    if item.type == "device_frame":
        return DeviceFrameItem(
            type="device_frame",
            gw_seq=item.gw_seq,
            received_at=received_at,
            topic=item.topic or "",
            frame_b64=base64.b64encode(item.payload).decode("ascii"),
        )
    if item.type == "advert":
        return AdvertItem(
            type="advert",
            gw_seq=item.gw_seq,
            received_at=received_at,
            company_id=item.company_id or 0,
            payload_b64=base64.b64encode(item.payload).decode("ascii"),
            rssi_dbm=item.rssi_dbm or 0,
        )
    return ObservationItem(
        type="observation",
        gw_seq=item.gw_seq,
        received_at=received_at,
        observation=json.loads(item.payload),
    )


class Forwarder:
    """Sends the queue to the cloud in batches, oldest first, from its own thread."""

    def __init__(
        self,
        settings: EdgeSettings,
        queue: EdgeQueue,
        *,
        clock_synced: Callable[[], bool] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``clock_synced`` defaults to :func:`edge_agent.clock.clock_state`, cached."""
        self._settings = settings
        self._queue = queue
        self._now = now
        self._clock_synced = clock_synced or self._cached_clock_synced
        self._clock_checked_at = -CLOCK_CHECK_INTERVAL_S
        self._clock_synced_value = False
        self._http = httpx.Client(
            base_url=settings.cloud_url,
            timeout=settings.forward_timeout_ms / 1000,
            headers={
                "Authorization": f"Bearer {settings.gateway_api_key.get_secret_value()}",
                "Content-Type": "application/json",
            },
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._stats_lock = threading.Lock()
        self.forwarded = 0
        self.rejected = 0

    def _cached_clock_synced(self) -> bool:
        now_s = time.monotonic()
        if now_s - self._clock_checked_at >= CLOCK_CHECK_INTERVAL_S:
            state = clock_state()
            if state.synced != self._clock_synced_value or self._clock_checked_at < 0:
                _log.info(
                    "gateway clock synced=%s (%s: %s)", state.synced, state.source, state.detail
                )
            self._clock_synced_value = state.synced
            self._clock_checked_at = now_s
        return self._clock_synced_value

    # --- one attempt ---------------------------------------------------------------

    def forward_once(self) -> ForwardOutcome:
        """Send one batch of the oldest items and settle the final ones. Never raises
        for transport or cloud errors; they come back in ``ForwardOutcome.error``."""
        s = self._settings
        payload_budget = s.forward_batch_bytes * 3 // 4 - s.forward_batch_items * (
            _JSON_OVERHEAD_BYTES_PER_ITEM
        )
        items = self._queue.peek_batch(
            s.forward_batch_items, max_payload_bytes=max(payload_budget, 1)
        )
        if not items:
            return ForwardOutcome(sent=0, deleted=0, rejected=0)
        batch = IngestBatch(
            v=1,
            gateway_id=s.gateway_id,
            batch_id=uuid.uuid4(),
            sent_at=self._now(),
            clock_synced=self._clock_synced(),
            items=[to_batch_item(item) for item in items],
        )
        try:
            response = self._http.post(INGEST_PATH, content=batch.model_dump_json())
        except httpx.HTTPError as exc:
            return self._failed(len(items), f"transport error: {exc!r}")
        if response.status_code != 200:
            return self._failed(
                len(items),
                f"HTTP {response.status_code}: {response.text[:200]!r}",
                _retry_after_s(response),
            )
        try:
            parsed = IngestResponse.model_validate_json(response.content)
        except pydantic.ValidationError as exc:
            return self._failed(len(items), f"unreadable response: {exc.error_count()} errors")
        if parsed.batch_id != batch.batch_id:
            return self._failed(len(items), f"response for batch {parsed.batch_id}")
        sent_seqs = {item.gw_seq for item in items}
        final: list[int] = []
        rejected: dict[int, str] = {}
        for result in parsed.results:
            if result.gw_seq not in sent_seqs:
                continue
            if result.status == "rejected":
                rejected[result.gw_seq] = result.reason or "unspecified"
            else:
                final.append(result.gw_seq)
        deleted = self._queue.delete(final, rejected=rejected)
        if len(final) + len(rejected) < len(items):
            _log.warning(
                "cloud answered for %d of %d items; the rest stay queued",
                len(final) + len(rejected),
                len(items),
            )
        if self._failing:
            self._failing = False
            _log.info("forwarding to %s works again", s.cloud_url)
        with self._stats_lock:
            self.forwarded += deleted
            self.rejected += len(rejected)
        return ForwardOutcome(sent=len(items), deleted=deleted, rejected=len(rejected))

    def _failed(self, sent: int, error: str, retry_after_s: float | None = None) -> ForwardOutcome:
        if not self._failing:
            self._failing = True
            _log.warning(
                "forwarding to %s failed, keeping the queue: %s", self._settings.cloud_url, error
            )
        return ForwardOutcome(
            sent=sent, deleted=0, rejected=0, error=error, retry_after_s=retry_after_s
        )

    # --- thread --------------------------------------------------------------------

    def start(self) -> None:
        """Run the forwarding loop in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="edge-forwarder", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Forward now instead of at the next interval (called after each commit)."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the current attempt; queued items stay for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._http.close()

    def _run(self) -> None:
        s = self._settings
        backoff_ms = s.forward_backoff_min_ms
        while not self._stop.is_set():
            self._wake.clear()
            try:
                outcome = self.forward_once()
            except Exception as exc:  # the thread's outer loop: e.g. the queue file failing
                if not self._failing:
                    self._failing = True
                    _log.exception("forwarding failed unexpectedly; retrying with backoff")
                outcome = ForwardOutcome(sent=0, deleted=0, rejected=0, error=repr(exc))
            if outcome.error is not None:
                delay_s = _jittered(backoff_ms) / 1000
                if outcome.retry_after_s is not None:
                    delay_s = max(delay_s, outcome.retry_after_s)
                backoff_ms = min(backoff_ms * 2, s.forward_backoff_max_ms)
                self._stop.wait(delay_s)
                continue
            backoff_ms = s.forward_backoff_min_ms
            if outcome.sent == 0:
                self._wake.wait(s.forward_interval_ms / 1000)
            # a non-empty batch: go on at once, the backlog drains at full speed


def _jittered(delay_ms: int) -> float:
    """Equal jitter: uniform in [delay/2, delay], so gateways of many sites never retry in step."""
    return delay_ms / 2 + random.random() * delay_ms / 2  # noqa: S311  (not security)


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return None
