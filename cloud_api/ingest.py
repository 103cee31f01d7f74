"""Ingest of one gateway batch: verify every item, store it once, answer per item.

One database transaction per batch. Idempotency is enforced by unique
constraints with ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` (SQLite and
PostgreSQL both speak it), never by check-then-insert: when two API processes
race on the same frame, PostgreSQL makes the second insert wait for the first
transaction and then skip, and the loser reads the winner's row to answer
``duplicate`` or ``seq_conflict``. A bad item is answered ``rejected`` with a
stable reason, written to ``rejected_events``, and the loop goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast
from uuid import UUID

import psycopg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Table, bindparam, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cloud_api import bulk, chain, sequences
from cloud_api.alerts import hook as alerts_hook  # alerts (issue 7)
from cloud_api.crypto_store import SecretBox
from cloud_api.models import (
    AdvertObservation,
    BeaconClock,
    Checkpoint,
    Device,
    DeviceKey,
    DeviceKind,
    Event,
    Gateway,
    GatewayObservation,
    IngestLog,
    NfcTag,
    RejectedEvent,
    TagType,
    utcnow,
)
from cloud_api.provisioning import device_key_context, tag_key_context
from cloud_api.sink.outbox import OutboxBuffer
from cloud_api.verify import (
    FLAG_CLOCK_SKEW,
    FLAG_DEVICE_CLOCK_UNSYNCED,
    BeaconClockState,
    DecodedFrame,
    FrameContext,
    KeyRef,
    Rejected,
    TagRef,
    VerifiedFrame,
    VerifyPolicy,
    authenticate_frame,
    decode_frame_item,
    track_beacon_step,
    verify_advert_item,
    verify_frame_body,
)
from patrol_protocol.adverts import BeaconAdvert
from patrol_protocol.batch import (
    AdvertItem,
    BatchItem,
    DeviceFrameItem,
    IngestBatch,
    IngestResponse,
    ItemResult,
    ObservationItem,
    decode_b64_item,
)
from patrol_protocol.errors import ProtocolError
from patrol_protocol.frames import BleVisit, Eviction, NfcScan
from patrol_protocol.ids import device_id_text
from patrol_protocol.limits import MAX_BATCH_ITEMS

log = logging.getLogger(__name__)

MAX_REJECTED_BODY_BYTES = 65_536
"""A malformed request body is kept up to this size: enough to diagnose, bounded storage."""

MAX_STORED_GW_SEQ = 2**63 - 1
"""gw_seq is a u64 on the wire, but SQL BIGINT is signed: larger values are refused per item."""
_MAX_WIRE_GW_SEQ = 2**64 - 1

_ITEM_ADAPTER: TypeAdapter[Any] = TypeAdapter(BatchItem)
_OBSERVATION_KIND = re.compile(r"[a-z0-9_.-]{1,50}")
"""An observation's ``kind`` is indexed as given when it looks like a name, else "unknown"."""


class BatchRejected(Exception):
    """The request body is not a batch at all (bad JSON or envelope): answered 422."""


@dataclass(frozen=True, slots=True)
class MalformedItem:
    """An item whose shape failed validation, though its ``gw_seq`` could be read."""

    gw_seq: int
    raw: bytes
    detail: str


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    """A batch envelope and its items; malformed items are answered one by one."""

    gateway_id: str
    batch_id: UUID
    sent_at: datetime
    clock_synced: bool
    items: Sequence[BatchItem | MalformedItem]
    decoded: Sequence[DecodedFrame | None] = ()
    """Per item, the key-free decoding of a device frame (None for other items), done
    by :func:`parse_batch` outside the database transaction; empty: not done yet."""


def decode_items(items: Sequence[BatchItem | MalformedItem]) -> list[DecodedFrame | None]:
    """:func:`~cloud_api.verify.decode_frame_item` of every device frame item (None for
    other items, and for a frame whose decoding hit a bug of ours: it is decoded again
    in the transaction, where the error becomes that item's ``internal_error``)."""
    decoded: list[DecodedFrame | None] = []
    for item in items:
        if not isinstance(item, DeviceFrameItem):
            decoded.append(None)
            continue
        try:
            decoded.append(decode_frame_item(functools.partial(decode_b64_item, item)))
        except Exception:
            log.exception("decoding gw_seq %s failed; retried in the transaction", item.gw_seq)
            decoded.append(None)
    return decoded


class _Envelope(BaseModel):
    """The batch without item validation, to salvage good items next to a malformed one."""

    model_config = ConfigDict(extra="forbid")
    v: Literal[1]
    gateway_id: str
    batch_id: UUID
    sent_at: AwareDatetime
    clock_synced: bool
    items: list[dict[str, JsonValue]] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


def _errors_text(exc: PydanticValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
        for err in exc.errors(include_url=False)[:10]
    ]
    return "; ".join(parts)


def parse_batch(body: bytes) -> ParsedBatch:
    """Validate a request body; a malformed item is kept as :class:`MalformedItem`.

    Raises :class:`BatchRejected` when the JSON or the envelope itself is unusable,
    or when an invalid item has no readable integer ``gw_seq`` to answer it by.
    Device frames are decoded here too (:func:`decode_items`): the route parses
    outside the database transaction, so that work never holds SQLite's write lock.
    """
    try:
        batch = IngestBatch.model_validate_json(body)
    except PydanticValidationError as strict_error:
        try:
            envelope = _Envelope.model_validate_json(body)
        except PydanticValidationError as exc:
            raise BatchRejected(f"not an ingest batch: {_errors_text(exc)}") from exc
        items: list[BatchItem | MalformedItem] = []
        for raw_item in envelope.items:
            try:
                items.append(_ITEM_ADAPTER.validate_python(raw_item))
            except PydanticValidationError as exc:
                gw_seq = raw_item.get("gw_seq")
                if (
                    not isinstance(gw_seq, int)
                    or isinstance(gw_seq, bool)
                    or not 0 <= gw_seq <= _MAX_WIRE_GW_SEQ
                ):
                    raise BatchRejected(
                        f"an item without a usable gw_seq: {_errors_text(strict_error)}"
                    ) from exc
                raw = json.dumps(raw_item, separators=(",", ":")).encode()
                items.append(MalformedItem(gw_seq=gw_seq, raw=raw, detail=_errors_text(exc)))
        return ParsedBatch(
            gateway_id=envelope.gateway_id,
            batch_id=envelope.batch_id,
            sent_at=envelope.sent_at,
            clock_synced=envelope.clock_synced,
            items=items,
            decoded=decode_items(items),
        )
    return ParsedBatch(
        gateway_id=batch.gateway_id,
        batch_id=batch.batch_id,
        sent_at=batch.sent_at,
        clock_synced=batch.clock_synced,
        items=batch.items,
        decoded=decode_items(batch.items),
    )


def record_rejection(
    session: Session,
    *,
    gateway: Gateway | None,
    item_type: str,
    reason: str,
    detail: str,
    raw: bytes | None,
    gw_seq: int | None = None,
    key: str | None = None,
    received_at: datetime | None = None,
) -> None:
    """Write one rejected-events row (in the caller's transaction)."""
    session.add(
        RejectedEvent(
            gateway_pk=gateway.id if gateway is not None else None,
            gw_seq=gw_seq,
            item_type=item_type,
            key=key,
            raw=raw,
            reason=reason,
            detail=detail[:2000],
            received_at=received_at,
            rejected_at=utcnow(),
        )
    )
    # DEBUG per item; the batch summary (INFO) counts rejections by reason.
    log.debug(
        "rejected %s gw_seq=%s key=%s reason=%s gateway=%s",
        item_type,
        gw_seq,
        key,
        reason,
        gateway.gateway_id if gateway is not None else None,
    )


def record_malformed_body(
    session: Session, *, gateway: Gateway | None, body: bytes, detail: str
) -> None:
    """Keep an unparseable request body (bounded) with reason ``malformed``."""
    log.warning(
        "malformed batch from %s (%d bytes): %s",
        gateway.gateway_id if gateway is not None else None,
        len(body),
        detail,
    )
    kept = body[:MAX_REJECTED_BODY_BYTES]
    if len(body) > len(kept):
        detail = f"{detail} (body truncated from {len(body)} bytes)"
    record_rejection(
        session, gateway=gateway, item_type="batch", reason="malformed", detail=detail, raw=kept
    )


class DbKeyLookup:
    """:class:`~cloud_api.verify.KeyLookup` on the database, cached for one batch."""

    def __init__(self, session: Session, box: SecretBox, now: datetime | None = None) -> None:
        self._session = session
        self._box = box
        # Keys are usable until their retired_at (a rotation's overlap ends then). A
        # revoked device's or tag's rows are read anyway, so that its evidence is refused
        # as device_revoked / tag_revoked rather than as unknown.
        self._now = now if now is not None else utcnow()
        self._revoked_devices: dict[tuple[DeviceKind, int], str] = {}
        self._revoked_tags: dict[bytes, str] = {}
        self._device_keys: dict[tuple[DeviceKind, int, int], KeyRef | None] = {}
        self._tags: dict[bytes, TagRef | None] = {}
        self._counters: dict[int, int | None] = {}
        self._beacons: dict[int, int | None] = {}

    def preload_device_keys(self, kind: DeviceKind, wanted: set[tuple[int, int]]) -> None:
        """Fill the cache for many ``(device_id, key_id)`` at once: one query per batch."""
        wanted = {w for w in wanted if (kind, *w) not in self._device_keys}
        if not wanted:
            return
        rows = self._session.execute(
            select(
                Device.device_id,
                DeviceKey.key_id,
                DeviceKey.device_pk,
                DeviceKey.key_enc,
                Device.site_id,
                Device.revoked_at,
                Device.revoked_reason,
            )
            .join(Device, Device.id == DeviceKey.device_pk)
            .where(
                Device.kind == kind.value,
                Device.device_id.in_({device_id for device_id, _ in wanted}),
                self._key_usable(),
            )
        ).all()
        for device_id, key_id in wanted:
            self._device_keys[(kind, device_id, key_id)] = None
        for row in rows:
            if row.revoked_at is not None:
                self._revoked_devices[(kind, row.device_id)] = row.revoked_reason or ""
            if (row.device_id, row.key_id) in wanted:
                self._device_keys[(kind, row.device_id, row.key_id)] = KeyRef(
                    device_pk=row.device_pk,
                    key=self._box.decrypt(
                        row.key_enc, context=device_key_context(kind, row.device_id, row.key_id)
                    ),
                    site_id=row.site_id,
                )

    def accepted_counter(self, tag_pk: int, counter: int) -> None:
        """An accepted scan moved the tag's read counter (kept here until the batch ends)."""
        last = self._counters.get(tag_pk)
        self._counters[tag_pk] = counter if last is None else max(last, counter)

    def _key_usable(self) -> Any:
        """SQL: the key is not retired yet at this batch's server time (or its device is
        revoked, which :meth:`device_key` refuses with its own reason)."""
        return or_(
            DeviceKey.retired_at.is_(None),
            DeviceKey.retired_at > self._now,
            Device.revoked_at.is_not(None),
        )

    def device_key(self, kind: DeviceKind, device_id: int, key_id: int) -> KeyRef | None:
        cache_key = (kind, device_id, key_id)
        if cache_key not in self._device_keys:
            row = self._session.execute(
                select(
                    DeviceKey.device_pk,
                    DeviceKey.key_enc,
                    Device.site_id,
                    Device.revoked_at,
                    Device.revoked_reason,
                )
                .join(Device, Device.id == DeviceKey.device_pk)
                .where(
                    Device.kind == kind.value,
                    Device.device_id == device_id,
                    DeviceKey.key_id == key_id,
                    self._key_usable(),
                )
            ).one_or_none()
            if row is not None and row.revoked_at is not None:
                self._revoked_devices[(kind, device_id)] = row.revoked_reason or ""
            self._device_keys[cache_key] = (
                None
                if row is None
                else KeyRef(
                    device_pk=row.device_pk,
                    key=self._box.decrypt(
                        row.key_enc, context=device_key_context(kind, device_id, key_id)
                    ),
                    site_id=row.site_id,
                )
            )
        if (kind, device_id) in self._revoked_devices:
            raise Rejected(
                "device_revoked",
                f"{kind.value} {device_id_text(device_id)} is revoked: "
                f"{self._revoked_devices[(kind, device_id)]}",
            )
        return self._device_keys[cache_key]

    def nfc_tag(self, uid: bytes) -> TagRef | None:
        # Keys, checkpoint and counter are read once per batch; accepted scans move the
        # cached counter (accepted_counter) and the batch raises it in the store at its end.
        if uid not in self._tags:
            self._tags[uid] = self._load_tag(uid)
        tag = self._tags[uid]
        if tag is None:
            return None
        if uid in self._revoked_tags:
            raise Rejected(
                "tag_revoked", f"NFC tag {uid.hex()} is revoked: {self._revoked_tags[uid]}"
            )
        if tag.tag_pk not in self._counters:
            self._counters[tag.tag_pk] = self._session.execute(
                _TAG_COUNTER, {"tag_pk": tag.tag_pk}
            ).scalar_one()
        return dataclasses.replace(tag, last_read_counter=self._counters[tag.tag_pk])

    def preload_tags(self, uids: set[bytes]) -> None:
        """Keys, checkpoints and counters of many NFC tags in one query (once per batch)."""
        uids = {uid for uid in uids if uid not in self._tags}
        if not uids:
            return
        rows = self._session.execute(
            select(NfcTag, Checkpoint.id)
            .outerjoin(Checkpoint, Checkpoint.nfc_uid == NfcTag.uid)
            .where(NfcTag.uid.in_(uids))
        ).all()
        for uid in uids:
            self._tags[uid] = None
        for tag, checkpoint_id in rows:
            self._tags[tag.uid] = self._tag_ref(tag, checkpoint_id)
            self._counters[tag.id] = tag.last_read_counter

    def preload_beacons(self, beacon_ids: set[int]) -> None:
        """The checkpoints of many beacons in one query (once per batch)."""
        beacon_ids = {b for b in beacon_ids if b not in self._beacons}
        if not beacon_ids:
            return
        for beacon_id in beacon_ids:
            self._beacons[beacon_id] = None
        for row in self._session.execute(
            select(Checkpoint.beacon_id, Checkpoint.id).where(Checkpoint.beacon_id.in_(beacon_ids))
        ):
            if row.beacon_id is not None:
                self._beacons[row.beacon_id] = row.id

    def _load_tag(self, uid: bytes) -> TagRef | None:
        tag = self._session.execute(select(NfcTag).where(NfcTag.uid == uid)).scalar_one_or_none()
        if tag is None:
            return None
        checkpoint_id = self._session.execute(
            select(Checkpoint.id).where(Checkpoint.nfc_uid == uid)
        ).scalar_one_or_none()
        return self._tag_ref(tag, checkpoint_id)

    def _tag_ref(self, tag: NfcTag, checkpoint_id: int | None) -> TagRef:
        uid = tag.uid
        if tag.revoked_at is not None:
            self._revoked_tags[uid] = tag.revoked_reason or ""
        meta = file = None
        if tag.meta_read_key_enc is not None and tag.file_read_key_enc is not None:
            meta = self._box.decrypt(tag.meta_read_key_enc, context=tag_key_context(uid, "meta"))
            file = self._box.decrypt(tag.file_read_key_enc, context=tag_key_context(uid, "file"))
        return TagRef(
            tag_pk=tag.id,
            tag_type=TagType(tag.tag_type),
            meta_read_key=meta,
            file_read_key=file,
            last_read_counter=None,
            checkpoint_id=checkpoint_id,
        )

    def device_pks(self, kind: DeviceKind) -> set[int]:
        """The rows of every ``kind`` key looked up so far."""
        return {
            ref.device_pk
            for (k, _, _), ref in self._device_keys.items()
            if k == kind and ref is not None
        }

    def checkpoint_ids(self) -> set[int | None]:
        """The checkpoints of every tag and beacon looked up so far (for the outbox's posts)."""
        return {t.checkpoint_id for t in self._tags.values() if t is not None} | set(
            self._beacons.values()
        )

    def beacon_checkpoint(self, beacon_id: int) -> int | None:
        if beacon_id not in self._beacons:
            self._beacons[beacon_id] = self._session.execute(
                select(Checkpoint.id).where(Checkpoint.beacon_id == beacon_id)
            ).scalar_one_or_none()
        return self._beacons[beacon_id]


@functools.cache
def _insert_ignore_statement(dialect: str, table: Table) -> Any:
    """Built once per dialect and table: constructing a statement per row costs more than
    running it (SQLAlchemy coerces every value and derives a cache key each time)."""
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table)
    else:  # pragma: no cover - only the two supported stores
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    return stmt.on_conflict_do_nothing().returning(table.c.id)


def _insert_ignore(session: Session, table: Table, values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the new id, or None on any conflict."""
    stmt = _insert_ignore_statement(session.get_bind().dialect.name, table)
    result: int | None = session.execute(stmt, values).scalar_one_or_none()
    return result


# Prebuilt Core statements on the tables (not the ORM classes): compiled once, cached.
_events = cast(Table, Event.__table__)
_adverts = cast(Table, AdvertObservation.__table__)
_tags = cast(Table, NfcTag.__table__)
_gateway_observations = cast(Table, GatewayObservation.__table__)
_EXISTING_FRAME = select(_events.c.raw).where(
    _events.c.device_id == bindparam("device_id"), _events.c.seq == bindparam("seq")
)
_EXISTING_ADVERT = select(_adverts.c.payload).where(_adverts.c.key == bindparam("key"))
_TAG_COUNTER = select(_tags.c.last_read_counter).where(_tags.c.id == bindparam("tag_pk"))
_RAISE_TAG_COUNTER = (
    update(_tags)
    .where(
        _tags.c.id == bindparam("tag_pk"),
        or_(
            _tags.c.last_read_counter.is_(None),
            _tags.c.last_read_counter < bindparam("counter"),
        ),
    )
    .values(last_read_counter=bindparam("counter"))
)


_BEACON_ID_END = 7
"""A beacon advert's u32 beacon_id is bytes 3..6 (version, type, key_id before it)."""

STORED_FRAMES_CHUNK = 500
"""(device_id, seq) pairs per lookup query: 1,000 bound values, far below SQLite's limit."""


def _stored_frames(session: Session, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The raw bytes of those of ``wanted`` already stored, by (device_id, seq)."""
    pairs = sorted(wanted)
    found: dict[tuple[int, int], bytes] = {}
    for i in range(0, len(pairs), STORED_FRAMES_CHUNK):
        rows = session.execute(
            select(_events.c.device_id, _events.c.seq, _events.c.raw).where(
                tuple_(_events.c.device_id, _events.c.seq).in_(pairs[i : i + STORED_FRAMES_CHUNK])
            )
        )
        found.update(((r.device_id, r.seq), bytes(r.raw)) for r in rows)
    return found


@functools.cache
def _insert_ignore_many_statement(dialect: str) -> Any:
    """Many events in one INSERT ... ON CONFLICT DO NOTHING RETURNING (SQLAlchemy's
    insertmanyvalues); a row that conflicts returns nothing."""
    insert_: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_(_events)
        .on_conflict_do_nothing()
        .returning(_events.c.id, _events.c.device_id, _events.c.seq)
    )


_EVENT_COLUMNS = tuple(c.name for c in _events.columns if c.name != "id")
_NEXT_EVENT_ID = text("SELECT coalesce(max(id), 0) + 1 FROM events")


def _insert_frames(session: Session, rows: list[dict[str, Any]]) -> dict[tuple[int, int], int]:
    """Insert event rows, skipping conflicts; the new ids by (device_id, seq).

    One DBAPI ``executemany`` (:func:`cloud_api.bulk.insert_many`), never SQLAlchemy's
    per-row parameter machinery, which cost more than the inserts.

    PostgreSQL: ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, pipelined; a row a
    concurrent transaction stored first returns nothing.
    SQLite: the batch holds the database's one write lock from its first statement
    (``BEGIN IMMEDIATE``, :func:`cloud_api.db.make_engine`), so the ids are
    assigned here, from the highest one, and a plain ``executemany`` needs no
    RETURNING. A conflict (a SUN counter stored by an earlier batch, or a writer
    without that lock) rolls the attempt back to its savepoint and the rows go
    through SQLAlchemy's ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` instead.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        inserted: dict[tuple[int, int], int] = {}
        cursor = bulk.insert_many(
            session,
            _events,
            rows,
            columns=_EVENT_COLUMNS,
            suffix="ON CONFLICT DO NOTHING RETURNING id, device_id, seq",
        )
        with cursor:
            while True:
                for event_id, device_id, seq in cursor.fetchall():
                    inserted[(device_id, seq)] = event_id
                if not cursor.nextset():
                    break
        return inserted
    try:
        with session.begin_nested():
            first_id: int = session.execute(_NEXT_EVENT_ID).scalar_one()
            for i, row in enumerate(rows):
                row["id"] = first_id + i
            bulk.insert_many(session, _events, rows, columns=("id", *_EVENT_COLUMNS)).close()
        return {(row["device_id"], row["seq"]): row["id"] for row in rows}
    except sqlite3.IntegrityError:
        for row in rows:  # answered row by row below, ids from the database
            del row["id"]
            if type(row["body"]) is bulk.JsonText:  # SQLAlchemy serialises JSON itself
                row["body"] = json.loads(row["body"])
    result = session.execute(_insert_ignore_many_statement(connection.dialect.name), rows)
    return {(row.device_id, row.seq): row.id for row in result}


_clocks = cast(Table, BeaconClock.__table__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _load_clocks(
    session: Session, beacon_pks: Sequence[int], *, lock: bool = False
) -> dict[int, BeaconClockState | None]:
    """The stored clocks of ``beacon_pks`` (None where a beacon has none yet)."""
    query = select(_clocks).where(_clocks.c.device_pk.in_(sorted(beacon_pks)))
    if lock:
        query = query.order_by(_clocks.c.device_pk).with_for_update()
    found: dict[int, BeaconClockState | None] = dict.fromkeys(beacon_pks)
    for r in session.execute(query):
        found[r.device_pk] = BeaconClockState(
            offset_ms=r.offset_ms,
            estimated_at_ms=_epoch_ms(r.estimated_at),
            highest_step=r.highest_step,
            highest_step_at_ms=_epoch_ms(r.highest_step_at),
            samples=r.samples,
            pending_offset_ms=r.pending_offset_ms,
            pending_count=r.pending_count,
        )
    return found


def _save_clocks(
    session: Session, clocks: dict[int, BeaconClockState | None], now: datetime
) -> None:
    rows = [
        {
            "device_pk": pk,
            "offset_ms": c.offset_ms,
            "estimated_at": _from_ms(c.estimated_at_ms),
            "highest_step": c.highest_step,
            "highest_step_at": _from_ms(c.highest_step_at_ms),
            "samples": c.samples,
            "pending_offset_ms": c.pending_offset_ms,
            "pending_count": c.pending_count,
            "updated_at": now,
        }
        for pk, c in sorted(clocks.items())
        if c is not None
    ]
    dialect = session.get_bind().dialect.name
    stmt: Any = postgresql.insert(_clocks) if dialect == "postgresql" else sqlite.insert(_clocks)
    excluded = stmt.excluded
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[_clocks.c.device_pk],
            set_={c: excluded[c] for c in rows[0] if c != "device_pk"},
        ),
        rows,
    )


@dataclass(frozen=True, slots=True)
class _PendingFrame:
    """A verified frame waiting for the batch's bulk insert."""

    index: int
    item: DeviceFrameItem
    verified: VerifiedFrame
    row: dict[str, Any]


@dataclass
class _Counts:
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class _BatchIngest:
    """Processes one parsed batch inside the caller's transaction."""

    def __init__(
        self,
        session: Session,
        *,
        gateway: Gateway,
        batch: ParsedBatch,
        box: SecretBox,
        policy: VerifyPolicy,
        now: datetime,
        outbox: bool = False,
    ) -> None:
        self.session = session
        self.gateway = gateway
        self.batch = batch
        self.decoded: Sequence[DecodedFrame | None] = (
            batch.decoded if len(batch.decoded) == len(batch.items) else decode_items(batch.items)
        )
        self.keys = DbKeyLookup(session, box, now)
        self.policy = policy
        self.now = now
        self.counts = _Counts()
        self.stored_frames: dict[tuple[int, int], bytes] = {}
        # What this batch accepts, sealed into the site's hash chain and the wearables'
        # sequence state at the end of the batch (cloud_api.chain, cloud_api.sequences).
        self.chained: list[tuple[int, chain.ChainRecord]] = []  # (item index, record)
        self.pending: list[_PendingFrame] = []
        self.pending_tag_reads: set[tuple[int | None, int | None]] = set()
        self.tag_counters: dict[int, int] = {}
        self.outbox_rows: list[tuple[int, Callable[[dict[str, Any]], None], dict[str, Any]]] = []
        self._index = 0
        self.device_seqs: dict[int, sequences.DeviceBatch] = {}
        # Beacon clocks (by beacon device pk) as this batch's adverts move them, and the
        # accepted observations to fold into the stored clocks at the end (_store_clocks).
        self.beacon_clocks: dict[int, BeaconClockState | None] = {}
        self.beacon_seen: list[tuple[int, int, int, int]] = []  # (index, pk, step, ref ms)
        self.results: list[ItemResult] = []
        # InfluxDB points of what this batch accepts, one outbox row in this transaction.
        self.outbox = (
            OutboxBuffer(session, site_id=gateway.site_id, gateway_id=gateway.gateway_id)
            if outbox
            else None
        )

    def run(self) -> IngestResponse:
        self._prefetch()
        results = self.results
        for index, item in enumerate(self.batch.items):
            self._index = index
            results.append(self._one(item))
        self._insert_pending(results)
        for result in results:
            if result.status == "accepted":
                self.counts.accepted += 1
            elif result.status == "duplicate":
                self.counts.duplicate += 1
            else:
                self.counts.rejected += 1
                reason = result.reason or "?"
                self.counts.reasons[reason] = self.counts.reasons.get(reason, 0) + 1
        if self.outbox is not None:
            for _index, add, row in sorted(self.outbox_rows, key=lambda entry: entry[0]):
                add(row)  # in item order, frames included (inserted in bulk above)
            self.outbox.flush(self.now)
        self._seal()
        self.session.add(
            IngestLog(
                batch_id=str(self.batch.batch_id),
                gateway_pk=self.gateway.id,
                items=len(results),
                accepted=self.counts.accepted,
                duplicates=self.counts.duplicate,
                rejected=self.counts.rejected,
                clock_synced=self.batch.clock_synced,
                sent_at=self.batch.sent_at,
                received_at=self.now,
            )
        )
        log.info(
            "batch %s from %s: %d accepted, %d duplicate, %d rejected %s",
            self.batch.batch_id,
            self.gateway.gateway_id,
            self.counts.accepted,
            self.counts.duplicate,
            self.counts.rejected,
            self.counts.reasons or "",
        )
        return IngestResponse(batch_id=self.batch.batch_id, results=results)

    def _one(self, item: BatchItem | MalformedItem) -> ItemResult:
        try:
            if isinstance(item, MalformedItem):
                raise Rejected("malformed", item.detail)
            if item.gw_seq > MAX_STORED_GW_SEQ:
                raise Rejected("malformed", f"gw_seq {item.gw_seq} exceeds {MAX_STORED_GW_SEQ}")
            if isinstance(item, DeviceFrameItem):
                return self._device_frame(item)
            if isinstance(item, AdvertItem):
                return self._advert(item)
            return self._observation(item)
        except Rejected as rej:
            self._reject(item, rej)
            return ItemResult(gw_seq=item.gw_seq, status="rejected", key=rej.key, reason=rej.reason)
        except DBAPIError:
            raise  # the database failed: nothing is final, the gateway retries the batch
        except Exception as exc:
            return self._internal_error(item, exc)

    def _internal_error(self, item: BatchItem | MalformedItem, exc: Exception) -> ItemResult:
        # A bug of ours on one item must not block the gateway's queue behind it
        # forever. The item is refused loudly, its exact bytes kept in
        # rejected_events for reprocessing once the bug is fixed.
        log.exception("internal error on gw_seq %s of batch %s", item.gw_seq, self.batch.batch_id)
        internal = Rejected(
            "internal_error",
            f"internal error ({type(exc).__name__}: {exc}); raw bytes kept for reprocessing",
        )
        self._reject(item, internal)
        return ItemResult(gw_seq=item.gw_seq, status="rejected", reason=internal.reason)

    def _reject(self, item: BatchItem | MalformedItem, rej: Rejected) -> None:
        raw: bytes | None
        if isinstance(item, MalformedItem):
            raw, item_type, received_at = item.raw, "malformed_item", None
        elif isinstance(item, DeviceFrameItem | AdvertItem):
            try:
                raw = decode_b64_item(item)
            except ProtocolError:
                text = item.frame_b64 if isinstance(item, DeviceFrameItem) else item.payload_b64
                raw = text.encode("utf-8", "replace")[:MAX_REJECTED_BODY_BYTES]
            item_type, received_at = item.type, item.received_at
        else:
            raw = json.dumps(item.observation, separators=(",", ":")).encode()
            item_type, received_at = item.type, item.received_at
        record_rejection(
            self.session,
            gateway=self.gateway,
            item_type=item_type,
            reason=rej.reason,
            detail=rej.detail,
            raw=raw,
            gw_seq=item.gw_seq if item.gw_seq <= MAX_STORED_GW_SEQ else None,
            key=rej.key,
            received_at=received_at,
        )

    def _decode(self, item: DeviceFrameItem | AdvertItem) -> bytes:
        try:
            return decode_b64_item(item)
        except ProtocolError as exc:
            raise Rejected.from_protocol(exc) from exc

    def _existing_frame(self, device_id: int, seq: int) -> bytes | None:
        raw: bytes | None = self.session.execute(
            _EXISTING_FRAME, {"device_id": device_id, "seq": seq}
        ).scalar_one_or_none()
        return raw

    def _same_or_conflict(self, stored: bytes, raw: bytes, key: str, gw_seq: int) -> ItemResult:
        if stored == raw:
            return ItemResult(gw_seq=gw_seq, status="duplicate", key=key)
        raise Rejected("seq_conflict", f"{key} is already stored with different bytes", key=key)

    def _device_frame(self, item: DeviceFrameItem) -> ItemResult:
        decoded = self.decoded[self._index]
        if decoded is None:  # decode_items met an unexpected error: meet it here, per item
            decoded = decode_frame_item(functools.partial(decode_b64_item, item))
        if decoded.error is not None:
            raise Rejected.from_protocol(decoded.error)
        assert decoded.raw is not None
        raw = decoded.raw
        auth = authenticate_frame(raw, keys=self.keys, decoded=decoded)
        header = auth.frame.header
        key = auth.frame.idempotency_key
        stored = self.stored_frames.get((header.device_id, header.seq))
        if stored is not None:
            return self._same_or_conflict(stored, raw, key, item.gw_seq)
        ctx = FrameContext(
            topic=item.topic,
            received_at=item.received_at,
            gateway_clock_synced=self.batch.clock_synced,
            server_now=self.now,
            gateway_site_id=self.gateway.site_id,
        )
        verified = verify_frame_body(
            auth, keys=self.keys, ctx=ctx, policy=self.policy, decoded=decoded
        )
        if (
            verified.beacon_pk is not None
            and verified.beacon_step is not None
            and FLAG_DEVICE_CLOCK_UNSYNCED not in verified.flags
            and FLAG_CLOCK_SKEW not in verified.flags
        ):  # the wearable's signed, synced time is when it heard the advert
            flags = self._beacon_step(
                verified.beacon_pk, verified.beacon_step, verified.device_time, key
            )
            if flags:
                verified = dataclasses.replace(verified, flags=(*verified.flags, *flags))
        tag_read = (verified.nfc_tag_id, verified.sun_read_counter)
        if tag_read in self.pending_tag_reads:  # the same SUN twice in this batch
            raise self._replayed(verified, key)
        if verified.nfc_tag_id is not None and verified.sun_read_counter is not None:
            self.keys.accepted_counter(verified.nfc_tag_id, verified.sun_read_counter)
            self.pending_tag_reads.add(tag_read)
        self.stored_frames[(header.device_id, header.seq)] = raw
        # Accepted unless the bulk insert at the end of the batch meets a row that a
        # concurrent process stored meanwhile (then answered by _insert_pending).
        self.pending.append(
            _PendingFrame(self._index, item, verified, self._event_row(verified, item))
        )
        return ItemResult(gw_seq=item.gw_seq, status="accepted", key=key)

    def _replayed(self, verified: VerifiedFrame, key: str) -> Rejected:
        return Rejected(
            "replayed_counter",
            f"NTAG 424 read counter {verified.sun_read_counter} of tag "
            f"{verified.fields.get('uid')} was already accepted",
            key=key,
        )

    def _insert_pending(self, results: list[ItemResult]) -> None:
        """Insert the batch's new frames in one statement; answer the few that conflict."""
        if not self.pending:
            return
        failed: set[int] = set()
        try:
            with self.session.begin_nested():
                inserted = _insert_frames(
                    self.session,
                    [
                        p.row
                        if p.verified.fields_json is None
                        else {**p.row, "body": bulk.JsonText(p.verified.fields_json)}
                        for p in self.pending
                    ],
                )
        except (DBAPIError, psycopg.Error, sqlite3.Error):
            raise  # the database failed: nothing is final, the gateway retries the batch
        except Exception:
            # A row the driver refuses (a bug of ours): one by one, refusing only that one.
            inserted = {}
            for p in self.pending:
                header = p.verified.frame.header
                try:
                    event_id = _insert_ignore(self.session, _events, p.row)
                except DBAPIError:
                    raise
                except Exception as exc:
                    results[p.index] = self._internal_error(p.item, exc)
                    failed.add(p.index)
                    continue
                if event_id is not None:
                    inserted[(header.device_id, header.seq)] = event_id
        for p in self.pending:
            if p.index in failed:
                continue
            header = p.verified.frame.header
            event_id = inserted.get((header.device_id, header.seq))
            if event_id is None:  # a concurrent process stored this frame or this SUN first
                results[p.index] = self._conflicted(p)
                continue
            v = p.verified
            if v.nfc_tag_id is not None and v.sun_read_counter is not None:
                last = self.tag_counters.get(v.nfc_tag_id)
                self.tag_counters[v.nfc_tag_id] = max(last or 0, v.sun_read_counter)
            if self.outbox is not None:
                self.outbox_rows.append((p.index, self.outbox.add_event, p.row))
            self._chain_frame(event_id, v, p.item, p.index)
            # alerts (issue 7): an SOS / man-down becomes an alert here, same transaction.
            alerts_hook.on_event(
                self.session,
                event_id=event_id,
                row=p.row,
                site_id=self.gateway.site_id,
                now=self.now,
            )

    def _conflicted(self, p: _PendingFrame) -> ItemResult:
        key = p.verified.frame.idempotency_key
        header = p.verified.frame.header
        try:
            stored = self._existing_frame(header.device_id, header.seq)
            if stored is not None:
                return self._same_or_conflict(stored, p.verified.frame.raw, key, p.item.gw_seq)
            raise self._replayed(p.verified, key)
        except Rejected as rej:
            self._reject(p.item, rej)
            return ItemResult(
                gw_seq=p.item.gw_seq, status="rejected", key=rej.key, reason=rej.reason
            )

    def _prefetch(self) -> None:
        """One query for the frames of this batch already stored, one for their keys."""
        frames: set[tuple[int, int]] = set()
        keys: set[tuple[int, int]] = set()
        uids: set[bytes] = set()
        beacon_ids: set[int] = set()  # a guess from the advert bytes; verified later
        beacon_keys: set[tuple[int, int]] = set()
        for decoded in self.decoded:
            if decoded is None or decoded.frame is None:
                continue  # not a frame, or answered item by item
            header = decoded.frame.header
            frames.add((header.device_id, header.seq))
            keys.add((header.device_id, header.key_id))
            body = decoded.body
            if isinstance(body, NfcScan):
                uids.add(body.uid)
            elif isinstance(body, BleVisit) and len(body.adv) >= _BEACON_ID_END:
                beacon_id = int.from_bytes(body.adv[3:_BEACON_ID_END], "big")
                beacon_ids.add(beacon_id)
                beacon_keys.add((beacon_id, body.adv[2]))
        highest = sequences.highest_seqs(self.session, (device_id for device_id, _ in frames))
        self.stored_frames = _stored_frames(
            self.session, {(d, seq) for d, seq in frames if seq <= highest.get(d, 0)}
        )
        self.keys.preload_device_keys(DeviceKind.WEARABLE, keys)
        self.keys.preload_device_keys(DeviceKind.BEACON, beacon_keys)
        beacon_pks = self.keys.device_pks(DeviceKind.BEACON)
        if beacon_pks:
            self.beacon_clocks.update(_load_clocks(self.session, sorted(beacon_pks)))
        self.keys.preload_tags(uids)
        self.keys.preload_beacons(beacon_ids)
        if self.outbox is not None:
            self.outbox.preload_posts({cp for cp in self.keys.checkpoint_ids() if cp is not None})

    def _seal(self) -> None:
        """Chain head first, then tags and wearables in id order: one lock order for every
        process. A tag's read counter only rises (the UPDATE's own condition)."""
        chain.append(
            self.session,
            self.gateway.site_id,
            [r for _, r in sorted(self.chained, key=lambda entry: entry[0])],
        )
        counters = self.tag_counters
        if counters:
            self.session.execute(
                _RAISE_TAG_COUNTER,
                [{"tag_pk": pk, "counter": counters[pk]} for pk in sorted(counters)],
            )
        sequences.record_batch(self.session, self.device_seqs)
        self._store_clocks()

    def _beacon_step(self, beacon_pk: int, step: int, heard_at: datetime, key: str) -> list[str]:
        """Check a verified beacon step against the beacon's clock (see
        :func:`~cloud_api.verify.track_beacon_step`); its flags, or Rejected for a replay."""
        if beacon_pk not in self.beacon_clocks:
            self.beacon_clocks.update(_load_clocks(self.session, [beacon_pk]))
        reference_ms = _epoch_ms(heard_at)
        check = track_beacon_step(
            self.beacon_clocks.get(beacon_pk),
            step=step,
            reference_ms=reference_ms,
            policy=self.policy,
            key=key,
        )
        self.beacon_clocks[beacon_pk] = check.clock
        self.beacon_seen.append((self._index, beacon_pk, step, reference_ms))
        return list(check.flags)

    def _store_clocks(self) -> None:
        """Fold the accepted adverts into the stored beacon clocks, rows locked in pk order.

        The checks above ran on the clocks as the batch began; here they are read again
        under lock (a concurrent batch may have moved them) and the batch's accepted
        observations are replayed onto them in item order, so no update is lost.
        """
        seen = [s for s in self.beacon_seen if self.results[s[0]].status == "accepted"]
        if not seen:
            return
        pks = sorted({pk for _, pk, _, _ in seen})
        clocks = _load_clocks(self.session, pks, lock=True)
        for _index, pk, step, reference_ms in seen:
            try:
                clocks[pk] = track_beacon_step(
                    clocks.get(pk), step=step, reference_ms=reference_ms, policy=self.policy
                ).clock
            except Rejected:
                continue  # a concurrent batch made it look replayed: it is stored already
        _save_clocks(self.session, clocks, self.now)

    def _chain_frame(
        self, event_id: int, v: VerifiedFrame, item: DeviceFrameItem, index: int
    ) -> None:
        h = v.frame.header
        self.chained.append(
            (
                index,
                chain.ChainRecord(
                    chain.RecordType.DEVICE_FRAME,
                    event_id,
                    v.frame.idempotency_key,
                    self.gateway.gateway_id,
                    self.now,
                    item.received_at,
                    v.frame.raw,
                ),
            )
        )
        device = self.device_seqs.setdefault(h.device_id, sequences.DeviceBatch())
        device.seqs.append(h.seq)
        if isinstance(v.body, Eviction):
            device.evictions.append((v.body.first_seq, v.body.last_seq))

    def _event_row(self, v: VerifiedFrame, item: DeviceFrameItem) -> dict[str, Any]:
        h = v.frame.header
        return {
            "device_id": h.device_id,
            "seq": h.seq,
            "device_pk": v.device_pk,
            "kind": h.kind,
            "key_id": h.key_id,
            "frame_flags": h.flags,
            "device_time": v.device_time,
            "gateway_pk": self.gateway.id,
            "gw_seq": item.gw_seq,
            "received_at": item.received_at,
            "gateway_clock_synced": self.batch.clock_synced,
            "ingested_at": self.now,
            "raw": v.frame.raw,
            "assurance": v.assurance.value,
            "flags": list(v.flags),
            "body": v.fields,
            "checkpoint_id": v.checkpoint_id,
            "nfc_tag_id": v.nfc_tag_id,
            "sun_read_counter": v.sun_read_counter,
            "beacon_id": v.beacon_id,
            "beacon_step": v.beacon_step,
        }

    def _existing_advert(self, key: str) -> bytes | None:
        payload: bytes | None = self.session.execute(
            _EXISTING_ADVERT, {"key": key}
        ).scalar_one_or_none()
        return payload

    def _advert_same_or_replay(
        self, stored: bytes, payload: bytes, key: str, gw_seq: int
    ) -> ItemResult:
        if stored == payload:
            return ItemResult(gw_seq=gw_seq, status="duplicate", key=key)
        raise Rejected(
            "replayed_counter", f"{key} was already seen with a different payload", key=key
        )

    def _advert(self, item: AdvertItem) -> ItemResult:
        payload = self._decode(item)
        verified = verify_advert_item(item.company_id, payload, keys=self.keys)
        stored = self._existing_advert(verified.key)
        if stored is not None:
            return self._advert_same_or_replay(stored, payload, verified.key, item.gw_seq)
        flags = [] if self.batch.clock_synced else ["gateway_clock_unsynced"]
        if isinstance(verified.advert, BeaconAdvert) and self.batch.clock_synced:
            flags += self._beacon_step(
                verified.device_pk, verified.advert.step, item.received_at, verified.key
            )
        row = {
            "key": verified.key,
            "device_pk": verified.device_pk,
            "advert_type": payload[1],
            "company_id": item.company_id,
            "payload": payload,
            "rssi_dbm": item.rssi_dbm,
            "gateway_pk": self.gateway.id,
            "gw_seq": item.gw_seq,
            "received_at": item.received_at,
            "ingested_at": self.now,
            "fields": verified.fields,
            "flags": flags,
        }
        advert_id = _insert_ignore(self.session, _adverts, row)
        if advert_id is None:
            stored = self._existing_advert(verified.key)
            assert stored is not None  # the only unique constraint is on key
            return self._advert_same_or_replay(stored, payload, verified.key, item.gw_seq)
        if self.outbox is not None:
            self.outbox_rows.append((self._index, self.outbox.add_advert, row))
        self.chained.append(
            (
                self._index,
                chain.ChainRecord(
                    chain.RecordType.ADVERT,
                    advert_id,
                    verified.key,
                    self.gateway.gateway_id,
                    self.now,
                    item.received_at,
                    payload,
                ),
            )
        )
        return ItemResult(gw_seq=item.gw_seq, status="accepted", key=verified.key)

    def _observation(self, item: ObservationItem) -> ItemResult:
        key = f"gw:{self.gateway.gateway_id}:{item.gw_seq}"
        kind = item.observation.get("kind")
        row = {
            "gateway_pk": self.gateway.id,
            "gw_seq": item.gw_seq,
            "kind": kind
            if isinstance(kind, str) and _OBSERVATION_KIND.fullmatch(kind)
            else "unknown",
            "observation": item.observation,
            "received_at": item.received_at,
            "gateway_clock_synced": self.batch.clock_synced,
            "ingested_at": self.now,
        }
        observation_id = _insert_ignore(self.session, _gateway_observations, row)
        if observation_id is None:
            stored = self.session.execute(
                select(GatewayObservation.observation).where(
                    GatewayObservation.gateway_pk == self.gateway.id,
                    GatewayObservation.gw_seq == item.gw_seq,
                )
            ).scalar_one()
            if stored != item.observation:
                raise Rejected(
                    "seq_conflict", f"{key} is already stored with different content", key=key
                )
            return ItemResult(gw_seq=item.gw_seq, status="duplicate", key=key)
        if self.outbox is not None:
            self.outbox_rows.append((self._index, self.outbox.add_observation, row))
        self.chained.append(
            (
                self._index,
                chain.ChainRecord(
                    chain.RecordType.OBSERVATION,
                    observation_id,
                    key,
                    self.gateway.gateway_id,
                    self.now,
                    item.received_at,
                    chain.observation_payload(item.observation),
                ),
            )
        )
        return ItemResult(gw_seq=item.gw_seq, status="accepted", key=key)


def ingest_batch(
    session: Session,
    *,
    gateway: Gateway,
    batch: ParsedBatch | IngestBatch,
    box: SecretBox,
    policy: VerifyPolicy,
    now: datetime | None = None,
    outbox: bool = False,
) -> IngestResponse:
    """Verify and store every item of ``batch`` in the caller's transaction; one result each.

    The caller commits (the route does, once per batch). ``now`` is the server's
    clock, injectable for tests. ``outbox``: also queue the accepted items' InfluxDB
    points (:mod:`cloud_api.sink`) in the same transaction.
    """
    parsed = (
        ParsedBatch(
            gateway_id=batch.gateway_id,
            batch_id=batch.batch_id,
            sent_at=batch.sent_at,
            clock_synced=batch.clock_synced,
            items=batch.items,
        )
        if isinstance(batch, IngestBatch)
        else batch
    )
    return _BatchIngest(
        session,
        gateway=gateway,
        batch=parsed,
        box=box,
        policy=policy,
        now=now if now is not None else utcnow(),
        outbox=outbox,
    ).run()
