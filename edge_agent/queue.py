"""The durable SQLite queue between ingest and forwarder.

Durability, stated (DESIGN "Delivery guarantees"): the edge sends an MQTT PUBACK
and an application ack -- after which the wearable frees its flash -- only once a
message is committed here. So a commit must survive a power cut, not just a
process crash:

- ``journal_mode=WAL``: readers (the forwarder) never block the writer (the
  committer), and a commit appends to one file instead of rewriting pages.
- ``synchronous=FULL`` (default): the WAL is fsynced on every COMMIT. With
  ``NORMAL`` a WAL commit is durable against a crash of the agent but the last
  transactions can roll back after a power loss -- events the wearables were
  already told to forget. Group commit (many messages per transaction, see
  :meth:`EdgeQueue.append_many`) pays for the fsync once per group, which is what
  keeps FULL fast. ``NORMAL`` stays configurable for benchmarks and for Pis on a
  UPS, never as the default.

``gw_seq`` is ``INTEGER PRIMARY KEY AUTOINCREMENT``: SQLite then never reuses a
value, even after the newest items were deleted, so ``(gateway_id, gw_seq)``
names one item for the gateway's lifetime.

Device frames carry ``UNIQUE (device_id, seq)``; in addition the per-device
``committed`` ranges (:mod:`edge_agent.contiguity`) remember sequences that were
already forwarded and deleted, so a late redelivery is still counted as a
duplicate rather than stored and sent again.

Priorities (``items.priority``, lower goes first and is dropped last):

- 0 ``PRIORITY_URGENT``: SOS frames, and the queue's own eviction and corruption
  records (without them the cloud could not tell eviction from loss). Never evicted.
- 1 ``PRIORITY_SCAN``: NFC scans and BLE checkpoint visits -- the proof of a round.
- 2 ``PRIORITY_EVENT``: every other device event (boot, eviction, command result)
  and gateway observations such as tag away/back.
- 3 ``PRIORITY_BULK``: heartbeats, BLE adverts and periodic health observations.

The forwarder sends lower numbers first, oldest first within a priority
(:meth:`EdgeQueue.peek_batch`); priority 0 has its own lane.

Disk budget and eviction policy (``budget_bytes``): each queued item costs
``len(payload) + ITEM_OVERHEAD_BYTES``. When a group commit would leave the queue
over budget, the same transaction evicts whole items until it fits: first every
second priority-3 item, oldest first (heartbeats and adverts are downsampled, so
an old span keeps half its heartbeats; repeated pressure thins old spans
further); then the remaining priority 3 oldest first, then 2, then 1 (scans only
when nothing else is left); priority 0 is never evicted, so SOS frames are kept
even beyond the budget. Evicted device frames
stay "committed" for their device (the wearable was acked and a redelivery is a
duplicate). Every eviction pass adds one observation ``{"kind": "evicted",
"first_gw_seq", "last_gw_seq", "count", "reason": "disk_budget"}``
(docs/protocol.md "Edge eviction record") at priority 0, and bumps the
``evicted`` counter.

Integrity: at open the file is checked with ``PRAGMA quick_check`` (O(pages),
seconds for a large queue on an SD card -- acceptable once per start). A corrupt
file is moved aside as ``<name>.corrupt-<UTC time>`` (with its -wal/-shm), a new
queue is started, the error is logged and a ``queue_corrupt`` observation at
priority 0 reports it upstream. What was in the corrupt file is not forwarded
automatically: it is kept for a technician.

One connection, guarded by a lock: the committer and the forwarder are the only
users and each call is short.
"""

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

from edge_agent.contiguity import DeviceSeqState
from edge_agent.inbound import (
    MAX_DEAD_LETTER_BYTES,
    REASON_SEQ_CONFLICT,
    GatewayObservation,
    Inbound,
    ReceivedAdvert,
    ReceivedFrame,
    Rejected,
    check_up_message,
)
from patrol_protocol.errors import ProtocolError
from patrol_protocol.frames import Kind, decode_frame

_log = logging.getLogger(__name__)

ItemType = Literal["device_frame", "advert", "observation"]
SqliteSynchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
DeadLetterSource = Literal["ingest", "cloud"]

SCHEMA_VERSION: Final = 3
"""2 added ``items.priority``; 3 added the item columns of ``dead_letters`` (``item_type``,
``company_id``, ``rssi_dbm``) so a cloud-rejected item can be put back exactly
(:meth:`EdgeQueue.retry_dead_letters`). Older files are migrated in place at open."""

PRIORITY_URGENT: Final = 0
PRIORITY_SCAN: Final = 1
PRIORITY_EVENT: Final = 2
PRIORITY_BULK: Final = 3
EVICTABLE_PRIORITIES: Final = (PRIORITY_BULK, PRIORITY_EVENT, PRIORITY_SCAN)
"""Eviction order under the disk budget; PRIORITY_URGENT is never evicted."""

ITEM_OVERHEAD_BYTES: Final = 104
"""Budget cost of one item besides its payload: row, topic, two index entries. Measured
by bench/edge_ingest.py: 144 bytes on disk per 43-byte heartbeat, 101 bytes of overhead."""

EVICTION_SCAN_ROWS: Final = 1_000
"""Victims fetched per query while evicting (bounds memory of one eviction pass)."""

REASON_DISK_BUDGET: Final = "disk_budget"
_EVICTION_RECORD_BYTES: Final = 120
"""Upper bound of one eviction record's JSON (five fields, two u64s)."""

_FRAME_PRIORITY: Final[dict[int, int]] = {
    Kind.SOS: PRIORITY_URGENT,
    Kind.NFC_SCAN: PRIORITY_SCAN,
    Kind.BLE_VISIT: PRIORITY_SCAN,
    Kind.HEARTBEAT: PRIORITY_BULK,
}
"""Device frame kinds not listed are PRIORITY_EVENT."""

URGENT_OBSERVATION_KINDS: Final = frozenset({"evicted", "queue_corrupt"})
"""The queue's own records of loss: never evicted, sent first."""
BULK_OBSERVATION_KINDS: Final = frozenset(
    {"ble_tag_seen", "ble_tag_health", "gateway_health", "gateway_heartbeat"}
)
"""Periodic observations: the next one says the same, so they go like heartbeats."""
BUSY_TIMEOUT_MS: Final = 5_000
"""Another process (the CLI's ``queue stats``) may briefly hold the write lock."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS items (
    gw_seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    type           TEXT    NOT NULL CHECK (type IN ('device_frame', 'advert', 'observation')),
    payload        BLOB    NOT NULL,   -- exact bytes received (frame, advert payload) or JSON
    received_at_ms INTEGER NOT NULL,   -- gateway clock, UTC, ms since 1970
    topic          TEXT,               -- device_frame: the MQTT topic it arrived on
    device_id      INTEGER,            -- device_frame only
    seq            INTEGER,            -- device_frame only
    company_id     INTEGER,            -- advert only
    rssi_dbm       INTEGER,            -- advert only
    priority       INTEGER NOT NULL DEFAULT 2,  -- 0 urgent .. 3 bulk (module docstring)
    UNIQUE (device_id, seq)            -- NULLs are distinct: adverts/observations never clash
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    source         TEXT    NOT NULL CHECK (source IN ('ingest', 'cloud')),
    reason         TEXT    NOT NULL,   -- stable reason string
    detail         TEXT    NOT NULL,
    raw            BLOB    NOT NULL,   -- at most MAX_DEAD_LETTER_BYTES of what arrived
    raw_len        INTEGER NOT NULL,   -- length of what arrived
    topic          TEXT,
    received_at_ms INTEGER NOT NULL,
    item_type      TEXT,               -- source 'cloud': the queued item's type, for a retry
    company_id     INTEGER,            -- source 'cloud', advert: its company id
    rssi_dbm       INTEGER             -- source 'cloud', advert: its RSSI
);
CREATE TABLE IF NOT EXISTS devices (
    device_id      INTEGER PRIMARY KEY,
    first_seq      INTEGER NOT NULL,   -- first seq this edge saw; baseline = first_seq - 1
    duplicates     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seq_ranges (
    device_id      INTEGER NOT NULL,
    covered        INTEGER NOT NULL CHECK (covered IN (0, 1)),  -- 0 committed, 1 committed+evicted
    first_seq      INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL,
    PRIMARY KEY (device_id, covered, first_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    name           TEXT PRIMARY KEY,
    value          INTEGER NOT NULL
) WITHOUT ROWID;
"""

_INDEXES: Final = """
CREATE INDEX IF NOT EXISTS items_by_priority ON items (priority, gw_seq);
"""
_MIGRATE_1_TO_2: Final = """
ALTER TABLE items ADD COLUMN priority INTEGER NOT NULL DEFAULT 2;
UPDATE items SET priority = CASE
    WHEN type = 'device_frame' AND substr(payload, 2, 1) = x'04' THEN 0
    WHEN type = 'device_frame' AND substr(payload, 2, 1) IN (x'01', x'02') THEN 1
    WHEN type = 'advert' OR (type = 'device_frame' AND substr(payload, 2, 1) = x'03') THEN 3
    ELSE 2 END;
"""
_MIGRATE_2_TO_3: Final = """
ALTER TABLE dead_letters ADD COLUMN item_type TEXT;
ALTER TABLE dead_letters ADD COLUMN company_id INTEGER;
ALTER TABLE dead_letters ADD COLUMN rssi_dbm INTEGER;
"""
_SELECT: Final = (
    "SELECT gw_seq, type, payload, received_at_ms, topic, device_id, seq, company_id, "
    "rssi_dbm, priority FROM items "
)
_SELECT_ALL: Final = _SELECT + "ORDER BY priority, gw_seq LIMIT ?"
_SELECT_URGENT: Final = _SELECT + "WHERE priority = 0 ORDER BY gw_seq LIMIT ?"
_SELECT_BACKLOG: Final = _SELECT + "WHERE priority > 0 ORDER BY priority, gw_seq LIMIT ?"
Lane = Literal["all", "urgent", "backlog"]
_LANE_SQL: Final[dict[str, str]] = {
    "all": _SELECT_ALL,
    "urgent": _SELECT_URGENT,
    "backlog": _SELECT_BACKLOG,
}
_SQL_PARAMS_PER_QUERY: Final = 500
"""Bound of one IN (...) list (SQLite's variable limit is far above)."""
_SELECT_ONE: Final = _SELECT + "WHERE gw_seq = ?"
_SELECT_DEAD: Final = (
    "SELECT id, source, reason, detail, raw, raw_len, topic, received_at_ms, item_type, "
    "company_id, rssi_dbm FROM dead_letters "
)
_META_PREFIX: Final = "meta:"
"""Counters rows named ``meta:<name>`` hold set values, not sums (:meth:`EdgeQueue.set_meta`)."""
_SELECT_DEVICE: Final = _SELECT + "WHERE device_id = ? ORDER BY seq"
_INSERT_ITEM: Final = (
    "INSERT INTO items (type, payload, received_at_ms, topic, device_id, seq, "
    "company_id, rssi_dbm, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class QueueError(Exception):
    """The queue file cannot be used (wrong journal mode, newer schema)."""


@dataclass(frozen=True, slots=True)
class QueuedItem:
    """One item waiting to be forwarded, as stored."""

    gw_seq: int
    type: ItemType
    payload: bytes
    received_at_ms: int
    topic: str | None
    device_id: int | None
    seq: int | None
    company_id: int | None
    rssi_dbm: int | None
    priority: int = PRIORITY_EVENT


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One input that could not be queued (ingest) or that the cloud rejected (cloud)."""

    id: int
    source: DeadLetterSource
    reason: str
    detail: str
    raw: bytes
    raw_len: int
    topic: str | None
    received_at_ms: int
    item_type: ItemType | None = None
    """Set for items the cloud rejected or refused (what a retry puts back)."""
    company_id: int | None = None
    rssi_dbm: int | None = None


@dataclass(frozen=True, slots=True)
class RetryResult:
    """What :meth:`EdgeQueue.retry_dead_letters` did with each dead letter asked for."""

    requeued: list[int]
    """Dead-letter ids whose item is back in the queue (the dead letter is gone)."""
    still_bad: dict[int, str]
    """Ingest dead letters that fail their check again: id -> reason."""
    not_retryable: dict[int, str]
    """id -> why it cannot be put back (unknown id, truncated raw, no topic)."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one group commit did; ``acked_seqs`` covers every device seen in the group."""

    stored: int
    duplicates: int
    dead_lettered: int
    acked_seqs: dict[int, int]
    urgent: int = 0
    """Items stored at PRIORITY_URGENT (an SOS): the forwarder's fast lane should run."""
    evicted: int = 0
    """Items evicted by this commit to keep the queue within its disk budget."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counters for health reporting and tests."""

    depth: int
    dead_letters: int
    duplicates: int
    evicted: int = 0


class EdgeQueue:
    """Durable queue of device frames, adverts and observations, with dead letters."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: SqliteSynchronous = "FULL",
        budget_bytes: int | None = None,
        clock_ms: Callable[[], int] | None = None,
        read_only: bool = False,
    ) -> None:
        """Open (or create) the queue file, check its integrity, load per-device state.

        ``budget_bytes`` bounds the queued items (module docstring); None: unbounded.
        A corrupt file is moved aside and a new queue started (``self.corruption``).

        ``read_only`` (the CLI's ``status`` and ``queue stats`` beside a running
        agent): the file must exist at the current schema; it is opened with
        ``mode=ro``, never checked, migrated or moved aside, and writes fail.
        """
        self.path = path
        self.synchronous = synchronous
        self.budget_bytes = budget_bytes
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self.corruption: str | None = None
        """Why the file found at open was moved aside (None: it was sound)."""
        self.moved_to: Path | None = None
        if read_only:
            self._db = self._open_read_only()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as exc:
                self._move_aside(repr(exc))
                self._db = self._open()
        self._devices = self._load_devices()
        row = self._db.execute("SELECT total(length(payload)), count(*) FROM items").fetchone()
        self._used_bytes = int(row[0]) + int(row[1]) * ITEM_OVERHEAD_BYTES
        self._depth = dict.fromkeys(range(PRIORITY_URGENT, PRIORITY_BULK + 1), 0)
        """Items per priority, kept in step with every commit: a health look or a scrape
        must not count(*) a backlog of millions on an SD card."""
        for priority, count in self._db.execute(
            "SELECT priority, count(*) FROM items GROUP BY priority"
        ):
            self._depth[int(priority)] = int(count)
        if self.corruption is not None:
            self.append_many(
                [
                    observation(
                        {
                            "kind": "queue_corrupt",
                            "moved_to": self.moved_to.name if self.moved_to else "",
                            "detail": self.corruption[:500],
                        },
                        self._clock_ms(),
                    )
                ]
            )

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            check = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise sqlite3.DatabaseError("quick_check: " + "; ".join(check[:5]))
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise QueueError(f"{self.path}: journal_mode is {mode!r}, WAL required")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise QueueError(f"{self.path}: schema {version} is newer than {SCHEMA_VERSION}")
            if version == 1:
                db.executescript("BEGIN;" + _MIGRATE_1_TO_2 + "COMMIT;")
            dead_columns = {str(r[1]) for r in db.execute("PRAGMA table_info(dead_letters)")}
            if dead_columns and "item_type" not in dead_columns:  # a version 1 or 2 file
                db.executescript("BEGIN;" + _MIGRATE_2_TO_3 + "COMMIT;")
            db.executescript(_SCHEMA + _INDEXES)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise QueueError(f"{self.path}: no queue file (has the agent ever run?)")
        db = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            db.close()
            raise QueueError(f"{self.path}: cannot be read: {exc}") from exc
        if version != SCHEMA_VERSION:
            db.close()
            raise QueueError(
                f"{self.path}: schema {version}, this agent reads {SCHEMA_VERSION} "
                "(start the agent once to migrate it)"
            )
        return db

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(Path(f"{target}{suffix}"))
        self.corruption = reason
        self.moved_to = target
        _log.error(
            "QUEUE FILE CORRUPT: %s (%s); moved aside to %s, starting an empty queue. "
            "Events in the old file are NOT forwarded: keep it for a technician.",
            self.path,
            reason,
            target,
        )

    # --- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (a checkpoint folds the WAL back into the file)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> "EdgeQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load_devices(self) -> dict[int, DeviceSeqState]:
        devices = {
            int(device_id): DeviceSeqState(first_seq=int(first_seq), duplicates=int(dups))
            for device_id, first_seq, dups in self._db.execute(
                "SELECT device_id, first_seq, duplicates FROM devices"
            )
        }
        for device_id, covered, first, last in self._db.execute(
            "SELECT device_id, covered, first_seq, last_seq FROM seq_ranges "
            "ORDER BY device_id, covered, first_seq"
        ):
            state = devices[int(device_id)]
            ranges = state.covered if covered else state.committed
            ranges.ranges.append((int(first), int(last)))
        return devices

    # --- ingest side -------------------------------------------------------------

    def append_many(self, entries: Sequence[Inbound]) -> AppendResult:
        """Commit a group of inbound entries in ONE transaction (group commit).

        Device frames already committed are counted as duplicates and not stored
        (a duplicate whose bytes differ from the queued frame is dead-lettered as
        ``seq_conflict``); rejected entries go to the dead-letter table. When this
        returns, everything in ``entries`` is on disk and may be acknowledged.
        """
        with self._lock:
            touched: dict[int, DeviceSeqState] = {}
            group_raw: dict[tuple[int, int], bytes] = {}
            item_rows: list[tuple[object, ...]] = []
            dead_rows: list[tuple[object, ...]] = []
            duplicates = 0
            for entry in entries:
                if isinstance(entry, ReceivedFrame):
                    state = touched.get(entry.device_id)
                    if state is None:
                        known = self._devices.get(entry.device_id)
                        state = known.copy() if known else DeviceSeqState(first_seq=entry.seq)
                        touched[entry.device_id] = state
                    key = (entry.device_id, entry.seq)
                    if state.is_duplicate(entry.seq):
                        stored = group_raw.get(key)
                        if stored is None:
                            stored = self._stored_frame(*key)
                        if stored is not None and stored != entry.raw:
                            dead_rows.append(
                                _dead_row(
                                    "ingest",
                                    Rejected(
                                        REASON_SEQ_CONFLICT,
                                        entry.raw,
                                        entry.topic,
                                        entry.received_at_ms,
                                        f"{entry.device_id:08x}:{entry.seq} differs from queued",
                                    ),
                                )
                            )
                        else:
                            state.duplicates += 1
                            duplicates += 1
                        continue
                    state.commit_frame(entry.seq, entry.evicted)
                    group_raw[key] = entry.raw
                    item_rows.append(
                        (
                            "device_frame",
                            entry.raw,
                            entry.received_at_ms,
                            entry.topic,
                            entry.device_id,
                            entry.seq,
                            None,
                            None,
                            _FRAME_PRIORITY.get(entry.kind, PRIORITY_EVENT),
                        )
                    )
                elif isinstance(entry, ReceivedAdvert):
                    item_rows.append(
                        (
                            "advert",
                            entry.payload,
                            entry.received_at_ms,
                            None,
                            None,
                            None,
                            entry.company_id,
                            entry.rssi_dbm,
                            PRIORITY_BULK,
                        )
                    )
                elif isinstance(entry, GatewayObservation):
                    item_rows.append(
                        (
                            "observation",
                            entry.body_json,
                            entry.received_at_ms,
                            None,
                            None,
                            None,
                            None,
                            None,
                            _observation_priority(entry.body_json),
                        )
                    )
                else:
                    dead_rows.append(_dead_row("ingest", entry))

            added_bytes = sum(len(cast(bytes, row[1])) for row in item_rows)
            added_bytes += len(item_rows) * ITEM_OVERHEAD_BYTES
            urgent = sum(1 for row in item_rows if row[8] == PRIORITY_URGENT)
            evicted = 0
            freed_bytes = 0
            evicted_by_priority: dict[int, int] = {}
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_INSERT_ITEM, item_rows)
                self._insert_dead(dead_rows)
                for device_id, state in touched.items():
                    self._save_device(device_id, state)
                self._bump("duplicates", duplicates)
                used = self._used_bytes + added_bytes
                if self.budget_bytes is not None and used > self.budget_bytes:
                    evicted, freed_bytes, evicted_by_priority = self._evict(
                        used - self.budget_bytes
                    )
                    urgent += 1 if evicted else 0
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._used_bytes += added_bytes - freed_bytes
            for row in item_rows:
                self._depth[cast(int, row[8])] += 1
            for priority, count in evicted_by_priority.items():
                self._depth[priority] -= count
            if evicted:
                self._depth[PRIORITY_URGENT] += 1  # the eviction record
            self._devices.update(touched)
            return AppendResult(
                stored=len(item_rows),
                duplicates=duplicates,
                dead_lettered=len(dead_rows),
                acked_seqs={device_id: s.acked_seq for device_id, s in touched.items()},
                urgent=urgent,
                evicted=evicted,
            )

    def _evict(self, excess_bytes: int) -> tuple[int, int, dict[int, int]]:
        """Delete the cheapest items until ``excess_bytes`` (plus the record) are freed.

        Runs inside the caller's transaction; returns (items evicted, net bytes freed,
        the eviction record's own cost already subtracted, items evicted per priority).
        """
        record_cost = _EVICTION_RECORD_BYTES + ITEM_OVERHEAD_BYTES
        need = excess_bytes + record_cost
        victims: list[int] = []
        chosen: set[int] = set()
        by_priority: dict[int, int] = {}
        freed = 0
        # Pass 1, downsampling: every second bulk item (heartbeat, advert), oldest first,
        # so the oldest span keeps half its heartbeats instead of losing all of them.
        # Pass 2 onwards: whole classes, oldest first (bulk, then events, then scans).
        passes = [(PRIORITY_BULK, 2)] + [(priority, 1) for priority in EVICTABLE_PRIORITIES]
        for priority, every in passes:
            after = -1
            rank = 0
            while freed < need:
                rows = self._db.execute(
                    "SELECT gw_seq, length(payload) FROM items WHERE priority = ? "
                    "AND gw_seq > ? ORDER BY gw_seq LIMIT ?",
                    (priority, after, EVICTION_SCAN_ROWS),
                ).fetchall()
                if not rows:
                    break
                after = int(rows[-1][0])
                for gw_seq, length in rows:
                    rank += 1
                    if rank % every or gw_seq in chosen:
                        continue
                    victims.append(int(gw_seq))
                    chosen.add(int(gw_seq))
                    by_priority[priority] = by_priority.get(priority, 0) + 1
                    freed += int(length) + ITEM_OVERHEAD_BYTES
                    if freed >= need:
                        break
            if freed >= need:
                break
        if not victims:
            _log.warning("queue over its budget with only urgent items left: keeping them all")
            return 0, 0, {}
        self._db.executemany("DELETE FROM items WHERE gw_seq = ?", [(v,) for v in victims])
        self._bump("evicted", len(victims))
        record = observation(
            {
                "kind": "evicted",
                "first_gw_seq": min(victims),
                "last_gw_seq": max(victims),
                "count": len(victims),
                "reason": REASON_DISK_BUDGET,
            },
            self._clock_ms(),
        )
        self._db.execute(
            _INSERT_ITEM,
            (
                "observation",
                record.body_json,
                record.received_at_ms,
                None,
                None,
                None,
                None,
                None,
                PRIORITY_URGENT,
            ),
        )
        _log.warning(
            "queue over its disk budget: evicted %d items (gw_seq %d..%d)",
            len(victims),
            min(victims),
            max(victims),
        )
        return (
            len(victims),
            freed - len(record.body_json) - ITEM_OVERHEAD_BYTES,
            by_priority,
        )

    def _stored_frame(self, device_id: int, seq: int) -> bytes | None:
        row = self._db.execute(
            "SELECT payload FROM items WHERE device_id = ? AND seq = ?", (device_id, seq)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _save_device(self, device_id: int, state: DeviceSeqState) -> None:
        self._db.execute(
            "INSERT INTO devices (device_id, first_seq, duplicates) VALUES (?, ?, ?) "
            "ON CONFLICT (device_id) DO UPDATE SET duplicates = excluded.duplicates",
            (device_id, state.first_seq, state.duplicates),
        )
        self._db.execute("DELETE FROM seq_ranges WHERE device_id = ?", (device_id,))
        self._db.executemany(
            "INSERT INTO seq_ranges (device_id, covered, first_seq, last_seq) VALUES (?, ?, ?, ?)",
            [(device_id, 0, a, b) for a, b in state.committed.ranges]
            + [(device_id, 1, a, b) for a, b in state.covered.ranges],
        )

    def _insert_dead(self, rows: list[tuple[object, ...]]) -> None:
        self._db.executemany(
            "INSERT INTO dead_letters (source, reason, detail, raw, raw_len, topic, "
            "received_at_ms, item_type, company_id, rssi_dbm) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        self._bump("dead_lettered", len(rows))

    def _bump(self, name: str, by: int) -> None:
        if by:
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    # --- forwarder side ----------------------------------------------------------

    def peek_batch(
        self, max_items: int, *, max_payload_bytes: int | None = None, lane: Lane = "all"
    ) -> list[QueuedItem]:
        """The next items to send, without removing them: by priority, oldest first.

        ``lane``: ``urgent`` only priority 0 (the SOS fast lane), ``backlog`` the rest,
        ``all`` both. ``max_payload_bytes`` bounds the sum of payload sizes (at least
        one item is always returned, so one large item can never wedge the queue).
        """
        with self._lock:
            rows = self._db.execute(_LANE_SQL[lane], (max_items,)).fetchall()
        items: list[QueuedItem] = []
        total_bytes = 0
        for row in rows:
            total_bytes += len(row[2])
            if items and max_payload_bytes is not None and total_bytes > max_payload_bytes:
                break
            items.append(_item(row))
        return items

    def delete(
        self,
        gw_seqs: Iterable[int],
        *,
        rejected: Mapping[int, str] | None = None,
        detail: str | None = None,
    ) -> int:
        """Remove items whose cloud result is final; returns how many were removed.

        ``rejected`` maps gw_seq -> the cloud's reason: those items are copied to
        the dead-letter table (source ``cloud``) in the same transaction, so a
        technician can still see what the cloud refused and why.
        """
        seqs = sorted(set(gw_seqs) | set(rejected or {}))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if rejected:
                    dead: list[tuple[object, ...]] = []
                    for gw_seq, reason in sorted(rejected.items()):
                        row = self._db.execute(_SELECT_ONE, (gw_seq,)).fetchone()
                        if row is None:
                            continue
                        item = _item(row)
                        dead.append(
                            _dead_row(
                                "cloud",
                                Rejected(
                                    reason,
                                    item.payload,
                                    item.topic,
                                    item.received_at_ms,
                                    f"gw_seq {gw_seq} ({item.type}) "
                                    + (detail or "rejected by the cloud"),
                                ),
                                item,
                            )
                        )
                    self._insert_dead(dead)
                freed = 0
                removed: dict[int, int] = {}
                for start in range(0, len(seqs), _SQL_PARAMS_PER_QUERY):
                    chunk = seqs[start : start + _SQL_PARAMS_PER_QUERY]
                    marks = ",".join("?" * len(chunk))
                    for priority, total, count in self._db.execute(
                        f"SELECT priority, total(length(payload)), count(*) FROM items "  # noqa: S608
                        f"WHERE gw_seq IN ({marks}) GROUP BY priority",
                        chunk,
                    ):
                        freed += int(total) + int(count) * ITEM_OVERHEAD_BYTES
                        removed[int(priority)] = removed.get(int(priority), 0) + int(count)
                cursor = self._db.executemany(
                    "DELETE FROM items WHERE gw_seq = ?", [(s,) for s in seqs]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._used_bytes -= freed
            for priority, count in removed.items():
                self._depth[priority] -= count
        return cursor.rowcount

    def park(self, gw_seqs: Iterable[int], reason: str, detail: str) -> int:
        """Move items the cloud refused as a whole (HTTP 413/422) to the dead letters.

        They leave the queue so they cannot block it; the dead letter keeps the
        bytes, the topic and the cloud's words for a technician's ``retry``.
        """
        seqs = sorted(set(gw_seqs))
        with self._lock:
            rows = [self._db.execute(_SELECT_ONE, (s,)).fetchone() for s in seqs]
        items = [_item(row) for row in rows if row is not None]
        return self.delete([], rejected={i.gw_seq: reason for i in items}, detail=detail)

    def used_bytes(self) -> int:
        """Budget cost of everything queued (module docstring)."""
        with self._lock:
            return self._used_bytes

    # --- inspection --------------------------------------------------------------

    def depth(self) -> int:
        """Number of items waiting to be forwarded."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])

    def oldest_received_at_ms(self) -> int | None:
        """Receive time of the oldest waiting item (None when empty)."""
        with self._lock:
            row = self._db.execute(
                "SELECT received_at_ms FROM items ORDER BY gw_seq LIMIT 1"
            ).fetchone()
        return None if row is None else int(row[0])

    def acked_seq(self, device_id: int) -> int | None:
        """Highest contiguous committed seq of a device (None if never seen)."""
        with self._lock:
            state = self._devices.get(device_id)
            return None if state is None else state.acked_seq

    def device_duplicates(self, device_id: int) -> int:
        """Duplicates recognised for one device since the queue was created."""
        with self._lock:
            state = self._devices.get(device_id)
            return 0 if state is None else state.duplicates

    def committed_ranges(self, device_id: int) -> list[tuple[int, int]]:
        """Committed sequence ranges of a device (for status output and tests)."""
        with self._lock:
            state = self._devices.get(device_id)
            return [] if state is None else list(state.committed.ranges)

    def frames(self, device_id: int) -> list[QueuedItem]:
        """Queued frames of one device in seq order (for status output and tests)."""
        with self._lock:
            rows = self._db.execute(
                _SELECT_DEVICE,
                (device_id,),
            ).fetchall()
        return [_item(row) for row in rows]

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters first."""
        with self._lock:
            rows = self._db.execute(
                _SELECT_DEAD + "ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [_dead_letter(r) for r in rows]

    def retry_dead_letters(self, ids: Iterable[int]) -> RetryResult:
        """Put dead letters back into the queue (``patrol-edge dead-letter retry``).

        - source ``cloud`` (the cloud rejected or refused the item, e.g. ``unknown_device``
          before the wearable was provisioned): the exact item goes back as it was
          queued, in one transaction with the dead letter's removal. A device frame
          bypasses the duplicate check on purpose: its sequence is still "committed"
          for the wearable, which must not resend it.
        - source ``ingest`` (the edge's own structural check refused it): the bytes are
          checked again on their topic; if they pass now they are appended like a new
          message (duplicates recognised as usual), else they stay with the new reason.

        Dead letters whose raw bytes were cut at :data:`MAX_DEAD_LETTER_BYTES`, or
        that have no item type or topic, cannot be put back.
        """
        requeued: list[int] = []
        still_bad: dict[int, str] = {}
        not_retryable: dict[int, str] = {}
        for dead_id in sorted(set(ids)):
            with self._lock:
                row = self._db.execute(_SELECT_DEAD + "WHERE id = ?", (dead_id,)).fetchone()
            if row is None:
                not_retryable[dead_id] = "no such dead letter"
                continue
            dead = _dead_letter(row)
            if dead.raw_len != len(dead.raw):
                not_retryable[dead_id] = f"raw bytes cut at {len(dead.raw)} of {dead.raw_len}"
            elif dead.source == "cloud" and dead.item_type is not None:
                self._requeue_cloud(dead)
                requeued.append(dead_id)
            elif dead.source == "ingest" and dead.topic is not None:
                checked = check_up_message(dead.topic, dead.raw, dead.received_at_ms)
                if isinstance(checked, Rejected):
                    still_bad[dead_id] = checked.reason
                    continue
                self.append_many([checked])
                with self._lock:
                    self._db.execute("DELETE FROM dead_letters WHERE id = ?", (dead_id,))
                requeued.append(dead_id)
            else:
                not_retryable[dead_id] = "no item type or topic recorded"
        return RetryResult(requeued, still_bad, not_retryable)

    def _requeue_cloud(self, dead: DeadLetter) -> None:
        if dead.item_type == "device_frame":
            try:
                header = decode_frame(dead.raw).header
                device_id: int | None = header.device_id
                seq: int | None = header.seq
                priority = _FRAME_PRIORITY.get(header.kind, PRIORITY_EVENT)
            except ProtocolError:  # relayed with a bad body: keep the header's ids if any
                device_id = seq = None
                priority = PRIORITY_EVENT
        elif dead.item_type == "advert":
            device_id = seq = None
            priority = PRIORITY_BULK
        else:
            device_id = seq = None
            priority = _observation_priority(dead.raw)
        row = (
            dead.item_type,
            dead.raw,
            dead.received_at_ms,
            dead.topic,
            device_id,
            seq,
            dead.company_id,
            dead.rssi_dbm,
            priority,
        )
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(_INSERT_ITEM, row)
                self._db.execute("DELETE FROM dead_letters WHERE id = ?", (dead.id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._used_bytes += len(dead.raw) + ITEM_OVERHEAD_BYTES
            self._depth[priority] += 1

    def depth_by_priority(self) -> dict[int, int]:
        """Queued items per priority (0 urgent .. 3 bulk; every priority present), from the
        counts kept in memory beside each commit: O(1), whatever the backlog.

        A read-only instance counted at open and does not follow another process's writes.
        """
        with self._lock:
            return dict(self._depth)

    def oldest_by_priority(self) -> dict[int, int]:
        """Receive time (ms) of the oldest waiting item per priority (absent when empty):
        the first by gw_seq of each priority, one index seek each."""
        oldest: dict[int, int] = {}
        with self._lock:
            for priority in range(PRIORITY_URGENT, PRIORITY_BULK + 1):
                row = self._db.execute(
                    "SELECT received_at_ms FROM items WHERE priority = ? ORDER BY gw_seq LIMIT 1",
                    (priority,),
                ).fetchone()
                if row is not None:
                    oldest[priority] = int(row[0])
        return oldest

    def counters(self) -> dict[str, int]:
        """The persistent counters (``duplicates``, ``dead_lettered``, ``evicted``, ...)."""
        with self._lock:
            rows = self._db.execute("SELECT name, value FROM counters").fetchall()
        return {
            str(name): int(value) for name, value in rows if not str(name).startswith(_META_PREFIX)
        }

    def dead_letter_count(self) -> int:
        """Dead letters currently held (the counter ``dead_letters`` counts all ever made)."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def last_gw_seq(self) -> int:
        """The highest gw_seq ever handed out (0 for a new queue); never goes down."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'items'"
            ).fetchone()
        return 0 if row is None else int(row[0])

    def meta(self, name: str) -> int | None:
        """A persisted gateway value (e.g. the clock watermark of edge_agent.clock)."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM counters WHERE name = ?", (_META_PREFIX + name,)
            ).fetchone()
        return None if row is None else int(row[0])

    def set_meta(self, values: Mapping[str, int]) -> None:
        """Persist gateway values in one transaction (durable like a commit)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO counters (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    [(_META_PREFIX + k, v) for k, v in values.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def stats(self) -> QueueStats:
        """Depth, dead letters and duplicates in one consistent read."""
        with self._lock:
            depth = int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return QueueStats(
            depth=depth,
            dead_letters=int(counters.get("dead_lettered", 0)),
            duplicates=int(counters.get("duplicates", 0)),
            evicted=int(counters.get("evicted", 0)),
        )


def _observation_priority(body_json: bytes) -> int:
    try:
        kind = json.loads(body_json).get("kind")
    except (ValueError, AttributeError):
        return PRIORITY_EVENT
    if kind in URGENT_OBSERVATION_KINDS:
        return PRIORITY_URGENT
    if kind in BULK_OBSERVATION_KINDS:
        return PRIORITY_BULK
    return PRIORITY_EVENT


def _item(row: Sequence[object]) -> QueuedItem:
    (
        gw_seq,
        type_,
        payload,
        received_at_ms,
        topic,
        device_id,
        seq,
        company_id,
        rssi_dbm,
        priority,
    ) = row
    return QueuedItem(
        gw_seq=cast(int, gw_seq),
        type=cast(ItemType, type_),
        payload=bytes(cast(bytes, payload)),
        received_at_ms=cast(int, received_at_ms),
        topic=cast("str | None", topic),
        device_id=cast("int | None", device_id),
        seq=cast("int | None", seq),
        company_id=cast("int | None", company_id),
        rssi_dbm=cast("int | None", rssi_dbm),
        priority=cast(int, priority),
    )


def _dead_letter(r: Sequence[object]) -> DeadLetter:
    return DeadLetter(
        id=cast(int, r[0]),
        source=cast(DeadLetterSource, r[1]),
        reason=str(r[2]),
        detail=str(r[3]),
        raw=bytes(cast(bytes, r[4])),
        raw_len=cast(int, r[5]),
        topic=cast("str | None", r[6]),
        received_at_ms=cast(int, r[7]),
        item_type=cast("ItemType | None", r[8]),
        company_id=cast("int | None", r[9]),
        rssi_dbm=cast("int | None", r[10]),
    )


def _dead_row(
    source: DeadLetterSource, rejected: Rejected, item: QueuedItem | None = None
) -> tuple[object, ...]:
    return (
        source,
        rejected.reason,
        rejected.detail,
        rejected.raw[:MAX_DEAD_LETTER_BYTES],
        len(rejected.raw),
        rejected.topic,
        rejected.received_at_ms,
        None if item is None else item.type,
        None if item is None else item.company_id,
        None if item is None else item.rssi_dbm,
    )


def observation(body: Mapping[str, object], received_at_ms: int) -> GatewayObservation:
    """Build a gateway observation entry from a JSON-able mapping (compact, sorted keys)."""
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return GatewayObservation(body_json=raw, received_at_ms=received_at_ms)


__all__ = [
    "PRIORITY_BULK",
    "PRIORITY_EVENT",
    "PRIORITY_SCAN",
    "PRIORITY_URGENT",
    "AppendResult",
    "DeadLetter",
    "EdgeQueue",
    "ItemType",
    "Lane",
    "QueueError",
    "QueueStats",
    "QueuedItem",
    "RetryResult",
    "SqliteSynchronous",
    "observation",
]
