"""Shifts and the evidence of what happened on them (pure values and coverage maths).

A planned :class:`Shift` names a guard, a post, the wearable the guard carries
and the planned start and end. What actually happened comes from the
wearable's accepted events, turned by the store into the plain values below:
:class:`Visit` (NFC tap or BLE checkpoint visit), :class:`Sample` (a heartbeat:
in-zone bit and the equipment heard; or a presence advert heard by the post's
gateway), :class:`SosCase`.

Coverage: a heartbeat stands for the time until the next sample, at most
``MAX_SAMPLE_GAP_S``; after that the wearable is *silent* (no signal), which is
neither in nor out of the zone. Presence adverts heard by the post's gateway
are lower-assurance evidence of being on site: they count as in the zone only
where no heartbeat covers the time (the wearable's own zone bit wins).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_SAMPLE_GAP_S = 5 * 60  # a heartbeat vouches for at most 5 min (wearables send every 15-60 s)


@dataclass(frozen=True, slots=True)
class Shift:
    shift_id: int
    guard_id: int
    post_id: int
    device_id: int  # the wearable's wire id
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("shift times must be timezone-aware")
        if self.end <= self.start:
            raise ValueError("a shift must end after it starts")

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    def overlap(self, other: Shift) -> tuple[datetime, datetime] | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return (start, end) if start < end else None


@dataclass(frozen=True, slots=True)
class Visit:
    """A checkpoint visit by a wearable; ``dwell_s`` is None for NFC taps."""

    event_id: int
    device_id: int
    checkpoint_id: int
    at: datetime
    dwell_s: int | None = None
    assurance: str = "high"
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sample:
    """A heartbeat (``in_zone`` from the wearable) or a presence advert (``advert=True``)."""

    event_id: int
    device_id: int
    at: datetime
    in_zone: bool
    equipment: tuple[tuple[int, int], ...] = ()  # (tag id, battery %)
    advert: bool = False
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SosCase:
    """An SOS from the wearable; ``acknowledged_at`` None: not acknowledged (or not tracked)."""

    event_id: int
    device_id: int
    at: datetime
    test: bool = False
    acknowledged_at: datetime | None = None
    tracked: bool = False  # True when an alert system reports acknowledgements


@dataclass(frozen=True, slots=True)
class Segment:
    """[start, end) covered by one sample."""

    start: datetime
    end: datetime
    sample: Sample

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def coverage(
    samples: Iterable[Sample], start: datetime, end: datetime, max_gap_s: int = MAX_SAMPLE_GAP_S
) -> list[Segment]:
    """Segments of [start, end) vouched for by a sample; time outside them is silent.

    Samples are ordered by (time, event id), so the result does not depend on
    the order in which events arrived. A presence advert within ``max_gap_s``
    after a heartbeat is ignored (the heartbeat already covers that time).
    """
    ordered = sorted(samples, key=lambda s: (s.at, s.advert, s.event_id))
    kept: list[Sample] = []
    last_heartbeat: datetime | None = None
    gap = timedelta(seconds=max_gap_s)
    for sample in ordered:
        if sample.advert:
            if last_heartbeat is not None and sample.at - last_heartbeat < gap:
                continue
        else:
            last_heartbeat = sample.at
        kept.append(sample)
    segments: list[Segment] = []
    for i, sample in enumerate(kept):
        seg_end = sample.at + gap
        if i + 1 < len(kept):
            seg_end = min(seg_end, kept[i + 1].at)
        s, e = max(sample.at, start), min(seg_end, end)
        if s < e:
            segments.append(Segment(s, e, sample))
    return segments


def merge_spans(
    spans: Sequence[tuple[datetime, datetime]],
) -> list[tuple[datetime, datetime]]:
    """Sorted union of half-open spans."""
    merged: list[tuple[datetime, datetime]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def complement(
    spans: Sequence[tuple[datetime, datetime]], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) not in the (merged, sorted) ``spans``."""
    out: list[tuple[datetime, datetime]] = []
    cursor = start
    for s, e in spans:
        if s > cursor:
            out.append((cursor, min(s, end)))
        cursor = max(cursor, e)
        if cursor >= end:
            break
    if cursor < end:
        out.append((cursor, end))
    return [(s, e) for s, e in out if s < e]
