"""The outbox drain: claim rows, write them to InfluxDB, delete them after success.

:func:`drain_once` is one pass (a claim, then writes of at most
``batch_points`` lines each); :func:`drain` runs passes through one pipeline, claiming
the next rows while the last writes are in flight; :class:`SinkWorker` runs passes in a thread
until stopped, sleeping ``poll_interval_s`` when idle or after a failure. Every
API process may run one: claims are leased and skip each other's rows.

Failures: a retryable one (InfluxDB down, timeout, 5xx) gives the rest of the
claim back with an exponential backoff per row; a 400 (InfluxDB refuses the
data) on several rows retries each row alone, and a single refused row is
buried (kept with the server's reason, out of the queue), so one bad row never
blocks the others. Logged once when writes start failing and once on recovery.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from cloud_api.db import session_scope
from cloud_api.models import utcnow
from cloud_api.settings import Settings
from cloud_api.sink.outbox import ClaimedRow, bury, claim, complete, release
from cloud_api.sink.writers import LineWriter, SinkWriteError, make_writer

log = logging.getLogger(__name__)

CLAIM_ROWS = 64
"""Rows leased per pass at most: one row is one ingest batch (up to 500 events)."""
WRITES_IN_FLIGHT = 2
"""Concurrent writes: InfluxDB parses and indexes two requests in parallel, and one more
chunk is built meanwhile (one at a time left the server idle between requests)."""
CLAIM_CHUNKS = 8
"""A pass claims about this many writes' worth of points: enough to keep a write in
flight while the previous chunk's rows are deleted, bounded memory (8 x 5,000 lines)."""


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    """How a worker batches and retries (from :class:`~cloud_api.settings.Settings`)."""

    batch_points: int = 5000
    lease_s: float = 60.0
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    claim_rows: int = CLAIM_ROWS

    @classmethod
    def from_settings(cls, settings: Settings) -> DrainPolicy:
        return cls(
            batch_points=settings.sink_batch_points,
            lease_s=settings.sink_lease_s,
            retry_initial_s=settings.sink_retry_initial_s,
            retry_max_s=settings.sink_retry_max_s,
        )


@dataclass
class DrainResult:
    """What one pass did."""

    claimed_rows: int = 0
    written_points: int = 0
    written_rows: int = 0
    failed_rows: int = 0
    buried_rows: int = 0
    error: str | None = None


def chunks(rows: Sequence[ClaimedRow], batch_points: int) -> Iterator[list[ClaimedRow]]:
    """Consecutive groups of rows with at most ``batch_points`` lines (a bigger row alone)."""
    group: list[ClaimedRow] = []
    size = 0
    for row in rows:
        if group and size + row.n_points > batch_points:
            yield group
            group, size = [], 0
        group.append(row)
        size += row.n_points
    if group:
        yield group


def _body(rows: Sequence[ClaimedRow]) -> bytes:
    return "\n".join([row.lines for row in rows]).encode()


class _Pipeline:
    """Chunks on the wire, at most :data:`WRITES_IN_FLIGHT`, across claims.

    :meth:`send` builds and submits a claim's chunks, settling the oldest write
    whenever the pipe is full; the caller may claim the next rows while the last
    chunks are still in flight, so InfluxDB is not left idle during a claim.
    """

    def __init__(
        self,
        engine: Engine,
        writer: LineWriter,
        pool: ThreadPoolExecutor,
        *,
        owner: str,
        policy: DrainPolicy,
        clock: Callable[[], datetime],
        result: DrainResult,
    ) -> None:
        self.engine, self.writer, self.pool = engine, writer, pool
        self.owner, self.policy, self.clock, self.result = owner, policy, clock, result
        self.in_flight: deque[tuple[Future[None], list[ClaimedRow]]] = deque()

    @property
    def failed(self) -> bool:
        return self.result.error is not None and self.result.failed_rows > 0

    def send(self, rows: Sequence[ClaimedRow]) -> None:
        """Write ``rows`` in chunks; after a retryable failure, release what is unsent."""
        groups = list(chunks(rows, self.policy.batch_points))
        for index, group in enumerate(groups):
            if self.failed:
                self._release_unsent([row for later in groups[index:] for row in later])
                return
            self.in_flight.append((self.pool.submit(self.writer.write, _body(group)), group))
            if len(self.in_flight) >= WRITES_IN_FLIGHT:
                self._settle_oldest()

    def finish(self) -> None:
        """Wait for every write on the wire and settle it."""
        while self.in_flight:
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        future, group = self.in_flight.popleft()
        _settle(
            self.engine,
            self.writer,
            future,
            group,
            self.owner,
            self.policy,
            self.clock,
            self.result,
        )

    def _release_unsent(self, unsent: list[ClaimedRow]) -> None:
        if not unsent:
            return
        with session_scope(self.engine) as session:
            release(
                session,
                owner=self.owner,
                rows=unsent,
                now=self.clock(),
                error=self.result.error or "not sent after an earlier failure",
                initial_s=self.policy.retry_initial_s,
                max_s=self.policy.retry_max_s,
            )
        self.result.failed_rows += len(unsent)


def _claim(
    engine: Engine, *, owner: str, policy: DrainPolicy, clock: Callable[[], datetime]
) -> list[ClaimedRow]:
    with session_scope(engine) as session:
        return claim(
            session,
            owner=owner,
            now=clock(),
            lease_s=policy.lease_s,
            max_rows=policy.claim_rows,
            max_points=policy.batch_points * CLAIM_CHUNKS,
        )


def drain_once(
    engine: Engine,
    writer: LineWriter,
    *,
    owner: str,
    policy: DrainPolicy,
    clock: Callable[[], datetime] = utcnow,
) -> DrainResult:
    """One pass: claim due rows, write them in chunks, delete what InfluxDB stored.

    Up to :data:`WRITES_IN_FLIGHT` chunks are on the wire while the next one is
    built and settled chunks' rows are deleted. Every chunk's own outcome decides
    its rows' fate; after a retryable failure nothing more is sent and every
    unconfirmed row is released.
    """
    result = DrainResult()
    rows = _claim(engine, owner=owner, policy=policy, clock=clock)
    result.claimed_rows = len(rows)
    with ThreadPoolExecutor(max_workers=WRITES_IN_FLIGHT, thread_name_prefix="influx") as pool:
        pipe = _Pipeline(
            engine, writer, pool, owner=owner, policy=policy, clock=clock, result=result
        )
        pipe.send(rows)
        pipe.finish()
    return result


def _settle(
    engine: Engine,
    writer: LineWriter,
    future: Future[None],
    group: list[ClaimedRow],
    owner: str,
    policy: DrainPolicy,
    clock: Callable[[], datetime],
    result: DrainResult,
) -> None:
    """Wait for one chunk's write; delete its rows, release them, or sort out bad data."""
    try:
        future.result()
    except SinkWriteError as exc:
        if exc.retryable:
            with session_scope(engine) as session:
                release(
                    session,
                    owner=owner,
                    rows=group,
                    now=clock(),
                    error=str(exc),
                    initial_s=policy.retry_initial_s,
                    max_s=policy.retry_max_s,
                )
            result.failed_rows += len(group)
            result.error = str(exc)
            return
        _write_one_by_one(
            engine, writer, group, owner=owner, policy=policy, clock=clock, result=result
        )
        return
    with session_scope(engine) as session:
        complete(session, owner=owner, ids=[row.id for row in group])
    result.written_rows += len(group)
    result.written_points += sum(row.n_points for row in group)


def _write_one_by_one(
    engine: Engine,
    writer: LineWriter,
    group: Sequence[ClaimedRow],
    *,
    owner: str,
    policy: DrainPolicy,
    clock: Callable[[], datetime],
    result: DrainResult,
) -> None:
    """InfluxDB refused a chunk's data: find the refused rows, write the others."""
    for row in group:
        try:
            writer.write(_body([row]))
        except SinkWriteError as exc:
            with session_scope(engine) as session:
                if exc.retryable:
                    release(
                        session,
                        owner=owner,
                        rows=[row],
                        now=clock(),
                        error=str(exc),
                        initial_s=policy.retry_initial_s,
                        max_s=policy.retry_max_s,
                    )
                    result.failed_rows += 1
                else:
                    log.error("InfluxDB refused outbox row %d; kept as dead: %s", row.id, exc)
                    bury(session, owner=owner, row=row, now=clock(), error=str(exc))
                    result.buried_rows += 1
            result.error = str(exc)
            continue
        with session_scope(engine) as session:
            complete(session, owner=owner, ids=[row.id])
        result.written_rows += 1
        result.written_points += row.n_points


def drain(
    engine: Engine,
    writer: LineWriter,
    *,
    owner: str,
    policy: DrainPolicy,
    clock: Callable[[], datetime] = utcnow,
) -> DrainResult:
    """Passes until nothing is due or a write fails; totals of all passes.

    One pipeline across the passes: the next claim is made while the previous
    pass's last chunks are still being written (their rows stay leased to this
    owner, so the claim cannot pick them again).
    """
    total = DrainResult()
    with ThreadPoolExecutor(max_workers=WRITES_IN_FLIGHT, thread_name_prefix="influx") as pool:
        pipe = _Pipeline(
            engine, writer, pool, owner=owner, policy=policy, clock=clock, result=total
        )
        while not pipe.failed:
            rows = _claim(engine, owner=owner, policy=policy, clock=clock)
            total.claimed_rows += len(rows)
            if not rows:
                break
            pipe.send(rows)
        pipe.finish()
    return total


def worker_id() -> str:
    """A lease owner name unique to this process and worker: host pid and random part."""
    return f"{os.uname().nodename[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SinkWorker:
    """Drains the outbox in a background thread until :meth:`stop`."""

    def __init__(
        self,
        engine: Engine,
        writer: LineWriter,
        *,
        policy: DrainPolicy,
        poll_interval_s: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.policy = policy
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self.owner = worker_id()
        self.points_written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="influx-sink", daemon=True)
        self._failing = False

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> SinkWorker:
        return cls(
            engine,
            make_writer(settings),
            policy=DrainPolicy.from_settings(settings),
            poll_interval_s=settings.sink_poll_interval_s,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the pass in progress, then stop and close the writer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.writer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = drain(
                    self.engine,
                    self.writer,
                    owner=self.owner,
                    policy=self.policy,
                    clock=self.clock,
                )
            except Exception:
                # The outer loop: a database hiccup must not end the worker for good.
                log.exception("InfluxDB sink pass failed; retrying in %s s", self.poll_interval_s)
                self._stop.wait(self.poll_interval_s)
                continue
            self.points_written += result.written_points
            if result.failed_rows and not self._failing:
                self._failing = True
                log.warning("InfluxDB writes failing, outbox keeps the points: %s", result.error)
            elif result.written_points and self._failing:
                self._failing = False
                log.warning("InfluxDB writes recovered")
            if result.claimed_rows == 0 or result.failed_rows:
                self._stop.wait(self.poll_interval_s)
