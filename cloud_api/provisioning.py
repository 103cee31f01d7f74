"""Plain provisioning functions (used by the demo, the tests and later the REST API).

Each takes an open :class:`~sqlalchemy.orm.Session` and keyword-only values,
flushes so ids exist, and leaves the commit to the caller. Device and tag keys
are encrypted with the :class:`~cloud_api.crypto_store.SecretBox` before they
touch a row; a gateway's API key is returned once and only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy.orm import Session

from cloud_api.crypto_store import SecretBox
from cloud_api.models import (
    Checkpoint,
    Device,
    DeviceKey,
    DeviceKind,
    Gateway,
    NfcTag,
    Post,
    Site,
    TagType,
)
from patrol_protocol.frames import UID_LENGTHS

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


class ProvisioningError(ValueError):
    """A provisioning request is invalid (wrong key length, bad uid, ...)."""


def hash_api_key(api_key: str) -> str:
    """Hex SHA-256 of an API key: what the gateways table stores and looks up."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def device_key_context(kind: DeviceKind, device_id: int, key_id: int) -> bytes:
    """AEAD associated data binding an encrypted device key to its row's identity."""
    return f"device:{kind.value}:{device_id:08x}:{key_id}".encode()


def tag_key_context(uid: bytes, which: str) -> bytes:
    """AEAD associated data binding an encrypted NTAG 424 key to its tag and role."""
    return f"ntag424:{uid.hex()}:{which}".encode()


def _check_key(name: str, key: bytes, size: int) -> None:
    if not isinstance(key, bytes) or len(key) != size:
        raise ProvisioningError(f"{name} must be {size} bytes")


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ProvisioningError(f"{name} must be an unsigned 32-bit integer")


def _check_uid(uid: bytes) -> None:
    if not isinstance(uid, bytes) or len(uid) not in UID_LENGTHS:
        raise ProvisioningError("uid must be 4, 7 or 10 bytes")


def create_site(session: Session, *, name: str, timezone: str = "UTC") -> Site:
    """A customer site (IANA time zone name)."""
    site = Site(name=name, timezone=timezone)
    session.add(site)
    session.flush()
    return site


def create_post(session: Session, *, site: Site, name: str) -> Post:
    """A guard post at a site."""
    post = Post(site_id=site.id, name=name)
    session.add(post)
    session.flush()
    return post


def create_checkpoint(
    session: Session,
    *,
    post: Post,
    name: str,
    nfc_uid: bytes | None = None,
    beacon_id: int | None = None,
) -> Checkpoint:
    """A checkpoint of a post, proven by an NFC tag uid and/or a BLE beacon id."""
    if nfc_uid is not None:
        _check_uid(nfc_uid)
    if beacon_id is not None:
        _check_u32("beacon_id", beacon_id)
    checkpoint = Checkpoint(post_id=post.id, name=name, nfc_uid=nfc_uid, beacon_id=beacon_id)
    session.add(checkpoint)
    session.flush()
    return checkpoint


def create_gateway(session: Session, *, gateway_id: str, site: Site) -> tuple[Gateway, str]:
    """Register an edge gateway; returns it and its API key, which is never shown again."""
    if not gateway_id or len(gateway_id) > 100:
        raise ProvisioningError("gateway_id must be 1..100 characters")
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_RANDOM_BYTES)
    gateway = Gateway(gateway_id=gateway_id, site_id=site.id, api_key_sha256=hash_api_key(api_key))
    session.add(gateway)
    session.flush()
    return gateway, api_key


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
) -> Device:
    _check_u32("device_id", device_id)
    _check_key("key", key, key_bytes)
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
        )
    return device


def register_beacon(
    session: Session,
    *,
    box: SecretBox,
    beacon_id: int,
    key: bytes,
    key_id: int = 1,
    checkpoint: Checkpoint | None = None,
    site: Site | None = None,
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
        label=None,
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
    )


def register_ntag424(
    session: Session,
    *,
    box: SecretBox,
    uid: bytes,
    meta_read_key: bytes,
    file_read_key: bytes,
    checkpoint: Checkpoint | None = None,
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
    )
    session.add(tag)
    if checkpoint is not None:
        checkpoint.nfc_uid = uid
    session.flush()
    return tag


def register_ntag21x(
    session: Session, *, uid: bytes, checkpoint: Checkpoint | None = None
) -> NfcTag:
    """A plain NTAG21x checkpoint tag: UID only, its scans are low assurance."""
    _check_uid(uid)
    tag = NfcTag(uid=uid, tag_type=TagType.NTAG21X.value)
    session.add(tag)
    if checkpoint is not None:
        checkpoint.nfc_uid = uid
    session.flush()
    return tag
