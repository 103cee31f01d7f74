"""Which of a wearable's sequence numbers never arrived: ``lost`` or ``evicted``.

A wearable numbers its frames 1, 2, 3, ... A gap below the highest seq received
is ``lost`` unless an EVICTION frame (kind 5) from the wearable says it dropped
those seqs itself, which makes them ``evicted``; a frame that arrives late
shrinks whichever range held its seq. The state is per wearable (wire
``device_id``): a ``device_sequences`` row (highest seq, received count), locked
with ``SELECT ... FOR UPDATE`` during the update, and the ``sequence_ranges`` rows.

:func:`record_batch` runs once per ingest batch, after the batch's frames are
inserted and after the chain head is locked (one lock order for every process).
The common case, seqs arriving in order without gaps, costs three statements per
batch, whatever the number of wearables in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloud_api.models import DeviceSequence, Event, SequenceRange

LOST = "lost"
EVICTED = "evicted"

Range = tuple[int, int]
"""An inclusive seq range (first, last)."""


@dataclass
class DeviceBatch:
    """What one batch accepted from one wearable."""

    seqs: list[int] = field(default_factory=list)
    evictions: list[Range] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SequenceReport:
    device_id: int
    received: int
    highest_seq: int
    lost: list[Range]
    evicted: list[Range]


def subtract(ranges: Iterable[Range], cut: Range) -> list[Range]:
    """``ranges`` without the seqs of ``cut``."""
    first, last = cut
    out: list[Range] = []
    for a, b in ranges:
        if b < first or a > last:
            out.append((a, b))
            continue
        if a < first:
            out.append((a, first - 1))
        if b > last:
            out.append((last + 1, b))
    return out


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, with overlapping or adjacent ranges joined."""
    out: list[Range] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _runs(seqs: Sequence[int]) -> list[Range]:
    """Sorted distinct seqs as maximal runs."""
    return merge((s, s) for s in seqs)


_states = cast(Table, DeviceSequence.__table__)
_ranges = cast(Table, SequenceRange.__table__)
_events = cast(Table, Event.__table__)
_SET_STATE = (
    update(_states)
    .where(_states.c.device_id == bindparam("b_device_id"))
    .values(highest_seq=bindparam("b_highest"), received=bindparam("b_received"))
)
_LOAD_RANGES = select(_ranges.c.first_seq, _ranges.c.last_seq, _ranges.c.status).where(
    _ranges.c.device_id == bindparam("device_id")
)
_DROP_RANGES = delete(_ranges).where(_ranges.c.device_id == bindparam("device_id"))
_INSERT_RANGES = insert(_ranges)
_RECEIVED_IN = select(_events.c.seq).where(
    _events.c.device_id == bindparam("device_id"),
    _events.c.seq.between(bindparam("first"), bindparam("last")),
)


def highest_seqs(session: Session, device_ids: Iterable[int]) -> dict[int, int]:
    """The highest seq accepted so far of each of ``device_ids`` that has one (no lock).

    Ingest uses it to skip looking up frames that cannot be stored yet: a seq above
    its wearable's highest was never accepted (a concurrent batch that stores it
    meanwhile is caught by the unique constraint at insert time).
    """
    wanted = sorted(set(device_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(_states.c.device_id, _states.c.highest_seq).where(_states.c.device_id.in_(wanted))
    )
    return {int(r.device_id): int(r.highest_seq) for r in rows}


def _lock_states(session: Session, device_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(highest_seq, received) of each wearable, rows created if new and locked in id order."""
    known = set(
        session.execute(
            select(_states.c.device_id).where(_states.c.device_id.in_(device_ids))
        ).scalars()
    )
    missing = [d for d in device_ids if d not in known]
    if missing:
        dialect = session.get_bind().dialect.name
        stmt: Any = (
            postgresql.insert(_states) if dialect == "postgresql" else sqlite.insert(_states)
        )
        session.execute(
            stmt.on_conflict_do_nothing(),
            [{"device_id": d, "highest_seq": 0, "received": 0} for d in missing],
        )
    rows = session.execute(
        select(_states.c.device_id, _states.c.highest_seq, _states.c.received)
        .where(_states.c.device_id.in_(device_ids))
        .order_by(_states.c.device_id)
        .with_for_update()
    )
    return {r.device_id: (int(r.highest_seq), int(r.received)) for r in rows}


def record_batch(session: Session, batches: Mapping[int, DeviceBatch]) -> None:
    """Fold one ingest batch's accepted frames into each wearable's sequence state.

    Three statements per batch in the common case (find, lock, update every wearable
    at once); ranges are rewritten only for a wearable with a gap, a late frame or an
    eviction.
    """
    if not batches:
        return
    device_ids = sorted(batches)  # one lock order across processes
    states = _lock_states(session, device_ids)
    updates = []
    for device_id in device_ids:
        batch = batches[device_id]
        highest, received = states[device_id]
        seqs = sorted(batch.seqs)
        late = [s for s in seqs if s <= highest]
        new_highest = max(highest, seqs[-1]) if seqs else highest
        gap_free = (
            not late and not batch.evictions and _runs(seqs) in ([], [(highest + 1, new_highest)])
        )
        if not gap_free:
            _update_ranges(session, device_id, highest, seqs, batch.evictions)
        updates.append(
            {
                "b_device_id": device_id,
                "b_highest": new_highest,
                "b_received": received + len(seqs),
            }
        )
    session.execute(_SET_STATE, updates)


def _update_ranges(
    session: Session,
    device_id: int,
    highest: int,
    seqs: list[int],
    evictions: list[Range],
) -> None:
    rows = session.execute(_LOAD_RANGES, {"device_id": device_id}).all()
    lost = [(r.first_seq, r.last_seq) for r in rows if r.status == LOST]
    evicted = [(r.first_seq, r.last_seq) for r in rows if r.status == EVICTED]
    before = (merge(lost), merge(evicted))
    for first, last in evictions:
        # Seqs in the range that did arrive (sent before the wearable dropped them) stay
        # received; the rest is evicted, whether or not a gap was known yet.
        claimed = [(first, last)]
        for (seq,) in session.execute(
            _RECEIVED_IN, {"device_id": device_id, "first": first, "last": last}
        ):
            claimed = subtract(claimed, (seq, seq))
        for cut in claimed:
            lost = subtract(lost, cut)
        evicted = merge([*evicted, *claimed])
    previous = highest
    for seq in seqs:
        if seq > previous + 1:
            gap = [(previous + 1, seq - 1)]
            for cut in evicted:
                gap = subtract(gap, cut)
            lost.extend(gap)
        previous = max(previous, seq)
    for seq in seqs:  # late frames, and frames inside an evicted range claimed ahead
        lost = subtract(lost, (seq, seq))
        evicted = subtract(evicted, (seq, seq))
    after = (merge(lost), merge(evicted))
    if after == before:
        return
    session.execute(_DROP_RANGES, {"device_id": device_id})
    new_rows = [
        {"device_id": device_id, "first_seq": a, "last_seq": b, "status": status}
        for status, ranges in ((LOST, after[0]), (EVICTED, after[1]))
        for a, b in ranges
    ]
    if new_rows:
        session.execute(_INSERT_RANGES, new_rows)


def report(session: Session, device_id: int) -> SequenceReport | None:
    """The wearable's sequence state, or None if no frame of it was ever accepted."""
    state = session.get(DeviceSequence, device_id)
    if state is None:
        return None
    rows = session.execute(
        select(SequenceRange.first_seq, SequenceRange.last_seq, SequenceRange.status)
        .where(SequenceRange.device_id == device_id)
        .order_by(SequenceRange.first_seq)
    ).all()
    return SequenceReport(
        device_id=device_id,
        received=state.received,
        highest_seq=state.highest_seq,
        lost=[(r.first_seq, r.last_seq) for r in rows if r.status == LOST],
        evicted=[(r.first_seq, r.last_seq) for r in rows if r.status == EVICTED],
    )
