"""Per-device sequence bookkeeping behind the application-level ack.

A wearable frees every frame with ``seq <= acked_seq`` when the edge acks, so the
ack must only ever claim sequences the edge really holds. Two sets of sequence
ranges are kept per device:

- ``committed``: frames committed to the queue (used to recognise duplicates,
  even after the frame was forwarded and deleted);
- ``covered``: ``committed`` plus ranges the wearable declared evicted (EVICTION
  frames), which count towards contiguity but are not frames we hold.

``acked_seq`` is the end of the covered range that contains ``first_seq`` -- the
first sequence this edge saw from the device (the baseline is ``first_seq - 1``).
A late frame below the baseline is stored like any other; it merely joins the
baseline's run, so the ack never moves backwards.
Ranges are stored merged, so their number is the number of open gaps, not the
number of frames.
"""

from bisect import bisect_right
from dataclasses import dataclass, field


@dataclass(slots=True)
class SeqRanges:
    """A set of u32 sequences stored as sorted, disjoint, non-adjacent inclusive ranges."""

    ranges: list[tuple[int, int]] = field(default_factory=list)

    def contains(self, seq: int) -> bool:
        """Whether ``seq`` lies inside one of the ranges."""
        i = bisect_right(self.ranges, (seq, 2**63)) - 1
        return i >= 0 and self.ranges[i][0] <= seq <= self.ranges[i][1]

    def add(self, first: int, last: int) -> None:
        """Add ``first..last`` (inclusive), merging overlapping and adjacent ranges."""
        if first > last:
            raise ValueError(f"empty range {first}..{last}")
        ranges = self.ranges
        if ranges and ranges[-1][0] <= first <= ranges[-1][1] + 1 <= last + 1:
            # the common case, a device's next seq: extend the newest range in place
            if last > ranges[-1][1]:
                ranges[-1] = (ranges[-1][0], last)
            return
        kept: list[tuple[int, int]] = []
        lo, hi = first, last
        for a, b in self.ranges:
            if b < lo - 1 or a > hi + 1:
                kept.append((a, b))
            else:
                lo, hi = min(lo, a), max(hi, b)
        kept.append((lo, hi))
        kept.sort()
        self.ranges = kept

    def end_of_run(self, seq: int) -> int | None:
        """Last sequence of the range containing ``seq``; None if ``seq`` is not held."""
        i = bisect_right(self.ranges, (seq, 2**63)) - 1
        if i >= 0 and self.ranges[i][0] <= seq <= self.ranges[i][1]:
            return self.ranges[i][1]
        return None

    def copy(self) -> "SeqRanges":
        """An independent copy (the queue edits copies and keeps them only after COMMIT)."""
        return SeqRanges(list(self.ranges))


@dataclass(slots=True)
class DeviceSeqState:
    """What the edge knows about one device's sequence space."""

    first_seq: int
    committed: SeqRanges = field(default_factory=SeqRanges)
    covered: SeqRanges = field(default_factory=SeqRanges)
    duplicates: int = 0

    def is_duplicate(self, seq: int) -> bool:
        """A frame with this seq was already committed (redelivery or retransmission)."""
        return self.committed.contains(seq)

    def commit_frame(self, seq: int, evicted: tuple[int, int] | None = None) -> None:
        """Record a committed frame and, for an EVICTION frame, the range it declares."""
        self.committed.add(seq, seq)
        self.covered.add(seq, seq)
        if evicted is not None:
            self.covered.add(*evicted)

    @property
    def acked_seq(self) -> int:
        """Highest contiguous committed-or-evicted seq from the baseline (first seen - 1)."""
        end = self.covered.end_of_run(self.first_seq)
        return self.first_seq - 1 if end is None else end

    def copy(self) -> "DeviceSeqState":
        """An independent copy for transactional edits."""
        return DeviceSeqState(
            first_seq=self.first_seq,
            committed=self.committed.copy(),
            covered=self.covered.copy(),
            duplicates=self.duplicates,
        )
