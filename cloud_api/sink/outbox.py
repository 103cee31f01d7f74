"""The InfluxDB outbox: filled in the ingest transaction, claimed by workers with leases.

Filling: :class:`OutboxBuffer` collects the line protocol of every item a batch
accepts and writes ONE ``influx_outbox`` row at the end of the batch, in the
same transaction as the evidence: the points exist exactly when the evidence
does, and ingest never waits on InfluxDB.

Draining (:mod:`cloud_api.sink.worker`): :func:`claim` marks up to N due rows
with this worker's lease in one short transaction. On PostgreSQL the candidate
rows are picked with ``FOR UPDATE SKIP LOCKED``, so several API processes claim
disjoint rows without waiting on each other; SQLite serialises writers anyway
(``BEGIN IMMEDIATE``). No transaction stays open during the HTTP write. Rows
are deleted only after InfluxDB accepted them (:func:`complete`); a failure
releases them with a backoff (:func:`release`). A worker that dies mid-write
leaves a lease that expires; the next worker rewrites the same points, which
InfluxDB stores under the same series and timestamp: no duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.orm import Session

from cloud_api.models import Checkpoint, InfluxOutbox, InfluxOutboxLines
from cloud_api.sink.schema import (
    LineProtocolError,
    Point,
    encode_line,
    lines_for_event,
    points_for_advert,
    points_for_observation,
)

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000
"""The last error is kept per row for people, bounded."""

_outbox = cast(Table, InfluxOutbox.__table__)
_lines = cast(Table, InfluxOutboxLines.__table__)
_INSERT_ROW = insert(_outbox).returning(_outbox.c.id)


def enqueue(session: Session, *, lines: str, n_points: int, now: datetime) -> int:
    """Add one outbox row holding ``lines`` (newline-separated), due at once; its id."""
    row_id: int = session.execute(
        _INSERT_ROW,
        {"created_at": now, "n_points": n_points, "attempts": 0, "next_attempt_at": now},
    ).scalar_one()
    session.execute(insert(_lines), {"outbox_id": row_id, "lines": lines})
    return row_id


class OutboxBuffer:
    """The points of one ingest batch, written as one outbox row by :meth:`flush`."""

    def __init__(self, session: Session, *, site_id: int | None, gateway_id: str) -> None:
        self._session = session
        self._site_id = site_id
        self._gateway_id = gateway_id
        self._lines: list[str] = []
        self._posts: dict[int, int | None] = {}

    def preload_posts(self, checkpoint_ids: set[int]) -> None:
        """The posts of many checkpoints in one query (ingest calls it once per batch)."""
        wanted = sorted(c for c in checkpoint_ids if c not in self._posts)
        if not wanted:
            return
        for checkpoint_id in wanted:
            self._posts[checkpoint_id] = None
        for row in self._session.execute(
            select(Checkpoint.id, Checkpoint.post_id).where(Checkpoint.id.in_(wanted))
        ):
            self._posts[row.id] = row.post_id

    def _post_of(self, checkpoint_id: int | None) -> int | None:
        if checkpoint_id is None:
            return None
        if checkpoint_id not in self._posts:
            self._posts[checkpoint_id] = self._session.execute(
                select(Checkpoint.post_id).where(Checkpoint.id == checkpoint_id)
            ).scalar_one_or_none()
        return self._posts[checkpoint_id]

    def _add(self, points: Sequence[Point], what: str) -> None:
        for point in points:
            try:
                self._lines.append(encode_line(point))
            except LineProtocolError:
                # The evidence is stored either way; only its time-series copy is lost.
                log.exception("no InfluxDB point for %s", what)

    def add_event(self, row: Mapping[str, Any]) -> None:
        """Points of an accepted device frame (``row`` as inserted into ``events``)."""
        try:
            self._lines += lines_for_event(
                row, site_id=self._site_id, post_id=self._post_of(row.get("checkpoint_id"))
            )
        except LineProtocolError:
            # The evidence is stored either way; only its time-series copy is lost.
            log.exception("no InfluxDB point for event %08x:%d", row["device_id"], row["seq"])

    def add_advert(self, row: Mapping[str, Any]) -> None:
        """Points of an accepted advert (``row`` as inserted into ``advert_observations``)."""
        self._add(
            points_for_advert(row, site_id=self._site_id, gateway_id=self._gateway_id),
            f"advert {row['key']}",
        )

    def add_observation(self, row: Mapping[str, Any]) -> None:
        """Points of an accepted gateway observation."""
        self._add(
            points_for_observation(row, site_id=self._site_id, gateway_id=self._gateway_id),
            f"observation {self._gateway_id}:{row['gw_seq']}",
        )

    def flush(self, now: datetime) -> None:
        """Insert the collected lines as one row (nothing when the batch accepted nothing)."""
        if not self._lines:
            return
        enqueue(self._session, lines="\n".join(self._lines), n_points=len(self._lines), now=now)
        self._lines = []


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """An outbox row leased to one worker."""

    id: int
    n_points: int
    lines: str
    attempts: int


def claim(
    session: Session,
    *,
    owner: str,
    now: datetime,
    lease_s: float,
    max_rows: int,
    max_points: int | None = None,
) -> list[ClaimedRow]:
    """Lease due rows (oldest first) to ``owner``; the caller commits.

    At most ``max_rows`` rows, and no more rows than needed to reach
    ``max_points`` (one row always, however big), which bounds the memory a
    claim holds when rows are large.
    """
    due = (
        select(_outbox.c.id, _outbox.c.n_points)
        .where(
            _outbox.c.dead_at.is_(None),
            _outbox.c.next_attempt_at <= now,
            (_outbox.c.lease_until.is_(None)) | (_outbox.c.lease_until < now),
        )
        .order_by(_outbox.c.id)
        .limit(max_rows)
        .with_for_update(skip_locked=True)  # ignored by SQLite, which has one writer
    )
    ids: list[int] = []
    points = 0
    for row_id, n_points in session.execute(due).all():
        if ids and max_points is not None and points + n_points > max_points:
            break
        ids.append(row_id)
        points += n_points
    if not ids:
        return []
    session.execute(
        update(_outbox)
        .where(_outbox.c.id.in_(ids))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
    )
    rows = session.execute(
        select(_outbox.c.id, _outbox.c.n_points, _lines.c.lines, _outbox.c.attempts)
        .join(_lines, _lines.c.outbox_id == _outbox.c.id)
        .where(_outbox.c.id.in_(ids))
        .order_by(_outbox.c.id)
    ).all()
    return [ClaimedRow(r.id, r.n_points, r.lines, r.attempts) for r in rows]


def complete(session: Session, *, owner: str, ids: Sequence[int]) -> int:
    """Delete rows InfluxDB accepted (only while this worker still holds them)."""
    owned = list(
        session.execute(
            select(_outbox.c.id).where(_outbox.c.id.in_(ids), _outbox.c.lease_owner == owner)
        ).scalars()
    )
    if not owned:
        return 0
    session.execute(delete(_lines).where(_lines.c.outbox_id.in_(owned)))
    session.execute(delete(_outbox).where(_outbox.c.id.in_(owned)))
    return len(owned)


def backoff_s(attempts: int, *, initial_s: float, max_s: float) -> float:
    """Exponential backoff: ``initial_s * 2**(attempts-1)``, at most ``max_s``."""
    return min(max_s, initial_s * 2.0 ** min(attempts - 1, 62))


def release(
    session: Session,
    *,
    owner: str,
    rows: Sequence[ClaimedRow],
    now: datetime,
    error: str,
    initial_s: float,
    max_s: float,
) -> None:
    """A retryable failure: give the rows back, due again after a backoff per row."""
    for row in rows:
        attempts = row.attempts + 1
        session.execute(
            update(_outbox)
            .where(_outbox.c.id == row.id, _outbox.c.lease_owner == owner)
            .values(
                attempts=attempts,
                next_attempt_at=now
                + timedelta(seconds=backoff_s(attempts, initial_s=initial_s, max_s=max_s)),
                lease_owner=None,
                lease_until=None,
                last_error=error[:MAX_ERROR_CHARS],
            )
        )


def bury(session: Session, *, owner: str, row: ClaimedRow, now: datetime, error: str) -> None:
    """InfluxDB refused the row's data itself: keep it, out of the queue, with the reason."""
    session.execute(
        update(_outbox)
        .where(_outbox.c.id == row.id, _outbox.c.lease_owner == owner)
        .values(
            attempts=row.attempts + 1,
            dead_at=now,
            lease_owner=None,
            lease_until=None,
            last_error=error[:MAX_ERROR_CHARS],
        )
    )


def pending_points(session: Session) -> int:
    """Points waiting (not dead): for health output and tests."""
    total = session.execute(
        select(func.coalesce(func.sum(_outbox.c.n_points), 0)).where(_outbox.c.dead_at.is_(None))
    ).scalar_one()
    return int(total)
