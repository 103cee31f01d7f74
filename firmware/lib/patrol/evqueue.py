"""Persistent flash queue of signed frames, freed by the edge's application ack.

Layout under ``directory``::

    q00000001.seg ...   segments of up to 64 records: u16 length (big-endian) + frame
    meta                "acked_seq last_seq" (text), rewritten atomically on every free

Frames are appended in sequence order (the wearable allocates seq and appends
before it publishes), so each segment covers a seq range and freeing "every seq
<= acked" deletes whole segments plus a skip inside the oldest one. Only a small
index (five ints per segment) lives in RAM; frames are read back on demand.

When the queue is full the wearable calls ``evict_oldest()``. Order: heartbeats
first (the oldest segment holding heartbeats loses them), then any other event
oldest first (the oldest segment loses everything but SOS and EVICTION frames);
SOS is never evicted. The evicted seq runs are returned so the wearable signs an
EVICTION record for each (the cloud then counts those seqs as evicted, not lost).
Each run costs one EVICTION frame, so a heartbeat pass that would free fewer than
``_MIN_FREED_PER_RECORD`` frames per record (heartbeats interleaved one by one
with scans) is skipped in favour of the next rule.

Crash safety: a record is ``u16 length + frame``, appended in one write to the
newest segment and never modified in place; rewrites (eviction, torn-tail repair)
go to a ``.tmp`` file renamed over the old one. At load every record is checked
(length, version byte, body_len consistent with the length); the first bad or
short record ends the segment and is cut off, so a torn write after power loss
loses only that record and never an earlier one. A write that fails (flash full)
seals its segment: later frames go to a new segment, never after a partial record.
"""

import os
import struct

from patrol.compat import const, makedirs, path_exists
from patrol.frames import EVICTION, HEARTBEAT, SOS
from patrol.limits import FRAME_HEADER_BYTES, FRAME_MAC_BYTES, MAX_FRAME_BYTES

SEGMENT_FRAMES = const(64)  # records per segment file: ~15 KB of flash, one index entry
_MIN_FRAME_BYTES = const(36)  # header 20 + MAC 16
_MIN_FREED_PER_RECORD = const(2)  # a heartbeat-only eviction must free 2 frames per EVICTION record it costs
_HEAD_BYTES = const(14)  # u16 record length + frame header up to and including the u32 seq
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


def _well_formed(frame):
    # version 1 and a body_len that matches the record length: catches garbage records
    return frame[0] == 1 and FRAME_HEADER_BYTES + ((frame[18] << 8) | frame[19]) + FRAME_MAC_BYTES == len(frame)


class EventQueue:
    """Bounded persistent queue; see the module docstring for the layout."""

    def __init__(self, directory, max_frames=5000):
        self.directory = directory
        self.max_frames = max_frames
        self.acked_seq = 0
        self.last_seq = 0
        self._depth = 0
        self._segments = []  # [no, first_seq, last_seq, live, in_file]
        self._cursor = None  # (segment no, byte offset after a record, its seq): see peek()
        self._head = bytearray(_HEAD_BYTES)  # record length + frame bytes up to the seq
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
                if len(head) != 2 or len(frame) != size or size == 0 or not _well_formed(frame):
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
                size = (head[0] << 8) | head[1]
                frame = f.read(size)
                if len(frame) != size or size < _MIN_FRAME_BYTES:
                    return  # torn tail of a sealed segment (cut at the next load)
                yield frame

    def _count_above(self, no, seq):
        """Records of segment ``no`` with a seq above ``seq``, reading only their heads.

        Each ack lands inside the oldest segment; reading whole frames to count the
        live ones allocated the segment (up to 64 frames) on every ack. This reads
        length + the first 12 frame bytes into one preallocated buffer and seeks on.
        """
        head = self._head
        count = 0
        with open(self._path(no), "rb") as f:
            while f.readinto(head) == _HEAD_BYTES:
                size = (head[0] << 8) | head[1]
                if size < _MIN_FRAME_BYTES:
                    break
                if struct.unpack_from(">I", head, 10)[0] > seq:
                    count += 1
                f.seek(size - (_HEAD_BYTES - 2), 1)
        return count

    def _rewrite(self, entry, frames):
        self._cursor = None  # byte offsets in this segment move
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
        try:
            with open(self._path(entry[_NO]), "ab") as f:
                f.write(struct.pack(">H", len(frame)) + frame)  # one write: one record
        except OSError:
            entry[_IN_FILE] = SEGMENT_FRAMES  # sealed: nothing is ever appended after a partial record
            raise
        entry[_LAST] = seq
        entry[_LIVE] += 1
        entry[_IN_FILE] += 1
        self._depth += 1
        self.last_seq = seq

    def skip_seq(self, seq):
        """Record that ``seq`` is used although its frame could not be stored (never reused)."""
        if seq > self.last_seq:
            self.last_seq = seq
            try:
                self._write_meta()
            except OSError:
                pass  # the flash is full: a later free_upto() writes it

    def _next_number(self):
        # Numbers keep rising across restarts; an empty directory starts at 1.
        highest = 0
        for name in os.listdir(self.directory):
            if name.startswith("q") and name.endswith(_SUFFIX):
                highest = max(highest, int(name[1 : -len(_SUFFIX)]))
        return highest + 1

    def peek(self, max_frames, after_seq=0):
        """Up to ``max_frames`` unacknowledged frames with seq > ``after_seq``, oldest first.

        The wearable peeks after the last frame it published, every step; a cursor
        (segment, byte offset, seq) remembers where the previous peek stopped, so the
        next one seeks there instead of reading the segment from its start (which
        allocated every earlier record of the segment again, on every step).
        """
        floor = max(after_seq, self.acked_seq)
        out = []
        cursor = self._cursor
        for entry in self._segments:
            if entry[_LAST] <= floor:
                continue
            no = entry[_NO]
            offset = cursor[1] if cursor is not None and cursor[0] == no and cursor[2] == floor else 0
            with open(self._path(no), "rb") as f:
                if offset:
                    f.seek(offset)
                while True:
                    head = f.read(2)
                    if len(head) != 2:
                        break
                    size = (head[0] << 8) | head[1]
                    frame = f.read(size)
                    if len(frame) != size or size < _MIN_FRAME_BYTES:
                        break  # torn tail of a sealed segment (cut at the next load)
                    offset += 2 + size
                    seq = _seq_of(frame)
                    if seq > floor:
                        out.append(frame)
                        self._cursor = (no, offset, seq)
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
                self._cursor = None  # a new segment may reuse this number
                continue
            live = self._count_above(entry[_NO], acked_seq)
            self._depth -= entry[_LIVE] - live
            entry[_LIVE] = live
            break
        self._write_meta()
        return before - self._depth

    def evict_oldest(self):
        """Make room: heartbeats first, then other events oldest first, never SOS.

        Returns the evicted seq runs as [(first_seq, last_seq), ...] (runs are
        split by the frames that stay); [] if nothing can go.
        """
        for entry in self._segments:
            runs = self._evict_from(entry, True)
            if runs:
                return runs
        for entry in self._segments:
            runs = self._evict_from(entry, False)
            if runs:
                return runs
        return []

    def _evict_from(self, entry, heartbeats_only):
        """Drop the live unprotected frames of ``entry`` (only heartbeats if asked); the runs."""
        keep = []
        runs = []
        evicted = 0
        run_first = run_last = 0
        for frame in self._records(entry[_NO]):
            seq = _seq_of(frame)
            if seq <= self.acked_seq:
                continue
            if _protected(frame) or (heartbeats_only and frame[1] != HEARTBEAT):
                keep.append(frame)
                if run_first:
                    runs.append((run_first, run_last))
                    run_first = 0
                continue
            if not run_first:
                run_first = seq
            run_last = seq
            evicted += 1
        if run_first:
            runs.append((run_first, run_last))
        if not runs or (heartbeats_only and evicted < _MIN_FREED_PER_RECORD * len(runs)):
            return []
        before = entry[_LIVE]
        self._rewrite(entry, keep)
        self._depth -= before - len(keep)
        self._write_meta()  # last_seq survives even if the newest segment went
        return runs
