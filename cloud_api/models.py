"""Relational schema of the cloud service (SQLAlchemy 2, typed ``Mapped`` columns).

Works unchanged on SQLite and PostgreSQL. Idempotency lives in unique
constraints, never in check-then-insert: ``events (device_id, seq)``,
``events (nfc_tag_id, sun_read_counter)``, ``advert_observations (key)`` and
``gateway_observations (gateway_pk, gw_seq)``. Secrets: gateway API keys are
stored as SHA-256 hashes, device and tag keys AES-GCM-encrypted
(:mod:`cloud_api.crypto_store`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, also on SQLite (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; store timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Server time, timezone-aware UTC."""
    return datetime.now(UTC)


class DeviceKind(StrEnum):
    """What a row of ``devices`` is; the key length follows from it."""

    WEARABLE = "wearable"  # 32-byte HMAC key signing event frames
    PRESENCE = "presence"  # a wearable's 16-byte BLE presence-advert key (same device_id)
    BEACON = "beacon"  # BLE checkpoint beacon, 16-byte key
    EQUIPMENT_TAG = "equipment_tag"  # BLE tag on a radio or flashlight, 16-byte key


class TagType(StrEnum):
    """NFC checkpoint tag families."""

    NTAG424 = "ntag424"  # SUN: encrypted PICCData + SDMMAC, verified with the tag's keys
    NTAG21X = "ntag21x"  # UID only: accepted with low assurance


class Assurance(StrEnum):
    """How strong the evidence of an accepted event is (ranked high to low)."""

    HIGH = "high"  # device signature + tag cryptography (NTAG 424 SUN)
    MEDIUM = "medium"  # device signature (+ verified beacon MAC for BLE visits)
    LOW = "low"  # device signature, but the checkpoint part is unauthenticated (NTAG21x)


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Every constraint has a predictable name, so an Alembic revision can drop or alter it
(SQLite's batch mode needs names; PostgreSQL's own defaults differ by version)."""


class Base(DeclarativeBase):
    """Declarative base; ``Base.metadata`` is the schema the Alembic revisions build.

    Every table must be reachable from ``import cloud_api.models``; a new or changed
    table needs a revision in ``cloud_api/migrations/versions`` (see its package doc).
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))  # provisioning


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(200))


class Checkpoint(Base):
    """A place a guard must visit, proven by an NFC tag (uid) or a BLE beacon (beacon_id)."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("post_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    name: Mapped[str] = mapped_column(String(200))
    nfc_uid: Mapped[bytes | None] = mapped_column(LargeBinary(10), unique=True)
    beacon_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)


class Gateway(Base):
    """An edge agent; authenticates with an API key of which only the SHA-256 is kept.

    The key is 32 random bytes, so a fast hash is as strong as a slow one (there is
    no dictionary to search) and it allows an indexed lookup per request.
    """

    __tablename__ = "gateways"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_id: Mapped[str] = mapped_column(String(100), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    api_key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(200))  # provisioning


class Device(Base):
    """Wearable, presence identity, beacon or equipment tag: one u32 id per kind."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("kind", "device_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    device_id: Mapped[int] = mapped_column(BigInteger)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # provisioning: a revoked device's evidence is refused (reason device_revoked)
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(200))


class DeviceKey(Base):
    """One key of a device, by ``key_id``; several rows while a rotation drains."""

    __tablename__ = "device_keys"
    __table_args__ = (UniqueConstraint("device_pk", "key_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    key_id: Mapped[int] = mapped_column(SmallInteger)
    key_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class NfcTag(Base):
    __tablename__ = "nfc_tags"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[bytes] = mapped_column(LargeBinary(10), unique=True)
    tag_type: Mapped[str] = mapped_column(String(10))
    meta_read_key_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    file_read_key_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    last_read_counter: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # provisioning: owning site, where the keys came from, revocation
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    key_source: Mapped[str | None] = mapped_column(String(12))  # generated | diversified
    master_key_version: Mapped[int | None] = mapped_column(Integer)
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(200))


class Event(Base):
    """An accepted device-signed frame, raw bytes kept exactly as signed."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("device_id", "seq", name="uq_events_device_seq"),
        UniqueConstraint("nfc_tag_id", "sun_read_counter", name="uq_events_tag_counter"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    kind: Mapped[int] = mapped_column(SmallInteger, index=True)
    key_id: Mapped[int] = mapped_column(SmallInteger)
    frame_flags: Mapped[int] = mapped_column(SmallInteger)
    device_time: Mapped[datetime]
    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id"))
    gw_seq: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime]
    gateway_clock_synced: Mapped[bool]
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    assurance: Mapped[str] = mapped_column(String(10))
    flags: Mapped[list[str]] = mapped_column(default=list)
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"))
    nfc_tag_id: Mapped[int | None] = mapped_column(ForeignKey("nfc_tags.id"))
    sun_read_counter: Mapped[int | None] = mapped_column(Integer)
    beacon_id: Mapped[int | None] = mapped_column(BigInteger)
    beacon_step: Mapped[int | None] = mapped_column(BigInteger)


class AdvertObservation(Base):
    """A signed BLE advert heard by a gateway, once per signer and step/counter."""

    __tablename__ = "advert_observations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    advert_type: Mapped[int] = mapped_column(SmallInteger)
    company_id: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    rssi_dbm: Mapped[int] = mapped_column(SmallInteger)
    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id"))
    gw_seq: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime]
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    flags: Mapped[list[str]] = mapped_column(default=list)


class GatewayObservation(Base):
    """What a gateway itself reports (evictions, health): its API key is the only proof."""

    __tablename__ = "gateway_observations"
    __table_args__ = (UniqueConstraint("gateway_pk", "gw_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id"))
    gw_seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(50))
    observation: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
    gateway_clock_synced: Mapped[bool]
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)


class RejectedEvent(Base):
    """Anything refused, with its stable reason and the bytes as they arrived."""

    __tablename__ = "rejected_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_pk: Mapped[int | None] = mapped_column(ForeignKey("gateways.id"))
    gw_seq: Mapped[int | None] = mapped_column(BigInteger)
    item_type: Mapped[str] = mapped_column(String(20))
    key: Mapped[str | None] = mapped_column(String(64))
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime | None]
    rejected_at: Mapped[datetime] = mapped_column(default=utcnow)


class IngestLog(Base):
    """One row per ingest request: retries of a batch show up here and in ``duplicates``."""

    __tablename__ = "ingest_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(36), index=True)
    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id"))
    items: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    clock_synced: Mapped[bool]
    sent_at: Mapped[datetime]
    received_at: Mapped[datetime]


class Role(StrEnum):
    """What a person may do; every endpoint names the roles it admits."""

    GUARD = "guard"
    TECHNICIAN = "technician"
    SUPERVISOR = "supervisor"
    CUSTOMER = "customer"
    ADMIN = "admin"


class User(Base):
    """A person who logs in. Only the argon2 hash of the password is stored.

    ``failed_logins`` and ``locked_until`` live in the row, not in process memory,
    so login rate limiting holds across every API process behind the balancer.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class UserSite(Base):
    """The sites a person is scoped to (admins see every site)."""

    __tablename__ = "user_sites"
    __table_args__ = (UniqueConstraint("user_id", "site_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))


class InfluxOutbox(Base):
    """Line protocol waiting for InfluxDB, written in the same transaction as the evidence.

    One row per ingest batch (only when a sink is configured). A worker claims rows
    with a lease (``lease_owner``, ``lease_until``; ``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL), writes them, and deletes them only after InfluxDB accepted the
    write; a failed write releases the rows with ``next_attempt_at`` pushed back.
    Rows InfluxDB refuses as bad data (HTTP 400) keep their lines, with
    ``dead_at`` and the server's reason in ``last_error``. The lines live in
    :class:`InfluxOutboxLines`: SQLite rewrites a whole record on UPDATE, so
    leasing a row that held its text would copy the text each time.
    """

    __tablename__ = "influx_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    n_points: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    dead_at: Mapped[datetime | None]


class InfluxOutboxLines(Base):
    """The line protocol of one :class:`InfluxOutbox` row (written once, deleted with it)."""

    __tablename__ = "influx_outbox_lines"

    outbox_id: Mapped[int] = mapped_column(ForeignKey("influx_outbox.id"), primary_key=True)
    lines: Mapped[str] = mapped_column(Text)


class ChainHead(Base):
    """The head of a site's hash chain; its row lock serialises appends across processes."""

    __tablename__ = "chain_heads"

    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    length: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChainEntry(Base):
    """One link of a site's chain: which record, at which position, with which hash.

    ``record_type`` names the table (``cloud_api.chain.RecordType``) and ``record_id``
    its row; the format of the hashed bytes is in docs/hash-chain.md.
    """

    __tablename__ = "chain_entries"
    __table_args__ = (UniqueConstraint("site_id", "position", name="uq_chain_site_position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    position: Mapped[int] = mapped_column(BigInteger)
    record_type: Mapped[int] = mapped_column(SmallInteger)
    record_id: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class DeviceSequence(Base):
    """Per wearable (wire ``device_id``): the highest seq seen and how many were received."""

    __tablename__ = "device_sequences"

    device_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    highest_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    received: Mapped[int] = mapped_column(BigInteger, default=0)


class SequenceRange(Base):
    """A run of a wearable's seqs never received: ``lost``, or ``evicted`` by the wearable."""

    __tablename__ = "sequence_ranges"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(BigInteger, index=True)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))


# ---------------------------------------------------------------- compliance workflow
# Issue 6, items 5-7 (helper "compliance-workflow"): deviations and their rectification,
# supervisor inspections, customer complaints and survey responses. The rules live in
# cloud_api/compliance/workflow.py and surveys.py; statuses are stored as their text.


class Deviation(Base):
    """A breach of a post's targets or rules, with a severity; opens a rectification item.

    ``source_key`` is the idempotency key of what caused it (a rule breach's stable key,
    ``inspection:<id>``, ``complaint:<id>``): re-scoring a shift after late events finds
    the same key and changes nothing. A breach that disappears on re-scoring is
    ``withdrawn_at``, never deleted.
    """

    __tablename__ = "deviations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"))
    guard_id: Mapped[int | None] = mapped_column(ForeignKey("guards.id"))
    source: Mapped[str] = mapped_column(String(20))
    source_key: Mapped[str] = mapped_column(String(200), unique=True)
    scope_key: Mapped[str] = mapped_column(String(200), index=True)
    rule: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[str] = mapped_column(Text, default="")
    withdrawn_at: Mapped[datetime | None]


class RectificationItem(Base):
    """The fix a deviation asks for: owner, due time, workflow status and escalation.

    ``next_escalation_at`` is when the escalation worker next looks at the item (the
    due time, then every repeat interval); it is cleared once the item is resolved.
    """

    __tablename__ = "rectification_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    deviation_id: Mapped[int] = mapped_column(ForeignKey("deviations.id"), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(20))
    due_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    verified_at: Mapped[datetime | None]
    verified_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    escalation_level: Mapped[int] = mapped_column(SmallInteger, default=0)
    escalated_at: Mapped[datetime | None]
    overdue: Mapped[bool] = mapped_column(default=False)
    """Escalated since it was last opened; cleared when resolved or withdrawn."""
    next_escalation_at: Mapped[datetime | None] = mapped_column(index=True)


class RectificationEvent(Base):
    """One step of an item's history: who moved it from which status to which, and why."""

    __tablename__ = "rectification_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("rectification_items.id"), index=True)
    at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(20))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    escalation_level: Mapped[int] = mapped_column(SmallInteger, default=0)
    note: Mapped[str] = mapped_column(Text, default="")


class Inspection(Base):
    """A supervisor's spot check of a post (and optionally one guard) with its result."""

    __tablename__ = "inspections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    guard_id: Mapped[int | None] = mapped_column(ForeignKey("guards.id"))
    inspector_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    inspected_at: Mapped[datetime] = mapped_column(index=True)
    result: Mapped[str] = mapped_column(String(10))
    notes: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    deviation_id: Mapped[int | None] = mapped_column(ForeignKey("deviations.id"))


class Complaint(Base):
    """A complaint from the customer or the public, tracked from receipt to a verdict."""

    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"))
    channel: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    filed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    received_at: Mapped[datetime] = mapped_column(index=True)
    closed_at: Mapped[datetime | None]
    resolution: Mapped[str] = mapped_column(Text, default="")
    deviation_id: Mapped[int | None] = mapped_column(ForeignKey("deviations.id"))


class SurveyResponse(Base):
    """A customer's monthly opinion of the service: a rating from 1 to 5 and comments."""

    __tablename__ = "survey_responses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    respondent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    rating: Mapped[int] = mapped_column(SmallInteger)
    comments: Mapped[str] = mapped_column(Text, default="")
    submitted_at: Mapped[datetime] = mapped_column(index=True)


# ---------------------------------------------------------------- provisioning (cloud-store)
# Issue 5 items 2 and 4 (helper "cloud-store"): the company and its customers, zones,
# guards, equipment items and who carries them, MQTT credentials, per-site master keys
# for NTAG 424 DNA key diversification, signed commands, and the audit log every
# provisioning action writes. Functions: cloud_api/provisioning.py, cloud_api/audit.py.
# Revision: cloud_api/migrations/versions/store_1_provisioning.py.


class EquipmentKind(StrEnum):
    """What an equipment item is (stored as its text)."""

    RADIO = "radio"
    FLASHLIGHT = "flashlight"
    BATON = "baton"
    BODY_CAMERA = "body_camera"
    KEYS = "keys"
    OTHER = "other"


class Company(Base):
    """The security company operating the service (usually one row)."""

    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Customer(Base):
    """A customer of the company; owns sites (``sites.customer_id``)."""

    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("company_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Zone(Base):
    """A named area of a site (optionally of one post), grouping checkpoints for people."""

    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"))
    name: Mapped[str] = mapped_column(String(200))


class Guard(Base):
    """A guard; ``user_id`` links the person's login (role guard) when they have one."""

    __tablename__ = "guards"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    employee_no: Mapped[str | None] = mapped_column(String(50), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class WearableAssignment(Base):
    """Who wore which wearable when: ``[started_at, ended_at)``, open while ``ended_at`` is NULL."""

    __tablename__ = "wearable_assignments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    guard_id: Mapped[int] = mapped_column(ForeignKey("guards.id"), index=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class EquipmentItem(Base):
    """A radio, flashlight, baton, ...; ``tag_device_pk`` is the BLE equipment tag on it."""

    __tablename__ = "equipment_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(200))
    serial: Mapped[str | None] = mapped_column(String(100))
    tag_device_pk: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class EquipmentAssignment(Base):
    """Who carries an item: ``[assigned_at, returned_at)``; at most one open row per item."""

    __tablename__ = "equipment_assignments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("equipment_items.id"), index=True)
    guard_id: Mapped[int] = mapped_column(ForeignKey("guards.id"), index=True)
    assigned_at: Mapped[datetime]
    returned_at: Mapped[datetime | None]


class MqttCredential(Base):
    """A broker account of a site: a wearable (username = its 8-hex id) or a gateway.

    ``password_hash`` is Mosquitto's own ``$7$`` PBKDF2-SHA512 line format, so the
    site's password file is exported as stored and the clear password exists only
    in the response that created it.
    """

    __tablename__ = "mqtt_credentials"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    device_pk: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    gateway_pk: Mapped[int | None] = mapped_column(ForeignKey("gateways.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SiteMasterKey(Base):
    """A site's AES-128 master key for NTAG 424 DNA key diversification (NXP AN10922)."""

    __tablename__ = "site_master_keys"
    __table_args__ = (UniqueConstraint("site_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    version: Mapped[int] = mapped_column(Integer)
    key_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class DeviceCommand(Base):
    """A command signed for a wearable; ``cmd_seq`` is unique and increasing per device."""

    __tablename__ = "device_commands"
    __table_args__ = (UniqueConstraint("device_pk", "cmd_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    cmd_seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[int] = mapped_column(SmallInteger)
    key_id: Mapped[int] = mapped_column(SmallInteger)
    issued_at: Mapped[datetime]
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    issued_by: Mapped[str] = mapped_column(String(100))


class AuditLog(Base):
    """Who did what, when, to which object. Never holds a secret (only ids and facts)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(100))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(50), index=True)
    object_type: Mapped[str] = mapped_column(String(30))
    object_id: Mapped[str] = mapped_column(String(100))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


# ---------------------------------------------------------------- compliance score
# Issue 6, items 1-4 and 8 (helper "compliance-score"): post targets and patrol plans,
# contract weights per customer, planned shifts, and versioned shift scores. The pure
# engine is cloud_api/compliance/ (engine, rules, targets); reading and writing these
# rows is cloud_api/compliance/store.py. ``guard_id`` is ``guards.id`` and
# ``customer_id`` is ``customers.id`` (cloud-store's tables), kept without a database
# foreign key so the two Alembic branches stay independent; store.py checks them.


class ComplianceTargets(Base):
    """A post's targets besides its patrol plans (one row per post; absent = defaults).

    ``equipment``: ``[{"name": "radio", "tag_ids": [40961], "min_battery_pct": 20}]``;
    ``weights``: category -> weight, overriding the customer's contract weights.
    """

    __tablename__ = "compliance_targets"

    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), primary_key=True)
    max_absence_s: Mapped[int] = mapped_column(Integer, default=15 * 60)
    max_inactivity_s: Mapped[int] = mapped_column(Integer, default=90 * 60)
    sos_ack_target_s: Mapped[int] = mapped_column(Integer, default=60)
    rectification_target_h: Mapped[int] = mapped_column(Integer, default=72)
    equipment: Mapped[list[Any]] = mapped_column(JSON, default=list)
    weights: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CompliancePlan(Base):
    """A patrol plan of a post: checkpoints, schedule, windows (local times), dwell, walks.

    ``windows``: ``[{"weekdays": [0, ..., 6], "start": "22:00", "end": "06:00"}]``;
    ``fixed_times``: ``["22:30", "02:30"]``; ``walk_s``: ``[[cp_a, cp_b, seconds], ...]``.
    A retired plan (``retired_at``) no longer counts for shifts starting after it.
    """

    __tablename__ = "compliance_plans"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    checkpoints: Mapped[list[Any]] = mapped_column(JSON)
    ordered: Mapped[bool] = mapped_column(default=False)
    schedule_kind: Mapped[str] = mapped_column(String(10))
    interval_s: Mapped[int] = mapped_column(Integer, default=0)
    fixed_times: Mapped[list[Any]] = mapped_column(JSON, default=list)
    rounds_per_window: Mapped[int] = mapped_column(Integer, default=0)
    round_duration_s: Mapped[int] = mapped_column(Integer)
    grace_s: Mapped[int] = mapped_column(Integer, default=0)
    windows: Mapped[list[Any]] = mapped_column(JSON)
    min_dwell_s: Mapped[int] = mapped_column(Integer, default=0)
    walk_s: Mapped[list[Any]] = mapped_column(JSON, default=list)
    default_walk_s: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class ComplianceContractWeights(Base):
    """Contract weights of a customer: category -> weight (normalised to 100 when used)."""

    __tablename__ = "compliance_contract_weights"

    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    weights: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ComplianceShift(Base):
    """A planned shift: guard, post, the wearable (wire id) the guard carries, start, end."""

    __tablename__ = "compliance_shifts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    guard_id: Mapped[int] = mapped_column(BigInteger, index=True)
    device_id: Mapped[int] = mapped_column(BigInteger, index=True)
    start_at: Mapped[datetime] = mapped_column(index=True)
    end_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]


class ComplianceScore(Base):
    """One computed version of a shift's score; exactly one row per shift is ``current``.

    A recomputation that yields the same result (``digest``) adds no version; a
    different one (late events after an outage) adds version n+1 and clears the
    old row's ``current``. ``result`` is the full explanation (rounds, deductions,
    breaches, notes) as JSON.
    """

    __tablename__ = "compliance_scores"
    __table_args__ = (UniqueConstraint("shift_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("compliance_shifts.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    current: Mapped[bool] = mapped_column(default=True, index=True)
    final: Mapped[bool] = mapped_column(default=False)
    as_of: Mapped[datetime | None]
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    digest: Mapped[str] = mapped_column(String(64))
    score: Mapped[float]
    rounds_expected: Mapped[int] = mapped_column(Integer)
    rounds_completed: Mapped[int] = mapped_column(Integer)
    rounds_partial: Mapped[int] = mapped_column(Integer)
    rounds_missed: Mapped[int] = mapped_column(Integer)
    checkpoints_on_time: Mapped[int] = mapped_column(Integer)
    checkpoints_late: Mapped[int] = mapped_column(Integer)
    checkpoints_missed: Mapped[int] = mapped_column(Integer)
    order_violations: Mapped[int] = mapped_column(Integer)
    flagged_events: Mapped[int] = mapped_column(Integer)
    sos_events: Mapped[int] = mapped_column(Integer)
    breaches: Mapped[int] = mapped_column(Integer)
    presence_share: Mapped[float]
    equipment_readiness: Mapped[dict[str, Any]] = mapped_column(JSON)
    first_event_at: Mapped[datetime | None]
    last_event_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


# ---------------------------------------------------------------- beacon clocks
# Issue 5, BLE beacon verification (helper "cloud-perf"): each checkpoint beacon's
# estimated clock offset, kept by cloud_api.verify.track_beacon_step during ingest.


class BeaconClock(Base):
    """A checkpoint beacon's clock as the cloud estimates it from accepted adverts.

    ``offset_ms`` is the beacon's clock (``step`` times the step length) minus the
    reference time (synced wearable or gateway clock) at ``estimated_at``; ESP32
    clocks drift in deep sleep, so it is updated from every accepted in-window advert.
    ``highest_step`` and ``highest_step_at`` catch a replayed advert (an older step
    presented later). ``pending_*``: out-of-window adverts that agree with each other,
    which re-anchor the estimate when they keep coming (a beacon that restarted).
    """

    __tablename__ = "beacon_clocks"

    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    offset_ms: Mapped[int] = mapped_column(BigInteger)
    estimated_at: Mapped[datetime]
    highest_step: Mapped[int] = mapped_column(BigInteger)
    highest_step_at: Mapped[datetime]
    samples: Mapped[int] = mapped_column(Integer)
    pending_offset_ms: Mapped[int | None] = mapped_column(BigInteger)
    pending_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------------------------------------------------------------- alerts (issue 7)
# Issue 7 items 1-5 (helper "alerts"): an accepted SOS / man-down frame becomes an alert
# (cloud_api/alerts/service.py), its history (alert_log: every transition, escalation and
# notification, also the SSE stream's event ids), signed webhook targets and their
# delivery log. Revision: cloud_api/migrations/versions/alerts_1_alerts.py.


class Alert(Base):
    """One emergency (SOS button, man-down or test) of a wearable, open until resolved.

    ``event_id`` is unique: a duplicate or retried frame never makes a second alert. The
    partial unique index on ``device_id`` (state not resolved) keeps one live alert per
    wearable; further SOS frames while it is live are counted in ``repeats``.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_live_device",
            "device_id",
            unique=True,
            postgresql_where=text("state <> 'resolved'"),
            sqlite_where=text("state <> 'resolved'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), unique=True)
    device_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    trigger: Mapped[str] = mapped_column(String(12))  # button | man_down | test
    state: Mapped[str] = mapped_column(String(12), index=True)  # open|acknowledged|resolved
    level: Mapped[int] = mapped_column(SmallInteger, default=0)  # escalation chain step
    repeats: Mapped[int] = mapped_column(Integer, default=0)
    device_time: Mapped[datetime]
    created_at: Mapped[datetime]
    next_escalation_at: Mapped[datetime | None] = mapped_column(index=True)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    ack_note: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    resolve_note: Mapped[str | None] = mapped_column(Text)


class AlertLog(Base):
    """Every step of an alert: created, repeated, acknowledged, escalated, resolved."""

    __tablename__ = "alert_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)
    level: Mapped[int] = mapped_column(SmallInteger, default=0)


class AlertWebhookTarget(Base):
    """A URL that receives signed alert notifications; the secret is AES-GCM-encrypted.

    ``site_id`` NULL: every site. ``min_level``: notified once an alert reaches this
    escalation level (0 = from creation on).
    """

    __tablename__ = "alert_webhook_targets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    min_level: Mapped[int] = mapped_column(SmallInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class AlertWebhookDelivery(Base):
    """One alert step to one target, retried with backoff until delivered (leased claims)."""

    __tablename__ = "alert_webhook_deliveries"
    __table_args__ = (UniqueConstraint("target_id", "log_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("alert_webhook_targets.id"))
    log_id: Mapped[int] = mapped_column(ForeignKey("alert_log.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


class AlertWebhookAttempt(Base):
    """The delivery log: one row per HTTP attempt (status or error, duration)."""

    __tablename__ = "alert_webhook_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("alert_webhook_deliveries.id"), index=True)
    at: Mapped[datetime]
    status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
