"""Forwarder: queue -> ``POST <cloud_url>/api/v1/ingest`` -> delete what is final.

An item leaves the queue only when the cloud returned a final result for it
(``accepted``, ``duplicate`` or ``rejected``; docs/protocol.md). A transport
error, a timeout, a non-2xx status (401 included) or a response that does not
parse keeps every item, and the whole batch is retried after an exponential
backoff with equal jitter (``Retry-After`` respected, in seconds or as an
HTTP-date): the idempotency keys make the retry safe. Rejected items are copied
into the dead-letter table with the cloud's reason before they are deleted.

Two lanes, each its own thread and HTTP connection:

- **urgent** (queue priority 0: SOS, eviction records): forwarded at once in its
  own small batch, so an SOS never waits behind a backlog batch in flight;
- **backlog** (everything else): by priority, oldest first, full batches back to
  back, so a backlog drains at many times real time.

A whole batch the cloud refuses for its size (413) or its content (422) never
blocks the queue: it is split in halves and retried at once; a single item still
refused is parked in the dead-letter table with the cloud's status and words. An
item that cannot even be put into a batch (its stored observation is not valid
JSON for the wire) is parked as ``unsendable``.

Bodies are gzip-compressed (``Content-Encoding: gzip``) unless ``forward_gzip`` is
off; HTTPS certificates are always verified, against ``cloud_ca_file`` when set.
"""

import base64
import email.utils
import gzip
import json
import logging
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import httpx
import pydantic

from edge_agent.clock import ClockWatch
from edge_agent.queue import EdgeQueue, Lane, QueuedItem
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
THROTTLE_STATUSES: Final = frozenset({429, 503})
"""The cloud asks us to slow down (rate or concurrency limit, store unavailable)."""
MAX_RETRY_AFTER_S: Final = 3600.0
"""A cloud asking for a longer pause is more likely confused than busy."""
_JSON_OVERHEAD_BYTES_PER_ITEM: Final = 200
"""Upper estimate of the JSON around one item's base64 (type, gw_seq, times, topic)."""
URGENT_BATCH_ITEMS: Final = 20
"""An urgent batch stays small so the cloud verifies it in milliseconds."""
GZIP_LEVEL: Final = 5
"""Most of level 9's ratio on base64 JSON at a fraction of the CPU of a Pi."""
REASON_UNSENDABLE: Final = "unsendable"
"""A queued item that cannot be put into a batch (e.g. an observation the wire
model refuses): parked instead of failing every attempt."""


@dataclass(frozen=True, slots=True)
class ForwardOutcome:
    """What one attempt did. ``error`` is None when the cloud answered with results."""

    sent: int
    deleted: int
    rejected: int
    error: str | None = None
    retry_after_s: float | None = None
    parked: int = 0
    split: bool = False
    """The cloud refused the batch as a whole (413/422): retry at once, smaller."""


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
    """Sends the queue to the cloud in batches from two threads (urgent and backlog lanes)."""

    def __init__(
        self,
        settings: EdgeSettings,
        queue: EdgeQueue,
        *,
        clock_synced: Callable[[], bool] | None = None,
        clock: ClockWatch | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        observe_latency_s: Callable[[str, float], None] | None = None,
    ) -> None:
        """Each batch's ``clock_synced`` says whether its items were stamped by a synced
        clock: ``clock`` (a :class:`ClockWatch` on this queue, made here when neither is
        given) splits batches at its watermark; ``clock_synced`` (tests) answers for all.
        ``observe_latency_s(lane, seconds)`` gets the duration of each POST the cloud
        answered (the agent's Prometheus histogram)."""
        self._settings = settings
        self._queue = queue
        self._now = now
        self._fixed_clock_synced = clock_synced
        self.clock = clock or ClockWatch(queue, interval_s=CLOCK_CHECK_INTERVAL_S)
        self._observe_latency_s = observe_latency_s
        self._http = {lane: self._client() for lane in ("urgent", "backlog", "all")}
        self._stop = threading.Event()
        self._wake = {lane: threading.Event() for lane in ("urgent", "backlog")}
        self._threads: list[threading.Thread] = []
        self._failing = False
        self._stats_lock = threading.Lock()
        self._max_items: dict[str, int] = {
            "urgent": min(URGENT_BATCH_ITEMS, settings.forward_batch_items),
            "backlog": settings.forward_batch_items,
            "all": settings.forward_batch_items,
        }
        self.forwarded = 0
        self.rejected = 0
        self.parked = 0
        self.batches_ok = 0
        self.batches_failed = 0
        self.throttled = 0
        """Answers 429 / 503: the cloud asked us to wait (Retry-After honoured)."""
        self.last_retry_after_s: float | None = None
        self.failing_since_ms: int | None = None
        """Wall-clock ms of the first failure of the current failing run (None: working)."""
        self.last_error: str | None = None
        self.last_success_ms: int | None = None

    def _client(self) -> httpx.Client:
        s = self._settings
        verify: ssl.SSLContext | bool = True
        if s.cloud_ca_file is not None:
            verify = ssl.create_default_context(cafile=str(s.cloud_ca_file))
        headers = {
            "Authorization": f"Bearer {s.gateway_api_key.get_secret_value()}",
            "Content-Type": "application/json",
        }
        if s.forward_gzip:
            headers["Content-Encoding"] = "gzip"
        return httpx.Client(
            base_url=s.cloud_url,
            timeout=s.forward_timeout_ms / 1000,
            headers=headers,
            verify=verify,
        )

    def _stamped_synced(self, gw_seq: int) -> bool:
        if self._fixed_clock_synced is not None:
            return self._fixed_clock_synced()
        return self.clock.stamped_synced(gw_seq)

    # --- one attempt ---------------------------------------------------------------

    def forward_once(self, lane: Lane = "all") -> ForwardOutcome:
        """Send one batch of the lane's next items and settle the final ones. Never raises
        for transport or cloud errors; they come back in ``ForwardOutcome.error``."""
        s = self._settings
        max_items = self._max_items[lane]
        payload_budget = s.forward_batch_bytes * 3 // 4 - max_items * _JSON_OVERHEAD_BYTES_PER_ITEM
        items = self._queue.peek_batch(
            max_items, max_payload_bytes=max(payload_budget, 1), lane=lane
        )
        if not items:
            return ForwardOutcome(sent=0, deleted=0, rejected=0)
        # one batch, one clock_synced: items stamped unsynced never ride with synced ones
        flags = [self._stamped_synced(item.gw_seq) for item in items]
        synced = flags[0]
        items = [item for item, flag in zip(items, flags, strict=True) if flag == synced]
        batch_items: list[BatchItem] = []
        unsendable: dict[int, str] = {}
        for item in items:
            try:
                batch_items.append(to_batch_item(item))
            except (ValueError, pydantic.ValidationError) as exc:
                unsendable[item.gw_seq] = f"{type(exc).__name__}: {str(exc)[:300]}"
        if unsendable:
            parked = 0
            for gw_seq, detail in unsendable.items():
                parked += self._park([gw_seq], REASON_UNSENDABLE, detail)
            return ForwardOutcome(sent=0, deleted=0, rejected=0, parked=parked, split=True)
        batch = IngestBatch(
            v=1,
            gateway_id=s.gateway_id,
            batch_id=uuid.uuid4(),
            sent_at=self._now(),
            clock_synced=synced,
            items=batch_items,
        )
        body = batch.model_dump_json().encode()
        if s.forward_gzip:
            body = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        started_s = time.monotonic()
        try:
            response = self._http[lane].post(INGEST_PATH, content=body)
        except httpx.HTTPError as exc:
            return self._failed(len(items), f"transport error: {exc!r}")
        if self._observe_latency_s is not None:
            self._observe_latency_s(lane, time.monotonic() - started_s)
        if response.status_code in THROTTLE_STATUSES:
            wait_s = retry_after_s(response, self._now())
            with self._stats_lock:
                self.throttled += 1
                self.last_retry_after_s = wait_s
            return self._failed(
                len(items), f"HTTP {response.status_code}: {response.text[:200]!r}", wait_s
            )
        if response.status_code in (413, 422):
            return self._refused_whole(lane, items, response)
        if response.status_code != 200:
            return self._failed(
                len(items),
                f"HTTP {response.status_code}: {response.text[:200]!r}",
                retry_after_s(response, self._now()),
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
        # a batch size that worked: grow back towards the configured size
        configured = self._configured_items(lane)
        self._max_items[lane] = min(configured, self._max_items[lane] * 2)
        if self._failing:
            self._failing = False
            _log.info("forwarding to %s works again", s.cloud_url)
        with self._stats_lock:
            self.forwarded += deleted
            self.rejected += len(rejected)
            self.batches_ok += 1
            self.failing_since_ms = None
            self.last_success_ms = time.time_ns() // 1_000_000
        return ForwardOutcome(sent=len(items), deleted=deleted, rejected=len(rejected))

    def _configured_items(self, lane: Lane) -> int:
        s = self._settings
        if lane == "urgent":
            return min(URGENT_BATCH_ITEMS, s.forward_batch_items)
        return s.forward_batch_items

    def _refused_whole(
        self, lane: Lane, items: list[QueuedItem], response: httpx.Response
    ) -> ForwardOutcome:
        """413/422 for the whole batch: halve it, or park the single item it came down to."""
        detail = f"HTTP {response.status_code}: {response.text[:300]}"
        if len(items) > 1:
            self._max_items[lane] = max(1, len(items) // 2)
            _log.warning(
                "cloud refused a batch of %d as a whole (%s); retrying in batches of %d",
                len(items),
                detail,
                self._max_items[lane],
            )
            return ForwardOutcome(sent=len(items), deleted=0, rejected=0, error=detail, split=True)
        parked = self._park([items[0].gw_seq], f"cloud_http_{response.status_code}", detail)
        return ForwardOutcome(sent=1, deleted=0, rejected=0, parked=parked, split=True)

    def _park(self, gw_seqs: list[int], reason: str, detail: str) -> int:
        parked = self._queue.park(gw_seqs, reason, detail)
        _log.error("parked gw_seq %s in the dead letters: %s (%s)", gw_seqs, reason, detail)
        with self._stats_lock:
            self.parked += parked
        return parked

    def _failed(self, sent: int, error: str, retry_after_s: float | None = None) -> ForwardOutcome:
        with self._stats_lock:
            self.batches_failed += 1
            self.last_error = error
            if self.failing_since_ms is None:
                self.failing_since_ms = time.time_ns() // 1_000_000
        if not self._failing:
            self._failing = True
            _log.warning(
                "forwarding to %s failed, keeping the queue: %s", self._settings.cloud_url, error
            )
        return ForwardOutcome(
            sent=sent, deleted=0, rejected=0, error=error, retry_after_s=retry_after_s
        )

    # --- threads -------------------------------------------------------------------

    def start(self) -> None:
        """Run the urgent and the backlog lane, each in a daemon thread."""
        for lane in ("urgent", "backlog"):
            thread = threading.Thread(
                target=self._run, args=(lane,), name=f"edge-forwarder-{lane}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    @property
    def alive(self) -> bool:
        """Whether both lane threads run (False before start and after stop)."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def wake(self) -> None:
        """Forward now instead of at the next interval (called after each commit)."""
        for event in self._wake.values():
            event.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the current attempts; queued items stay for the next start."""
        self._stop.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout_s)
        for client in self._http.values():
            client.close()

    def _run(self, lane: Lane) -> None:
        s = self._settings
        wake = self._wake[lane]
        backoff_ms = s.forward_backoff_min_ms
        while not self._stop.is_set():
            wake.clear()
            try:
                outcome = self.forward_once(lane)
            except Exception as exc:  # the thread's outer loop: e.g. the queue file failing
                if not self._failing:
                    self._failing = True
                    _log.exception("forwarding failed unexpectedly; retrying with backoff")
                outcome = ForwardOutcome(sent=0, deleted=0, rejected=0, error=repr(exc))
            if outcome.split:
                continue  # smaller at once: a split is progress, not a failure
            if outcome.error is not None:
                self._stop.wait(retry_delay_s(backoff_ms, outcome.retry_after_s))
                backoff_ms = min(backoff_ms * 2, s.forward_backoff_max_ms)
                continue
            backoff_ms = s.forward_backoff_min_ms
            if outcome.sent == 0:
                wake.wait(s.forward_interval_ms / 1000)
            # a non-empty batch: go on at once, the backlog drains at full speed


def retry_delay_s(
    backoff_ms: int,
    retry_after_s: float | None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Equal jitter, uniform in [backoff/2, backoff], so gateways of many sites never retry in
    step; never sooner than the cloud's ``Retry-After``."""
    delay_s = (backoff_ms / 2 + rand() * backoff_ms / 2) / 1000
    if retry_after_s is not None:
        delay_s = max(delay_s, retry_after_s)
    return delay_s


def retry_after_s(response: httpx.Response, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date (RFC 9110
    10.2.3), capped at :data:`MAX_RETRY_AFTER_S`; None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_S)
