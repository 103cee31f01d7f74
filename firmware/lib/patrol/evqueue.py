"""Persistent flash queue of signed frames, freed by the edge's application ack.

Layout under ``directory``::

    q00000001.seg ...   segments of up to 64 records: u16 length (big-endian) + frame
    meta                "acked_seq last_seq" (text), rewritten atomically on every free

Frames are appended in sequence order (the wearable allocates seq and appends
before it publishes), so each segment covers a seq range and freeing "every seq
<= acked" deletes whole segments plus a skip inside the oldest one. Only a small
index (five ints per segment) lives in RAM; frames are read back on demand.

When the queue is full the wearable calls ``evict_oldest()``: the oldest segment
with evictable frames is rewritten keeping only SOS and EVICTION frames, and the
evicted seq runs are returned so the wearable can sign EVICTION records for them
(the cloud then counts those seqs as evicted, not lost). SOS is never evicted.
A torn record at the tail of a segment (power cut mid-write) is cut off at load.
Skeleton quality: issue #3 deepens wear levelling and flash budgeting.
"""

import os
import struct

from patrol.compat import const, makedirs, path_exists
from patrol.frames import EVICTION, SOS
from patrol.limits import FRAME_HEADER_BYTES, FRAME_MAC_BYTES, MAX_FRAME_BYTES

SEGMENT_FRAMES = const(64)  # records per segment file: ~15 KB of flash, one index entry
_MIN_FRAME_BYTES = const(36)  # header 20 + MAC 16
_META = "meta"
_SUFFIX = ".seg"

# index entry fields
_NO = const(0)
_FIRST = const(1)
_LAST = const(2)
_LIVE = const(3)
_IN_FILE = const(4)


def _seq_of(frame):
    return struct.unpack_from(">I", frame, 8)[0]


def _protected(frame):
    return frame[1] == SOS or frame[1] == EVICTION


class EventQueue:
    """Bounded persistent queue; see the module docstring for the layout."""

    def __init__(self, directory, max_frames=5000):
        self.directory = directory
        self.max_frames = max_frames
        self.acked_seq = 0
        self.last_seq = 0
        self._depth = 0
        self._segments = []  # [no, first_seq, last_seq, live, in_file]
        makedirs(directory)
        self._load()

    # --- persistence -----------------------------------------------------------------

    def _path(self, no):
        return "%s/q%08d%s" % (self.directory, no, _SUFFIX)

    def _load(self):
        meta_path = self.directory + "/" + _META
        if path_exists(meta_path):
            with open(meta_path) as f:
                parts = f.read().split()
            if len(parts) == 2:
                self.acked_seq = int(parts[0])
                self.last_seq = int(parts[1])
        numbers = []
        for name in os.listdir(self.directory):
            if name.startswith("q") and name.endswith(_SUFFIX):
                numbers.append(int(name[1 : -len(_SUFFIX)]))
        numbers.sort()
        for no in numbers:
            entry = self._scan(no)
            if entry is None:
                os.remove(self._path(no))
                continue
            self._segments.append(entry)
            self._depth += entry[_LIVE]
            if entry[_LAST] > self.last_seq:
                self.last_seq = entry[_LAST]

    def _scan(self, no):
        """Index one segment; cut a torn tail record; None if nothing useful remains."""
        first = last = 0
        live = in_file = 0
        good_bytes = 0
        torn = False
        path = self._path(no)
        with open(path, "rb") as f:
            while True:
                head = f.read(2)
                if not head:
                    break
                size = (head[0] << 8) | head[1] if len(head) == 2 else 0
                frame = f.read(size) if _MIN_FRAME_BYTES <= size <= MAX_FRAME_BYTES else b""
                if len(head) != 2 or len(frame) != size or size == 0:
                    torn = True
                    break
                seq = _seq_of(frame)
                if in_file == 0:
                    first = seq
                last = seq
                in_file += 1
                if seq > self.acked_seq:
                    live += 1
                good_bytes += 2 + size
        if torn:
            self._truncate(path, good_bytes)
        if in_file == 0 or last <= self.acked_seq:
            return None
        return [no, first, last, live, in_file]

    def _truncate(self, path, good_bytes):
        # MicroPython files have no truncate(): copy the good prefix and rename over.
        tmp = path + ".tmp"
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            remaining = good_bytes
            while remaining:
                chunk = src.read(min(remaining, 256))
                if not chunk:
                    break
                dst.write(chunk)
                remaining -= len(chunk)
        os.rename(tmp, path)

    def _write_meta(self):
        path = self.directory + "/" + _META
        with open(path + ".tmp", "w") as f:
            f.write("%d %d" % (self.acked_seq, self.last_seq))
        os.rename(path + ".tmp", path)

    def _records(self, no):
        """Yield every frame stored in segment ``no``, oldest first."""
        with open(self._path(no), "rb") as f:
            while True:
                head = f.read(2)
                if len(head) != 2:
                    return
                frame = f.read((head[0] << 8) | head[1])
                yield frame

    def _rewrite(self, entry, frames):
        if not frames:
            os.remove(self._path(entry[_NO]))
            self._segments.remove(entry)
            return
        tmp = self._path(entry[_NO]) + ".tmp"
        with open(tmp, "wb") as f:
            for frame in frames:
                f.write(struct.pack(">H", len(frame)))
                f.write(frame)
        os.rename(tmp, self._path(entry[_NO]))
        entry[_FIRST] = _seq_of(frames[0])
        entry[_LAST] = _seq_of(frames[-1])
        entry[_IN_FILE] = len(frames)
        live = 0
        for frame in frames:
            if _seq_of(frame) > self.acked_seq:
                live += 1
        entry[_LIVE] = live

    # --- API -------------------------------------------------------------------------

    def depth(self):
        """Frames stored and not yet acknowledged."""
        return self._depth

    def __len__(self):
        return self._depth

    def is_full(self):
        """True when the next append should first make room with ``evict_oldest()``."""
        return self._depth >= self.max_frames

    def append(self, frame):
        """Store one signed frame durably (the file is closed before returning)."""
        if not FRAME_HEADER_BYTES + FRAME_MAC_BYTES <= len(frame) <= MAX_FRAME_BYTES:
            raise ValueError("not a frame")
        seq = _seq_of(frame)
        if seq <= self.last_seq:
            raise ValueError("seq %d not above last stored seq %d" % (seq, self.last_seq))
        if not self._segments or self._segments[-1][_IN_FILE] >= SEGMENT_FRAMES:
            no = self._segments[-1][_NO] + 1 if self._segments else self._next_number()
            entry = [no, seq, seq, 0, 0]
            self._segments.append(entry)
        else:
            entry = self._segments[-1]
        with open(self._path(entry[_NO]), "ab") as f:
            f.write(struct.pack(">H", len(frame)))
            f.write(frame)
        entry[_LAST] = seq
        entry[_LIVE] += 1
        entry[_IN_FILE] += 1
        self._depth += 1
        self.last_seq = seq

    def _next_number(self):
        # Numbers keep rising across restarts; an empty directory starts at 1.
        highest = 0
        for name in os.listdir(self.directory):
            if name.startswith("q") and name.endswith(_SUFFIX):
                highest = max(highest, int(name[1 : -len(_SUFFIX)]))
        return highest + 1

    def peek(self, max_frames, after_seq=0):
        """Up to ``max_frames`` unacknowledged frames with seq > ``after_seq``, oldest first."""
        floor = max(after_seq, self.acked_seq)
        out = []
        for entry in self._segments:
            if entry[_LAST] <= floor:
                continue
            for frame in self._records(entry[_NO]):
                if _seq_of(frame) > floor:
                    out.append(frame)
                    if len(out) >= max_frames:
                        return out
        return out

    def unacked_sos(self, max_frames=4):
        """Unacknowledged SOS frames, oldest first (sent ahead of the backlog on reconnect)."""
        out = []
        for entry in self._segments:
            for frame in self._records(entry[_NO]):
                if frame[1] == SOS and _seq_of(frame) > self.acked_seq:
                    out.append(frame)
                    if len(out) >= max_frames:
                        return out
        return out

    def free_upto(self, acked_seq):
        """Forget every frame with seq <= ``acked_seq``; returns how many were freed."""
        if acked_seq > self.last_seq:
            acked_seq = self.last_seq  # an ack beyond what we sent frees what we have
        if acked_seq <= self.acked_seq:
            return 0
        before = self._depth
        self.acked_seq = acked_seq
        while self._segments and self._segments[0][_FIRST] <= acked_seq:
            entry = self._segments[0]
            if entry[_LAST] <= acked_seq:
                self._depth -= entry[_LIVE]
                os.remove(self._path(entry[_NO]))
                self._segments.pop(0)
                continue
            live = 0
            for frame in self._records(entry[_NO]):
                if _seq_of(frame) > acked_seq:
                    live += 1
            self._depth -= entry[_LIVE] - live
            entry[_LIVE] = live
            break
        self._write_meta()
        return before - self._depth

    def evict_oldest(self):
        """Drop the evictable frames of the oldest segment that has any.

        Returns the evicted seq runs as [(first_seq, last_seq), ...] (runs are
        split by the SOS/EVICTION frames that stay); [] if nothing can go.
        """
        for entry in self._segments:
            keep = []
            runs = []
            run_first = run_last = 0
            for frame in self._records(entry[_NO]):
                seq = _seq_of(frame)
                if seq <= self.acked_seq:
                    continue
                if _protected(frame):
                    keep.append(frame)
                    if run_first:
                        runs.append((run_first, run_last))
                        run_first = 0
                    continue
                if not run_first:
                    run_first = seq
                run_last = seq
            if run_first:
                runs.append((run_first, run_last))
            if not runs:
                continue
            before = entry[_LIVE]
            self._rewrite(entry, keep)
            self._depth -= before - len(keep)
            self._write_meta()  # last_seq survives even if the newest segment went
            return runs
        return []
