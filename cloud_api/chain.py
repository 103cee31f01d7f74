"""Tamper-evident record: a SHA-256 hash chain per site over every accepted record.

``entry_hash = SHA-256(previous_hash || canonical_entry_bytes)``; the first entry
of a site hashes after :data:`GENESIS_HASH`. The canonical bytes (format in
docs/hash-chain.md) carry the position, the site, the record type, the
idempotency key, the gateway, the server's ingest time, the gateway's receive time
and the exact bytes as signed (device frame, BLE advert) or the canonical JSON of a
gateway observation.

Appends happen at the end of an ingest transaction: the site's ``chain_heads`` row
is locked with ``SELECT ... FOR UPDATE`` (PostgreSQL; SQLite has one writer at a
time anyway), so several API processes on one database extend one chain, in commit
order. :func:`verify_chain` recomputes every link and reports the first broken one.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloud_api import bulk
from cloud_api.models import (
    AdvertObservation,
    ChainEntry,
    ChainHead,
    Event,
    Gateway,
    GatewayObservation,
    Site,
    utcnow,
)
from patrol_protocol.ids import device_id_text

FORMAT_VERSION = 1
"""First byte of every canonical entry; a new layout gets a new number."""

GENESIS_HASH = bytes(32)
"""The 'previous hash' of a site's first entry."""

VERIFY_PAGE_ENTRIES = 2_000
"""Entries read per round trip while verifying: bounded memory on chains of millions."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEADER = struct.Struct(">BQQBqq")
"""version u8, position u64, site_id u64, record_type u8, ingested_at us i64, received_at us i64."""
_LENGTH = struct.Struct(">I")


class RecordType(IntEnum):
    """Which table a chain entry points into."""

    DEVICE_FRAME = 1  # events: a wearable-signed frame
    ADVERT = 2  # advert_observations: a signed BLE advert heard by the gateway
    OBSERVATION = 3  # gateway_observations: what the gateway itself reports


@dataclass(frozen=True, slots=True)
class ChainRecord:
    """What one entry commits to (everything but its position and site)."""

    record_type: RecordType
    record_id: int
    key: str
    gateway_id: str
    ingested_at: datetime
    received_at: datetime
    payload: bytes


def _micros(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _field(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data


def observation_payload(observation: dict[str, Any]) -> bytes:
    """Canonical JSON of a gateway observation: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        observation, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def canonical_entry(position: int, site_id: int, record: ChainRecord) -> bytes:
    """The exact bytes hashed for ``record`` at ``position`` of ``site_id``'s chain."""
    return b"".join(
        (
            _HEADER.pack(
                FORMAT_VERSION,
                position,
                site_id,
                record.record_type,
                _micros(record.ingested_at),
                _micros(record.received_at),
            ),
            _field(record.key.encode("utf-8")),
            _field(record.gateway_id.encode("utf-8")),
            _field(record.payload),
        )
    )


def link_hash(previous: bytes, position: int, site_id: int, record: ChainRecord) -> bytes:
    """``SHA-256(previous || canonical_entry(position, site_id, record))``."""
    return hashlib.sha256(previous + canonical_entry(position, site_id, record)).digest()


@dataclass(frozen=True, slots=True)
class Head:
    site_id: int
    length: int
    hash: bytes


_heads = cast(Table, ChainHead.__table__)
_entries = cast(Table, ChainEntry.__table__)
_LOCK_HEAD = (
    select(_heads.c.length, _heads.c.head_hash)
    .where(_heads.c.site_id == bindparam("site_id"))
    .with_for_update()
)
_MOVE_HEAD = (
    update(_heads)
    .where(_heads.c.site_id == bindparam("b_site_id"))
    .values(
        length=bindparam("b_length"),
        head_hash=bindparam("b_hash"),
        updated_at=bindparam("b_updated_at"),
    )
)


def _create_head_if_missing(session: Session, site_id: int) -> None:
    dialect = session.get_bind().dialect.name
    stmt: Any = postgresql.insert(_heads) if dialect == "postgresql" else sqlite.insert(_heads)
    session.execute(
        stmt.on_conflict_do_nothing(),
        {"site_id": site_id, "length": 0, "head_hash": GENESIS_HASH, "updated_at": utcnow()},
    )


def lock_head(session: Session, site_id: int) -> Head:
    """The site's head, row-locked until the transaction ends (created at length 0)."""
    row = session.execute(_LOCK_HEAD, {"site_id": site_id}).one_or_none()
    if row is None:
        _create_head_if_missing(session, site_id)
        row = session.execute(_LOCK_HEAD, {"site_id": site_id}).one()
    return Head(site_id=site_id, length=row.length, hash=bytes(row.head_hash))


def append(session: Session, site_id: int, records: Sequence[ChainRecord]) -> Head:
    """Append ``records`` in order to the site's chain in the caller's transaction."""
    head = lock_head(session, site_id)
    if not records:
        return head
    previous, position = head.hash, head.length
    rows = []
    for record in records:
        position += 1
        previous = link_hash(previous, position, site_id, record)
        rows.append(
            {
                "site_id": site_id,
                "position": position,
                "record_type": int(record.record_type),
                "record_id": record.record_id,
                "entry_hash": previous,
            }
        )
    bulk.insert_many(session, _entries, rows).close()
    session.execute(
        _MOVE_HEAD,
        {"b_site_id": site_id, "b_length": position, "b_hash": previous, "b_updated_at": utcnow()},
    )
    return Head(site_id=site_id, length=position, hash=previous)


def read_head(session: Session, site_id: int) -> Head:
    """The site's head without locking (length 0 and the genesis hash if nothing yet)."""
    row = session.execute(
        select(ChainHead.length, ChainHead.head_hash).where(ChainHead.site_id == site_id)
    ).one_or_none()
    if row is None:
        return Head(site_id=site_id, length=0, hash=GENESIS_HASH)
    return Head(site_id=site_id, length=row.length, hash=bytes(row.head_hash))


# ---------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first position where the stored chain and the recomputed one disagree."""

    position: int
    reason: str
    """``missing_entry``, ``record_missing``, ``hash_mismatch``, ``head_mismatch``
    or ``extra_entry``."""
    detail: str


@dataclass(frozen=True, slots=True)
class Verification:
    head: Head
    checked: int
    """Entries recomputed before the first break (all of them when intact)."""
    broken: BrokenLink | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _frame_records(session: Session, ids: list[int]) -> dict[int, ChainRecord]:
    rows = session.execute(
        select(
            Event.id,
            Event.device_id,
            Event.seq,
            Event.ingested_at,
            Event.received_at,
            Event.raw,
            Gateway.gateway_id,
        )
        .join(Gateway, Gateway.id == Event.gateway_pk)
        .where(Event.id.in_(ids))
    )
    return {
        r.id: ChainRecord(
            RecordType.DEVICE_FRAME,
            r.id,
            f"{device_id_text(r.device_id)}:{r.seq}",
            r.gateway_id,
            r.ingested_at,
            r.received_at,
            bytes(r.raw),
        )
        for r in rows
    }


def _advert_records(session: Session, ids: list[int]) -> dict[int, ChainRecord]:
    rows = session.execute(
        select(
            AdvertObservation.id,
            AdvertObservation.key,
            AdvertObservation.ingested_at,
            AdvertObservation.received_at,
            AdvertObservation.payload,
            Gateway.gateway_id,
        )
        .join(Gateway, Gateway.id == AdvertObservation.gateway_pk)
        .where(AdvertObservation.id.in_(ids))
    )
    return {
        r.id: ChainRecord(
            RecordType.ADVERT,
            r.id,
            r.key,
            r.gateway_id,
            r.ingested_at,
            r.received_at,
            bytes(r.payload),
        )
        for r in rows
    }


def _observation_records(session: Session, ids: list[int]) -> dict[int, ChainRecord]:
    rows = session.execute(
        select(
            GatewayObservation.id,
            GatewayObservation.gw_seq,
            GatewayObservation.ingested_at,
            GatewayObservation.received_at,
            GatewayObservation.observation,
            Gateway.gateway_id,
        )
        .join(Gateway, Gateway.id == GatewayObservation.gateway_pk)
        .where(GatewayObservation.id.in_(ids))
    )
    return {
        r.id: ChainRecord(
            RecordType.OBSERVATION,
            r.id,
            observation_key(r.gateway_id, r.gw_seq),
            r.gateway_id,
            r.ingested_at,
            r.received_at,
            observation_payload(r.observation),
        )
        for r in rows
    }


def observation_key(gateway_id: str, gw_seq: int) -> str:
    """The idempotency key of a gateway observation (as answered by ingest)."""
    return f"gw:{gateway_id}:{gw_seq}"


_LOADERS = {
    RecordType.DEVICE_FRAME: _frame_records,
    RecordType.ADVERT: _advert_records,
    RecordType.OBSERVATION: _observation_records,
}


def _pages(session: Session, site_id: int) -> Iterator[list[Any]]:
    after = 0
    while True:
        page = list(
            session.execute(
                select(
                    ChainEntry.position,
                    ChainEntry.record_type,
                    ChainEntry.record_id,
                    ChainEntry.entry_hash,
                )
                .where(ChainEntry.site_id == site_id, ChainEntry.position > after)
                .order_by(ChainEntry.position)
                .limit(VERIFY_PAGE_ENTRIES)
            ).all()
        )
        if not page:
            return
        yield page
        after = page[-1].position


def verify_chain(session: Session, site_id: int) -> Verification:
    """Recompute the site's chain from genesis; stop at the first broken link."""
    head = read_head(session, site_id)
    previous, expected = GENESIS_HASH, 1
    for page in _pages(session, site_id):
        records: dict[tuple[int, int], ChainRecord] = {}
        for record_type, loader in _LOADERS.items():
            ids = [e.record_id for e in page if e.record_type == record_type]
            if ids:
                for record_id, loaded in loader(session, ids).items():
                    records[(record_type, record_id)] = loaded
        for entry in page:
            if entry.position != expected:
                return Verification(
                    head,
                    expected - 1,
                    BrokenLink(expected, "missing_entry", f"next stored entry is {entry.position}"),
                )
            if expected > head.length:
                return Verification(
                    head,
                    expected - 1,
                    BrokenLink(expected, "extra_entry", f"the head says length {head.length}"),
                )
            record = records.get((entry.record_type, entry.record_id))
            if record is None:
                return Verification(
                    head,
                    expected - 1,
                    BrokenLink(
                        expected,
                        "record_missing",
                        f"{_type_name(entry.record_type)} row {entry.record_id} is gone",
                    ),
                )
            recomputed = link_hash(previous, expected, site_id, record)
            if recomputed != bytes(entry.entry_hash):
                return Verification(
                    head,
                    expected - 1,
                    BrokenLink(
                        expected,
                        "hash_mismatch",
                        f"{_type_name(entry.record_type)} {record.key} (row {record.record_id}) "
                        "does not hash to the stored link",
                    ),
                )
            previous, expected = recomputed, expected + 1
    checked = expected - 1
    if checked != head.length:
        return Verification(
            head,
            checked,
            BrokenLink(
                expected, "missing_entry", f"the head says length {head.length}, found {checked}"
            ),
        )
    if previous != head.hash:
        return Verification(
            head, checked, BrokenLink(checked, "head_mismatch", "the head hash differs")
        )
    return Verification(head, checked, None)


def _type_name(record_type: int) -> str:
    try:
        return RecordType(record_type).name.lower()
    except ValueError:
        return f"record type {record_type}"


def verify_site(database_url: str, site: str, echo: Callable[[str], object]) -> int:
    """``patrol chain verify``: print the head and the verdict; 0 intact, 1 broken, 2 no site."""
    from cloud_api.db import make_engine

    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            found = session.execute(
                select(Site).where(Site.id == int(site))
                if site.isdigit()
                else select(Site).where(Site.name == site)
            ).scalar_one_or_none()
            if found is None:
                echo(f"no site {site!r}")
                return 2
            result = verify_chain(session, found.id)
    finally:
        engine.dispose()
    head = result.head
    echo(f"site {found.id} ({found.name}): length {head.length}, head {head.hash.hex()}")
    if result.broken is None:
        echo(f"chain intact: {result.checked} entries recomputed")
        return 0
    broken = result.broken
    echo(f"BROKEN at position {broken.position}: {broken.reason} ({broken.detail})")
    return 1
