"""Provisioning functions: the one implementation behind the REST API, the CSV import,
the demo and the tests.

Each takes an open :class:`~sqlalchemy.orm.Session` and keyword-only values,
flushes so ids exist, writes an audit row (:mod:`cloud_api.audit`) and leaves the
commit to the caller. Secrets follow two rules:

- what the service only *compares* is stored hashed: a gateway's API key (SHA-256;
  256 random bits), MQTT passwords (Mosquitto's ``$7$`` PBKDF2-SHA512, exported as is);
- what the service must *use* (device HMAC keys, NTAG 424 DNA SDM keys, site master
  keys) is encrypted under the server key with :class:`~cloud_api.crypto_store.SecretBox`.

Generated secrets are returned to the caller once and never logged.

Rotation and revocation:

- device keys: :func:`rotate_device_key` adds key ``key_id + 1`` and sets the old
  key's ``retired_at`` to now + ``overlap_s`` (default 0: refused at once); frames
  carry their ``key_id``, so during the overlap both verify;
- gateway API keys and MQTT passwords: replaced at once (one secret per account);
- NTAG 424 keys: replaced at once (the technician rewrites the tag in the same visit);
- revocation (devices, gateways, tags, MQTT accounts) sets ``revoked_at``: ingest
  refuses the evidence, the account leaves the Mosquitto export.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cloud_api import audit
from cloud_api.audit import SYSTEM, Actor
from cloud_api.crypto_store import SecretBox, an10922_diversify_aes128, mosquitto_password_hash
from cloud_api.models import (
    Checkpoint,
    Company,
    Customer,
    Device,
    DeviceCommand,
    DeviceKey,
    DeviceKind,
    EquipmentAssignment,
    EquipmentItem,
    EquipmentKind,
    Gateway,
    Guard,
    MqttCredential,
    NfcTag,
    Post,
    Site,
    SiteMasterKey,
    TagType,
    User,
    WearableAssignment,
    Zone,
    utcnow,
)
from patrol_protocol.commands import encode_command
from patrol_protocol.frames import UID_LENGTHS
from patrol_protocol.ids import device_id_text

WEARABLE_KEY_BYTES = 32
"""HMAC-SHA256 key signing a wearable's event frames."""
BLE_KEY_BYTES = 16
"""Beacon, equipment-tag and presence advert keys."""
NTAG424_KEY_BYTES = 16
"""NTAG 424 DNA SDMMetaReadKey / SDMFileReadKey are AES-128."""
API_KEY_RANDOM_BYTES = 32
"""Gateway API keys: 256 random bits, so SHA-256 storage cannot be brute-forced."""
API_KEY_PREFIX = "pgw_"
"""Makes a leaked gateway key recognisable to secret scanners and people."""


MQTT_PASSWORD_BYTES = 16
"""MQTT passwords: 128 random bits (URL-safe text), so a fast broker-side hash suffices."""
SITE_MASTER_KEY_BYTES = 16
"""AN10922 AES-128 master key per site."""
NTAG424_META_KEY_NO = 1
"""Key slot the tag's SDMMetaReadKey occupies (part of the diversification input)."""
NTAG424_FILE_KEY_NO = 2
"""Key slot the tag's SDMFileReadKey occupies (part of the diversification input)."""
DIVERSIFICATION_SYSTEM_ID = b"patrol"
"""AN10922's "system identifier": ties derived keys to this application."""
MAX_ROTATION_OVERLAP_S = 30 * 86_400
"""A rotated device key verifies at most this long after its successor exists."""


class ProvisioningError(ValueError):
    """A provisioning request is invalid (wrong key length, bad uid, ...)."""


class NotFoundError(LookupError):
    """The object a provisioning request names does not exist."""


class KeySource(StrEnum):
    """Where an NTAG 424 DNA tag's keys come from."""

    GENERATED = "generated"  # fresh random keys per tag
    DIVERSIFIED = "diversified"  # AN10922 from the site master key and the tag's uid


def hash_api_key(api_key: str) -> str:
    """Hex SHA-256 of an API key: what the gateways table stores and looks up."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def device_key_context(kind: DeviceKind, device_id: int, key_id: int) -> bytes:
    """AEAD associated data binding an encrypted device key to its row's identity."""
    return f"device:{kind.value}:{device_id:08x}:{key_id}".encode()


def tag_key_context(uid: bytes, which: str) -> bytes:
    """AEAD associated data binding an encrypted NTAG 424 key to its tag and role."""
    return f"ntag424:{uid.hex()}:{which}".encode()


def master_key_context(site_id: int, version: int) -> bytes:
    """AEAD associated data binding an encrypted site master key to its site and version."""
    return f"site-master:{site_id}:{version}".encode()


def _check_key(name: str, key: bytes, size: int) -> None:
    if not isinstance(key, bytes) or len(key) != size:
        raise ProvisioningError(f"{name} must be {size} bytes")


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ProvisioningError(f"{name} must be an unsigned 32-bit integer")


def _check_uid(uid: bytes) -> None:
    if not isinstance(uid, bytes) or len(uid) not in UID_LENGTHS:
        raise ProvisioningError("uid must be 4, 7 or 10 bytes")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""Gateway ids are also broker usernames: no ':' or line breaks in a password file line."""


def _check_name(what: str, name: str, limit: int = 200) -> None:
    if not name or not name.strip() or len(name) > limit:
        raise ProvisioningError(f"{what} must be 1..{limit} characters")
    if _CONTROL.search(name):
        raise ProvisioningError(f"{what} must not contain control characters")


def _check_optional(what: str, value: str | None, limit: int = 200) -> None:
    if value is not None:
        _check_name(what, value, limit)


# ---------------------------------------------------------------- organisation


def create_company(session: Session, *, name: str, actor: Actor = SYSTEM) -> Company:
    """The security company (usually one)."""
    _check_name("company name", name)
    company = Company(name=name)
    session.add(company)
    session.flush()
    audit.record(session, actor, "company.create", "company", company.id, detail={"name": name})
    return company


def create_customer(
    session: Session, *, name: str, company: Company | None = None, actor: Actor = SYSTEM
) -> Customer:
    """A customer of the company; sites name it in ``customer_id``."""
    _check_name("customer name", name)
    customer = Customer(name=name, company_id=company.id if company is not None else None)
    session.add(customer)
    session.flush()
    audit.record(session, actor, "customer.create", "customer", customer.id, detail={"name": name})
    return customer


def create_site(
    session: Session,
    *,
    name: str,
    timezone: str = "UTC",
    customer: Customer | None = None,
    actor: Actor = SYSTEM,
) -> Site:
    """A customer site (IANA time zone name)."""
    _check_name("site name", name)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProvisioningError(f"unknown time zone {timezone!r} (use an IANA name)") from None
    site = Site(name=name, timezone=timezone, customer_id=customer.id if customer else None)
    session.add(site)
    session.flush()
    audit.record(
        session, actor, "site.create", "site", site.id, site_id=site.id, detail={"name": name}
    )
    return site


def create_post(session: Session, *, site: Site, name: str, actor: Actor = SYSTEM) -> Post:
    """A guard post at a site."""
    _check_name("post name", name)
    post = Post(site_id=site.id, name=name)
    session.add(post)
    session.flush()
    audit.record(
        session, actor, "post.create", "post", post.id, site_id=site.id, detail={"name": name}
    )
    return post


def create_zone(
    session: Session, *, site: Site, name: str, post: Post | None = None, actor: Actor = SYSTEM
) -> Zone:
    """A named area of a site (optionally of one post)."""
    _check_name("zone name", name)
    if post is not None and post.site_id != site.id:
        raise ProvisioningError(f"post {post.id} is not at site {site.id}")
    zone = Zone(site_id=site.id, name=name, post_id=post.id if post is not None else None)
    session.add(zone)
    session.flush()
    audit.record(
        session, actor, "zone.create", "zone", zone.id, site_id=site.id, detail={"name": name}
    )
    return zone


def create_checkpoint(
    session: Session,
    *,
    post: Post,
    name: str,
    nfc_uid: bytes | None = None,
    beacon_id: int | None = None,
    actor: Actor = SYSTEM,
) -> Checkpoint:
    """A checkpoint of a post, proven by an NFC tag uid and/or a BLE beacon id."""
    _check_name("checkpoint name", name)
    if nfc_uid is not None:
        _check_uid(nfc_uid)
    if beacon_id is not None:
        _check_u32("beacon_id", beacon_id)
    checkpoint = Checkpoint(post_id=post.id, name=name, nfc_uid=nfc_uid, beacon_id=beacon_id)
    session.add(checkpoint)
    session.flush()
    audit.record(
        session,
        actor,
        "checkpoint.create",
        "checkpoint",
        checkpoint.id,
        site_id=post.site_id,
        detail={"name": name, "post_id": post.id},
    )
    return checkpoint


def create_guard(
    session: Session,
    *,
    site: Site,
    name: str,
    employee_no: str | None = None,
    user: User | None = None,
    actor: Actor = SYSTEM,
) -> Guard:
    """A guard of a site; ``user`` links their login (role guard) when they have one."""
    _check_name("guard name", name)
    _check_optional("employee_no", employee_no, 50)
    guard = Guard(
        site_id=site.id,
        name=name,
        employee_no=employee_no,
        user_id=user.id if user is not None else None,
    )
    session.add(guard)
    session.flush()
    audit.record(
        session,
        actor,
        "guard.create",
        "guard",
        guard.id,
        site_id=site.id,
        detail={"name": name, "employee_no": employee_no, "user_id": guard.user_id},
    )
    return guard


def assign_wearable(
    session: Session, *, guard: Guard, device: Device, at: datetime, actor: Actor = SYSTEM
) -> WearableAssignment:
    """Hand ``device`` to ``guard`` from ``at`` on; ends the device's open assignment."""
    if device.kind != DeviceKind.WEARABLE.value:
        raise ProvisioningError("only wearables are assigned to guards this way")
    if device.site_id != guard.site_id:
        raise ProvisioningError("the wearable and the guard belong to different sites")
    session.execute(
        update(WearableAssignment)
        .where(WearableAssignment.device_pk == device.id, WearableAssignment.ended_at.is_(None))
        .values(ended_at=at)
    )
    row = WearableAssignment(guard_id=guard.id, device_pk=device.id, started_at=at)
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "wearable.assign",
        "wearable",
        device_id_text(device.device_id),
        site_id=guard.site_id,
        detail={"guard_id": guard.id, "at": at.isoformat()},
    )
    return row


def create_equipment_item(
    session: Session,
    *,
    site: Site,
    kind: EquipmentKind,
    label: str,
    serial: str | None = None,
    tag: Device | None = None,
    actor: Actor = SYSTEM,
) -> EquipmentItem:
    """A radio, flashlight, baton, ...; ``tag`` is the BLE equipment tag fixed to it."""
    _check_name("equipment label", label)
    _check_optional("serial", serial, 100)
    if tag is not None and tag.kind != DeviceKind.EQUIPMENT_TAG.value:
        raise ProvisioningError("an equipment item's tag must be an equipment tag")
    item = EquipmentItem(
        site_id=site.id,
        kind=EquipmentKind(kind).value,
        label=label,
        serial=serial,
        tag_device_pk=tag.id if tag is not None else None,
    )
    session.add(item)
    session.flush()
    audit.record(
        session,
        actor,
        "equipment.create",
        "equipment_item",
        item.id,
        site_id=site.id,
        detail={"kind": item.kind, "label": label, "tag_device_pk": item.tag_device_pk},
    )
    return item


def assign_equipment(
    session: Session, *, item: EquipmentItem, guard: Guard, at: datetime, actor: Actor = SYSTEM
) -> EquipmentAssignment:
    """``guard`` carries ``item`` from ``at`` on (whoever carried it before returns it then)."""
    if item.site_id != guard.site_id:
        raise ProvisioningError("the item and the guard belong to different sites")
    if item.retired_at is not None:
        raise ProvisioningError(f"equipment item {item.id} is retired")
    _close_equipment(session, item, at)
    row = EquipmentAssignment(item_id=item.id, guard_id=guard.id, assigned_at=at)
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "equipment.assign",
        "equipment_item",
        item.id,
        site_id=item.site_id,
        detail={"guard_id": guard.id, "at": at.isoformat()},
    )
    return row


def _close_equipment(session: Session, item: EquipmentItem, at: datetime) -> int:
    result = session.execute(
        update(EquipmentAssignment)
        .where(EquipmentAssignment.item_id == item.id, EquipmentAssignment.returned_at.is_(None))
        .values(returned_at=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def return_equipment(
    session: Session, *, item: EquipmentItem, at: datetime, actor: Actor = SYSTEM
) -> bool:
    """End the item's open assignment; False when nobody carried it."""
    closed = _close_equipment(session, item, at) > 0
    audit.record(
        session,
        actor,
        "equipment.return",
        "equipment_item",
        item.id,
        site_id=item.site_id,
        detail={"at": at.isoformat(), "was_assigned": closed},
    )
    return closed


# ---------------------------------------------------------------- MQTT accounts


def new_mqtt_password() -> str:
    """A fresh broker password (128 random bits)."""
    return secrets.token_urlsafe(MQTT_PASSWORD_BYTES)


def create_mqtt_credential(
    session: Session,
    *,
    site_id: int,
    username: str,
    device: Device | None = None,
    gateway: Gateway | None = None,
    actor: Actor = SYSTEM,
) -> tuple[MqttCredential, str]:
    """A broker account; returns it and its password, which only exists in this return."""
    password = new_mqtt_password()
    credential = MqttCredential(
        site_id=site_id,
        username=username,
        password_hash=mosquitto_password_hash(password),
        device_pk=device.id if device is not None else None,
        gateway_pk=gateway.id if gateway is not None else None,
    )
    session.add(credential)
    session.flush()
    audit.record(
        session, actor, "mqtt.create", "mqtt_account", username, site_id=site_id, detail={}
    )
    return credential, password


def _mqtt_credential(session: Session, username: str) -> MqttCredential:
    credential = session.scalars(
        select(MqttCredential).where(MqttCredential.username == username)
    ).one_or_none()
    if credential is None:
        raise NotFoundError(f"no MQTT account {username!r}")
    return credential


def rotate_mqtt_password(
    session: Session, *, username: str, now: datetime | None = None, actor: Actor = SYSTEM
) -> str:
    """A new password for ``username``; the old one stops with the next exported file."""
    credential = _mqtt_credential(session, username)
    if credential.revoked_at is not None:
        raise ProvisioningError(f"MQTT account {username!r} is revoked")
    password = new_mqtt_password()
    credential.password_hash = mosquitto_password_hash(password)
    credential.rotated_at = now or utcnow()
    session.flush()
    audit.record(
        session,
        actor,
        "mqtt.rotate",
        "mqtt_account",
        username,
        site_id=credential.site_id,
        detail={},
    )
    return password


def mosquitto_files(session: Session, site_id: int) -> tuple[str, str]:
    """The site's Mosquitto ``password_file`` and ``acl_file`` (docs/protocol.md).

    Password lines are the stored ``$7$`` hashes of every unrevoked account of the
    site, sorted by username. The ACL gives each gateway account readwrite on
    ``patrol/v1/#`` and every other account only its own device topics (``%u``).
    """
    accounts = session.execute(
        select(MqttCredential.username, MqttCredential.password_hash, MqttCredential.gateway_pk)
        .where(MqttCredential.site_id == site_id, MqttCredential.revoked_at.is_(None))
        .order_by(MqttCredential.username)
    ).all()
    password_file = "".join(f"{a.username}:{a.password_hash}\n" for a in accounts)
    lines = [f"# Mosquitto ACL for site {site_id}, generated by patrol-cloud"]
    for account in accounts:
        if account.gateway_pk is not None:
            lines += [f"user {account.username}", "topic readwrite patrol/v1/#", ""]
    lines += [
        "pattern write patrol/v1/dev/%u/up",
        "pattern write patrol/v1/dev/%u/status",
        "pattern read patrol/v1/dev/%u/ack",
        "pattern read patrol/v1/dev/%u/cmd",
    ]
    return password_file, "\n".join(lines) + "\n"


# ---------------------------------------------------------------- gateways


@dataclass(frozen=True, slots=True)
class GatewaySecrets:
    """What a new gateway needs once: its API key and its broker password."""

    gateway: Gateway
    api_key: str
    mqtt_username: str
    mqtt_password: str


def _new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_RANDOM_BYTES)


def create_gateway(
    session: Session, *, gateway_id: str, site: Site, actor: Actor = SYSTEM
) -> tuple[Gateway, str]:
    """Register an edge gateway; returns it and its API key, which is never shown again."""
    if not _ACCOUNT_NAME.match(gateway_id):
        raise ProvisioningError(
            "gateway_id must be 1..100 of A-Z a-z 0-9 . _ - (it is also the broker username)"
        )
    api_key = _new_api_key()
    gateway = Gateway(gateway_id=gateway_id, site_id=site.id, api_key_sha256=hash_api_key(api_key))
    session.add(gateway)
    session.flush()
    audit.record(session, actor, "gateway.create", "gateway", gateway_id, site_id=site.id)
    return gateway, api_key


def provision_gateway(
    session: Session, *, gateway_id: str, site: Site, actor: Actor = SYSTEM
) -> GatewaySecrets:
    """A gateway with its API key and a broker account named after it (readwrite all)."""
    gateway, api_key = create_gateway(session, gateway_id=gateway_id, site=site, actor=actor)
    _credential, password = create_mqtt_credential(
        session, site_id=site.id, username=gateway_id, gateway=gateway, actor=actor
    )
    return GatewaySecrets(gateway, api_key, gateway_id, password)


def _gateway(session: Session, gateway_id: str) -> Gateway:
    gateway = session.scalars(select(Gateway).where(Gateway.gateway_id == gateway_id)).one_or_none()
    if gateway is None:
        raise NotFoundError(f"no gateway {gateway_id!r}")
    return gateway


def rotate_gateway_key(session: Session, *, gateway: Gateway, actor: Actor = SYSTEM) -> str:
    """A new API key; the old one is refused from this commit on (one key per gateway)."""
    if gateway.revoked_at is not None:
        raise ProvisioningError(f"gateway {gateway.gateway_id!r} is revoked")
    api_key = _new_api_key()
    gateway.api_key_sha256 = hash_api_key(api_key)
    session.flush()
    audit.record(
        session, actor, "gateway.rotate", "gateway", gateway.gateway_id, site_id=gateway.site_id
    )
    return api_key


def revoke_gateway(
    session: Session, *, gateway: Gateway, reason: str, now: datetime, actor: Actor = SYSTEM
) -> None:
    """Refuse the gateway's API key and drop its broker account from the export."""
    _check_name("reason", reason)
    gateway.revoked_at = gateway.revoked_at or now
    gateway.revoked_reason = reason
    session.execute(
        update(MqttCredential)
        .where(MqttCredential.gateway_pk == gateway.id, MqttCredential.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.flush()
    audit.record(
        session,
        actor,
        "gateway.revoke",
        "gateway",
        gateway.gateway_id,
        site_id=gateway.site_id,
        detail={"reason": reason},
    )


# ---------------------------------------------------------------- devices


def _register_device(
    session: Session,
    box: SecretBox,
    *,
    kind: DeviceKind,
    device_id: int,
    key: bytes,
    key_id: int,
    key_bytes: int,
    site: Site | None,
    label: str | None,
    actor: Actor,
) -> Device:
    _check_u32("device_id", device_id)
    _check_key("key", key, key_bytes)
    _check_optional("label", label)
    if not 0 <= key_id <= 0xFF:
        raise ProvisioningError("key_id must be 0..255")
    device = Device(
        kind=kind.value,
        device_id=device_id,
        site_id=site.id if site is not None else None,
        label=label,
    )
    session.add(device)
    session.flush()
    enc = box.encrypt(key, context=device_key_context(kind, device_id, key_id))
    session.add(DeviceKey(device_pk=device.id, key_id=key_id, key_enc=enc))
    session.flush()
    audit.record(
        session,
        actor,
        f"{kind.value}.register",
        kind.value,
        device_id_text(device_id),
        site_id=device.site_id,
        detail={"key_id": key_id, "label": label},
    )
    return device


def register_wearable(
    session: Session,
    *,
    box: SecretBox,
    device_id: int,
    key: bytes,
    key_id: int = 1,
    site: Site | None = None,
    label: str | None = None,
    presence_key: bytes | None = None,
    presence_key_id: int = 1,
    actor: Actor = SYSTEM,
) -> Device:
    """A guard wearable with its 32-byte frame key (and optional 16-byte presence key)."""
    device = _register_device(
        session,
        box,
        kind=DeviceKind.WEARABLE,
        device_id=device_id,
        key=key,
        key_id=key_id,
        key_bytes=WEARABLE_KEY_BYTES,
        site=site,
        label=label,
        actor=actor,
    )
    if presence_key is not None:
        _register_device(
            session,
            box,
            kind=DeviceKind.PRESENCE,
            device_id=device_id,
            key=presence_key,
            key_id=presence_key_id,
            key_bytes=BLE_KEY_BYTES,
            site=site,
            label=label,
            actor=actor,
        )
    return device


@dataclass(frozen=True, slots=True)
class WearableSecrets:
    """What a new wearable is flashed with, shown once."""

    device: Device
    key_id: int
    key: bytes
    presence_key: bytes
    mqtt_username: str
    mqtt_password: str


def provision_wearable(
    session: Session,
    *,
    box: SecretBox,
    device_id: int,
    site: Site,
    key_id: int = 1,
    label: str | None = None,
    actor: Actor = SYSTEM,
) -> WearableSecrets:
    """A wearable with fresh frame and presence keys and a broker account (its text id)."""
    key = os.urandom(WEARABLE_KEY_BYTES)
    presence_key = os.urandom(BLE_KEY_BYTES)
    device = register_wearable(
        session,
        box=box,
        device_id=device_id,
        key=key,
        key_id=key_id,
        site=site,
        label=label,
        presence_key=presence_key,
        presence_key_id=key_id,
        actor=actor,
    )
    username = device_id_text(device_id)
    _credential, password = create_mqtt_credential(
        session, site_id=site.id, username=username, device=device, actor=actor
    )
    return WearableSecrets(device, key_id, key, presence_key, username, password)


def register_beacon(
    session: Session,
    *,
    box: SecretBox,
    beacon_id: int,
    key: bytes,
    key_id: int = 1,
    checkpoint: Checkpoint | None = None,
    site: Site | None = None,
    label: str | None = None,
    actor: Actor = SYSTEM,
) -> Device:
    """A BLE checkpoint beacon (16-byte key); links it to ``checkpoint`` when given."""
    device = _register_device(
        session,
        box,
        kind=DeviceKind.BEACON,
        device_id=beacon_id,
        key=key,
        key_id=key_id,
        key_bytes=BLE_KEY_BYTES,
        site=site,
        label=label,
        actor=actor,
    )
    if checkpoint is not None:
        checkpoint.beacon_id = beacon_id
        session.flush()
    return device


def register_equipment_tag(
    session: Session,
    *,
    box: SecretBox,
    tag_id: int,
    key: bytes,
    key_id: int = 1,
    label: str | None = None,
    site: Site | None = None,
    actor: Actor = SYSTEM,
) -> Device:
    """A BLE equipment tag on a radio, flashlight, ... (16-byte key)."""
    return _register_device(
        session,
        box,
        kind=DeviceKind.EQUIPMENT_TAG,
        device_id=tag_id,
        key=key,
        key_id=key_id,
        key_bytes=BLE_KEY_BYTES,
        site=site,
        label=label,
        actor=actor,
    )


KEY_BYTES_BY_KIND = {
    DeviceKind.WEARABLE: WEARABLE_KEY_BYTES,
    DeviceKind.PRESENCE: BLE_KEY_BYTES,
    DeviceKind.BEACON: BLE_KEY_BYTES,
    DeviceKind.EQUIPMENT_TAG: BLE_KEY_BYTES,
}


def find_device(session: Session, kind: DeviceKind, device_id: int) -> Device:
    """The device row of ``kind`` with wire id ``device_id``, else NotFoundError."""
    device = session.scalars(
        select(Device).where(Device.kind == kind.value, Device.device_id == device_id)
    ).one_or_none()
    if device is None:
        raise NotFoundError(f"no {kind.value} {device_id_text(device_id)}")
    return device


def active_key(session: Session, box: SecretBox, device: Device) -> tuple[int, bytes]:
    """The device's newest unretired key: ``(key_id, key)``; signs commands."""
    row = session.execute(
        select(DeviceKey.key_id, DeviceKey.key_enc)
        .where(DeviceKey.device_pk == device.id, DeviceKey.retired_at.is_(None))
        .order_by(DeviceKey.key_id.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        raise ProvisioningError(f"{device.kind} {device_id_text(device.device_id)} has no key")
    kind = DeviceKind(device.kind)
    return row.key_id, box.decrypt(
        row.key_enc, context=device_key_context(kind, device.device_id, row.key_id)
    )


def rotate_device_key(
    session: Session,
    *,
    box: SecretBox,
    device: Device,
    now: datetime,
    overlap_s: int = 0,
    actor: Actor = SYSTEM,
) -> tuple[int, bytes]:
    """A fresh key as ``key_id + 1``; every older key retires by ``now + overlap_s``.

    Returns ``(key_id, key)``; the key is shown once. Frames carry their ``key_id``,
    so a frame signed before the device got its new key still verifies during the
    overlap; after it, only the new key does.
    """
    if device.revoked_at is not None:
        raise ProvisioningError("a revoked device gets no new key")
    if not 0 <= overlap_s <= MAX_ROTATION_OVERLAP_S:
        raise ProvisioningError(f"overlap_s must be 0..{MAX_ROTATION_OVERLAP_S}")
    kind = DeviceKind(device.kind)
    highest = session.scalar(
        select(func.max(DeviceKey.key_id)).where(DeviceKey.device_pk == device.id)
    )
    key_id = (highest or 0) + 1
    if key_id > 0xFF:
        raise ProvisioningError("key_id 255 is used; register the device again under a new id")
    retire_at = now + timedelta(seconds=overlap_s)
    # Every older key retires by retire_at at the latest: a rotation with overlap 0
    # (a suspected leak) also ends what is left of an earlier rotation's overlap.
    session.execute(
        update(DeviceKey)
        .where(
            DeviceKey.device_pk == device.id,
            DeviceKey.retired_at.is_(None) | (DeviceKey.retired_at > retire_at),
        )
        .values(retired_at=retire_at)
    )
    key = os.urandom(KEY_BYTES_BY_KIND[kind])
    session.add(
        DeviceKey(
            device_pk=device.id,
            key_id=key_id,
            key_enc=box.encrypt(key, context=device_key_context(kind, device.device_id, key_id)),
            created_at=now,
        )
    )
    session.flush()
    audit.record(
        session,
        actor,
        f"{kind.value}.rotate",
        kind.value,
        device_id_text(device.device_id),
        site_id=device.site_id,
        detail={
            "key_id": key_id,
            "overlap_s": overlap_s,
            "old_keys_retire_at": retire_at.isoformat(),
        },
    )
    return key_id, key


def revoke_device(
    session: Session, *, device: Device, reason: str, now: datetime, actor: Actor = SYSTEM
) -> None:
    """Refuse everything the device signs from now on and drop its broker account.

    All its keys retire now (so even an ingest that only checks keys refuses it)
    and ``revoked_at``/``revoked_reason`` say why. A wearable's presence identity
    is revoked with it.
    """
    _check_name("reason", reason)
    targets = [device]
    if device.kind == DeviceKind.WEARABLE.value:
        presence = session.scalars(
            select(Device).where(
                Device.kind == DeviceKind.PRESENCE.value, Device.device_id == device.device_id
            )
        ).one_or_none()
        if presence is not None:
            targets.append(presence)
    for target in targets:
        target.revoked_at = target.revoked_at or now
        target.revoked_reason = reason
        session.execute(
            update(DeviceKey)
            .where(
                DeviceKey.device_pk == target.id,
                (DeviceKey.retired_at.is_(None)) | (DeviceKey.retired_at > now),
            )
            .values(retired_at=now)
        )
        session.execute(
            update(MqttCredential)
            .where(MqttCredential.device_pk == target.id, MqttCredential.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    session.flush()
    audit.record(
        session,
        actor,
        f"{device.kind}.revoke",
        device.kind,
        device_id_text(device.device_id),
        site_id=device.site_id,
        detail={"reason": reason},
    )


def sign_command(
    session: Session,
    *,
    box: SecretBox,
    device: Device,
    kind: int,
    body: bytes,
    now: datetime,
    valid_for_s: int,
    actor: Actor = SYSTEM,
) -> DeviceCommand:
    """Sign a command for a wearable with its newest key; ``cmd_seq`` is the next one.

    The frame (patrol_protocol.commands) is stored, so what was sent is on record;
    the caller publishes it to ``patrol/v1/dev/<id>/cmd`` through the gateway.
    """
    if device.kind != DeviceKind.WEARABLE.value:
        raise ProvisioningError("commands go to wearables")
    if device.revoked_at is not None:
        raise ProvisioningError("the wearable is revoked")
    key_id, key = active_key(session, box, device)
    last = session.scalar(
        select(func.max(DeviceCommand.cmd_seq)).where(DeviceCommand.device_pk == device.id)
    )
    cmd_seq = (last or 0) + 1
    raw = encode_command(
        kind=kind,
        key_id=key_id,
        device_id=device.device_id,
        cmd_seq=cmd_seq,
        issued_s=int(now.timestamp()),
        valid_for_s=valid_for_s,
        body=body,
        key=key,
    )
    command = DeviceCommand(
        device_pk=device.id,
        cmd_seq=cmd_seq,
        kind=kind,
        key_id=key_id,
        issued_at=now,
        raw=raw,
        issued_by=actor.name,
    )
    session.add(command)
    session.flush()
    audit.record(
        session,
        actor,
        "wearable.command",
        "wearable",
        device_id_text(device.device_id),
        site_id=device.site_id,
        detail={"kind": kind, "cmd_seq": cmd_seq, "key_id": key_id, "valid_for_s": valid_for_s},
    )
    return command


# ---------------------------------------------------------------- NFC tags


def site_master_key(
    session: Session, *, box: SecretBox, site: Site, actor: Actor = SYSTEM
) -> tuple[int, bytes]:
    """The site's current AN10922 master key ``(version, key)``; made on first use."""
    row = session.scalars(
        select(SiteMasterKey)
        .where(SiteMasterKey.site_id == site.id, SiteMasterKey.retired_at.is_(None))
        .order_by(SiteMasterKey.version.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        return rotate_site_master_key(session, box=box, site=site, now=utcnow(), actor=actor)
    return row.version, box.decrypt(row.key_enc, context=master_key_context(site.id, row.version))


def rotate_site_master_key(
    session: Session, *, box: SecretBox, site: Site, now: datetime, actor: Actor = SYSTEM
) -> tuple[int, bytes]:
    """A new master key version for the site; tags registered or rotated later use it.

    Tags keep the keys they were written with (stored per tag) until they are rotated.
    """
    highest = session.scalar(
        select(func.max(SiteMasterKey.version)).where(SiteMasterKey.site_id == site.id)
    )
    version = (highest or 0) + 1
    session.execute(
        update(SiteMasterKey)
        .where(SiteMasterKey.site_id == site.id, SiteMasterKey.retired_at.is_(None))
        .values(retired_at=now)
    )
    key = os.urandom(SITE_MASTER_KEY_BYTES)
    session.add(
        SiteMasterKey(
            site_id=site.id,
            version=version,
            key_enc=box.encrypt(key, context=master_key_context(site.id, version)),
            created_at=now,
        )
    )
    session.flush()
    audit.record(
        session,
        actor,
        "site.master_key_rotate",
        "site",
        site.id,
        site_id=site.id,
        detail={"version": version},
    )
    return version, key


def diversification_input(uid: bytes, key_no: int, site_id: int) -> bytes:
    """AN10922's M for one tag key: uid || key number || site id (u32) || system id."""
    _check_uid(uid)
    return uid + bytes([key_no]) + site_id.to_bytes(4, "big") + DIVERSIFICATION_SYSTEM_ID


def diversified_tag_keys(master_key: bytes, uid: bytes, site_id: int) -> tuple[bytes, bytes]:
    """The (SDMMetaReadKey, SDMFileReadKey) AN10922 derives for a tag of a site."""
    return (
        an10922_diversify_aes128(
            master_key, diversification_input(uid, NTAG424_META_KEY_NO, site_id)
        ),
        an10922_diversify_aes128(
            master_key, diversification_input(uid, NTAG424_FILE_KEY_NO, site_id)
        ),
    )


def register_ntag424(
    session: Session,
    *,
    box: SecretBox,
    uid: bytes,
    meta_read_key: bytes,
    file_read_key: bytes,
    checkpoint: Checkpoint | None = None,
    site: Site | None = None,
    key_source: KeySource | None = None,
    master_key_version: int | None = None,
    actor: Actor = SYSTEM,
) -> NfcTag:
    """An NTAG 424 DNA checkpoint tag with its SUN keys (kept encrypted)."""
    _check_uid(uid)
    _check_key("meta_read_key", meta_read_key, NTAG424_KEY_BYTES)
    _check_key("file_read_key", file_read_key, NTAG424_KEY_BYTES)
    tag = NfcTag(
        uid=uid,
        tag_type=TagType.NTAG424.value,
        meta_read_key_enc=box.encrypt(meta_read_key, context=tag_key_context(uid, "meta")),
        file_read_key_enc=box.encrypt(file_read_key, context=tag_key_context(uid, "file")),
        site_id=site.id if site is not None else None,
        key_source=key_source.value if key_source is not None else None,
        master_key_version=master_key_version,
    )
    session.add(tag)
    if checkpoint is not None:
        checkpoint.nfc_uid = uid
    session.flush()
    audit.record(
        session,
        actor,
        "ntag424.register",
        "nfc_tag",
        uid.hex(),
        site_id=tag.site_id,
        detail={
            "key_source": tag.key_source,
            "master_key_version": master_key_version,
            "checkpoint_id": checkpoint.id if checkpoint is not None else None,
        },
    )
    return tag


def _tag_keys(
    session: Session, box: SecretBox, site: Site, uid: bytes, source: KeySource, actor: Actor
) -> tuple[bytes, bytes, int | None]:
    if source is KeySource.DIVERSIFIED:
        version, master = site_master_key(session, box=box, site=site, actor=actor)
        meta, file = diversified_tag_keys(master, uid, site.id)
        return meta, file, version
    return os.urandom(NTAG424_KEY_BYTES), os.urandom(NTAG424_KEY_BYTES), None


def provision_ntag424(
    session: Session,
    *,
    box: SecretBox,
    site: Site,
    uid: bytes,
    source: KeySource = KeySource.GENERATED,
    checkpoint: Checkpoint | None = None,
    actor: Actor = SYSTEM,
) -> tuple[NfcTag, bytes, bytes]:
    """Register an NTAG 424 DNA tag with generated or diversified keys: ``(tag, meta, file)``."""
    _check_uid(uid)
    meta, file, version = _tag_keys(session, box, site, uid, source, actor)
    tag = register_ntag424(
        session,
        box=box,
        uid=uid,
        meta_read_key=meta,
        file_read_key=file,
        checkpoint=checkpoint,
        site=site,
        key_source=source,
        master_key_version=version,
        actor=actor,
    )
    return tag, meta, file


def register_ntag21x(
    session: Session,
    *,
    uid: bytes,
    checkpoint: Checkpoint | None = None,
    site: Site | None = None,
    actor: Actor = SYSTEM,
) -> NfcTag:
    """A plain NTAG21x checkpoint tag: UID only, its scans are low assurance."""
    _check_uid(uid)
    tag = NfcTag(uid=uid, tag_type=TagType.NTAG21X.value, site_id=site.id if site else None)
    session.add(tag)
    if checkpoint is not None:
        checkpoint.nfc_uid = uid
    session.flush()
    audit.record(
        session,
        actor,
        "ntag21x.register",
        "nfc_tag",
        uid.hex(),
        site_id=tag.site_id,
        detail={"checkpoint_id": checkpoint.id if checkpoint is not None else None},
    )
    return tag


def find_tag(session: Session, uid: bytes) -> NfcTag:
    """The NFC tag with ``uid``, else NotFoundError."""
    tag = session.scalars(select(NfcTag).where(NfcTag.uid == uid)).one_or_none()
    if tag is None:
        raise NotFoundError(f"no NFC tag {uid.hex()}")
    return tag


def rotate_tag_keys(
    session: Session,
    *,
    box: SecretBox,
    tag: NfcTag,
    site: Site,
    source: KeySource = KeySource.GENERATED,
    actor: Actor = SYSTEM,
) -> tuple[bytes, bytes]:
    """New SDM keys for an NTAG 424 tag, replacing the stored ones at once.

    The technician writes them to the tag (ChangeKey) in the same visit; SUN
    messages made with the old keys and uploaded later no longer verify.
    """
    if tag.tag_type != TagType.NTAG424.value:
        raise ProvisioningError("only NTAG 424 DNA tags have keys")
    if tag.revoked_at is not None:
        raise ProvisioningError("the tag is revoked")
    meta, file, version = _tag_keys(session, box, site, tag.uid, source, actor)
    tag.meta_read_key_enc = box.encrypt(meta, context=tag_key_context(tag.uid, "meta"))
    tag.file_read_key_enc = box.encrypt(file, context=tag_key_context(tag.uid, "file"))
    tag.key_source = source.value
    tag.master_key_version = version
    session.flush()
    audit.record(
        session,
        actor,
        "ntag424.rotate",
        "nfc_tag",
        tag.uid.hex(),
        site_id=tag.site_id,
        detail={"key_source": source.value, "master_key_version": version},
    )
    return meta, file


def revoke_tag(
    session: Session, *, tag: NfcTag, reason: str, now: datetime, actor: Actor = SYSTEM
) -> None:
    """Refuse scans of the tag from now on (a lost, cloned or removed checkpoint tag)."""
    _check_name("reason", reason)
    tag.revoked_at = tag.revoked_at or now
    tag.revoked_reason = reason
    session.flush()
    audit.record(
        session,
        actor,
        f"{tag.tag_type}.revoke",
        "nfc_tag",
        tag.uid.hex(),
        site_id=tag.site_id,
        detail={"reason": reason},
    )
