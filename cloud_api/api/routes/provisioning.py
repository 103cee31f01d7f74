"""The technicians' provisioning API (issue 5 item 4): organisation, devices, keys, broker.

Who may call: technicians scoped to the object's site, and admins
(``require_roles(Role.TECHNICIAN)`` then the site check); creating companies,
customers and sites is for admins only. A site outside the caller's scope answers
404 like a missing one. Every action writes an audit row (``GET
/sites/{site_id}/audit``) in the same transaction.

Secrets (device keys, tag keys, API keys, MQTT passwords) are generated here and
appear only in the 2xx response that created them; the store keeps hashes of what
it only compares and encrypts what it must use (:mod:`cloud_api.provisioning`).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud_api import audit, provisioning, provisioning_csv
from cloud_api.api.deps import (
    AppContext,
    ContextDep,
    GatewayDep,
    Principal,
    SessionDep,
    require_roles,
    require_site,
)
from cloud_api.api.problems import problem_responses
from cloud_api.audit import Actor
from cloud_api.models import (
    Checkpoint,
    Company,
    Customer,
    Device,
    DeviceKind,
    EquipmentItem,
    EquipmentKind,
    Gateway,
    Guard,
    MqttCredential,
    NfcTag,
    Post,
    Role,
    Site,
    User,
)
from cloud_api.provisioning import KeySource, NotFoundError, ProvisioningError
from patrol_protocol.commands import (
    LOCATE_MAX_S,
    CommandKind,
    encode_locate,
    encode_set_config,
    encode_set_time,
)
from patrol_protocol.errors import ProtocolError
from patrol_protocol.ids import device_id_text
from patrol_protocol.topics import cmd_topic

router = APIRouter(tags=["provisioning"], responses=problem_responses(400, 401, 403, 404, 409, 422))

Technician = Annotated[Principal, Depends(require_roles(Role.TECHNICIAN))]
"""Technicians (then scoped to the site) and admins."""
AuditReader = Annotated[Principal, Depends(require_roles(Role.TECHNICIAN, Role.SUPERVISOR))]
"""Who reads a site's audit log: its technicians and supervisors, and admins."""
Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]

DeviceIdText = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}$")]
UidHex = Annotated[str, StringConstraints(pattern=r"^([0-9a-f]{8}|[0-9a-f]{14}|[0-9a-f]{20})$")]
_TEXT = r"^[^\x00-\x1f\x7f]*$"
"""Free text: no control characters (PostgreSQL refuses NUL; files and logs break on newlines)."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_TEXT)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_TEXT)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_TEXT)]
AccountName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
"""Gateway ids and broker usernames."""
MAX_ID = 2**62
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
"""A row id (bounded so that no database rejects it as out of range)."""
SiteId = Annotated[int, Path(ge=1, le=MAX_ID)]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID)]
GatewayIdPath = Annotated[
    str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
UsernamePath = GatewayIdPath


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def actor_of(principal: Principal) -> Actor:
    """The audit actor for a person (or the admin token)."""
    return Actor(principal.username, principal.role.value, principal.user_id)


@contextmanager
def _transaction(session: Session, what: str) -> Iterator[None]:
    """One transaction; provisioning errors become 404 / 409 / 422 problems."""
    try:
        with session.begin():
            yield
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except ProvisioningError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    except IntegrityError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"{what} already exists") from exc


def _site(session: Session, principal: Principal, site_id: int) -> Site:
    """The site if it exists and is in the caller's scope, else 404 "no site N"."""
    require_site(principal, site_id)
    site = session.get(Site, site_id)
    if site is None:
        raise NotFoundError(f"no site {site_id}")
    return site


def _scoped(principal: Principal, site_id: int | None, missing: str) -> None:
    """404 ``missing`` unless the object's site is the caller's (admins: any)."""
    if principal.role is Role.ADMIN:
        return
    if site_id is None or not principal.may_see(site_id):
        raise NotFoundError(missing)


def _device(session: Session, principal: Principal, kind: DeviceKind, device_id: str) -> Device:
    try:
        device = provisioning.find_device(session, kind, int(device_id, 16))
    except NotFoundError:
        raise NotFoundError(f"no {kind.value} {device_id}") from None
    _scoped(principal, device.site_id, f"no {kind.value} {device_id}")
    return device


def _gateway(session: Session, principal: Principal, gateway_id: str) -> Gateway:
    gateway = session.scalars(select(Gateway).where(Gateway.gateway_id == gateway_id)).first()
    if gateway is None:
        raise NotFoundError(f"no gateway {gateway_id}")
    _scoped(principal, gateway.site_id, f"no gateway {gateway_id}")
    return gateway


def _checkpoint(session: Session, site: Site, checkpoint_id: int | None) -> Checkpoint | None:
    if checkpoint_id is None:
        return None
    checkpoint = session.get(Checkpoint, checkpoint_id)
    post = session.get(Post, checkpoint.post_id) if checkpoint is not None else None
    if checkpoint is None or post is None or post.site_id != site.id:
        raise NotFoundError(f"no checkpoint {checkpoint_id} at site {site.id}")
    return checkpoint


def _guard(session: Session, site_id: int, guard_id: int) -> Guard:
    guard = session.get(Guard, guard_id)
    if guard is None or guard.site_id != site_id:
        raise NotFoundError(f"no guard {guard_id} at site {site_id}")
    return guard


# ---------------------------------------------------------------- organisation (admins)


class CompanyIn(BaseModel):
    name: Label


class CustomerIn(BaseModel):
    name: Label
    company_id: Id | None = None


class Created(BaseModel):
    """The id of what was created."""

    id: int
    name: str


class SiteIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Harbour depot", "timezone": "Europe/Berlin"}]}
    )

    name: Name
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_TEXT)] = "UTC"
    customer_id: Id | None = None


class SiteOut(BaseModel):
    id: int
    name: str
    timezone: str


@router.post("/companies", status_code=status.HTTP_201_CREATED, summary="Create the company")
def post_company(principal: Admin, session: SessionDep, body: CompanyIn) -> Created:
    """The security company operating the service (admins)."""
    with _transaction(session, f"company {body.name!r}"):
        company = provisioning.create_company(session, name=body.name, actor=actor_of(principal))
    return Created(id=company.id, name=company.name)


@router.post("/customers", status_code=status.HTTP_201_CREATED, summary="Create a customer")
def post_customer(principal: Admin, session: SessionDep, body: CustomerIn) -> Created:
    """A customer of the company (admins)."""
    with _transaction(session, f"customer {body.name!r}"):
        company = None
        if body.company_id is not None:
            company = session.get(Company, body.company_id)
            if company is None:
                raise NotFoundError(f"no company {body.company_id}")
        customer = provisioning.create_customer(
            session, name=body.name, company=company, actor=actor_of(principal)
        )
    return Created(id=customer.id, name=customer.name)


@router.post(
    "/sites", status_code=status.HTTP_201_CREATED, response_model=SiteOut, summary="Create a site"
)
def post_site(principal: Admin, session: SessionDep, body: SiteIn) -> SiteOut:
    """Create a customer site (admins)."""
    with _transaction(session, f"site {body.name!r}"):
        customer = None
        if body.customer_id is not None:
            customer = session.get(Customer, body.customer_id)
            if customer is None:
                raise NotFoundError(f"no customer {body.customer_id}")
        site = provisioning.create_site(
            session,
            name=body.name,
            timezone=body.timezone,
            customer=customer,
            actor=actor_of(principal),
        )
    return SiteOut(id=site.id, name=site.name, timezone=site.timezone)


# ---------------------------------------------------------------- zones, guards, equipment


class ZoneIn(BaseModel):
    name: Label
    post_id: Id | None = None


class GuardIn(BaseModel):
    name: Label
    employee_no: (
        Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=_TEXT)] | None
    ) = None
    username: (
        Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_TEXT)] | None
    ) = Field(default=None, description="the guard's login (role guard), if they have one")


class EquipmentIn(BaseModel):
    kind: EquipmentKind
    label: Label
    serial: (
        Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_TEXT)] | None
    ) = None
    tag_id: DeviceIdText | None = Field(
        default=None, description="the BLE equipment tag fixed to it (registered before)"
    )


class EquipmentOut(BaseModel):
    id: int
    site_id: int
    kind: str
    label: str
    tag_id: str | None


class AssignIn(BaseModel):
    guard_id: Id
    at: datetime | None = Field(default=None, description="default: now")


class Assignment(BaseModel):
    id: int
    guard_id: int
    started_at: datetime


@router.post("/sites/{site_id}/zones", status_code=status.HTTP_201_CREATED, summary="Create a zone")
def post_zone(principal: Technician, session: SessionDep, site_id: SiteId, body: ZoneIn) -> Created:
    """A named area of the site (optionally of one of its posts)."""
    with _transaction(session, f"zone {body.name!r}"):
        site = _site(session, principal, site_id)
        post = None
        if body.post_id is not None:
            post = session.get(Post, body.post_id)
            if post is None or post.site_id != site.id:
                raise NotFoundError(f"no post {body.post_id} at site {site_id}")
        zone = provisioning.create_zone(
            session, site=site, name=body.name, post=post, actor=actor_of(principal)
        )
    return Created(id=zone.id, name=zone.name)


@router.post(
    "/sites/{site_id}/guards", status_code=status.HTTP_201_CREATED, summary="Create a guard"
)
def post_guard(
    principal: Technician, session: SessionDep, site_id: SiteId, body: GuardIn
) -> Created:
    """A guard of the site, optionally linked to their login."""
    with _transaction(session, "guard"):
        site = _site(session, principal, site_id)
        user = None
        if body.username is not None:
            user = session.scalars(select(User).where(User.username == body.username)).first()
            if user is None or user.role != Role.GUARD.value:
                raise NotFoundError(f"no guard login {body.username!r}")
        guard = provisioning.create_guard(
            session,
            site=site,
            name=body.name,
            employee_no=body.employee_no,
            user=user,
            actor=actor_of(principal),
        )
    return Created(id=guard.id, name=guard.name)


@router.post(
    "/sites/{site_id}/equipment",
    status_code=status.HTTP_201_CREATED,
    summary="Register an equipment item",
)
def post_equipment(
    principal: Technician, session: SessionDep, site_id: SiteId, body: EquipmentIn
) -> EquipmentOut:
    """A radio, flashlight, baton, ... of the site, with the BLE tag fixed to it."""
    with _transaction(session, "equipment tag link"):
        site = _site(session, principal, site_id)
        tag = None
        if body.tag_id is not None:
            tag = _device(session, principal, DeviceKind.EQUIPMENT_TAG, body.tag_id)
        item = provisioning.create_equipment_item(
            session,
            site=site,
            kind=body.kind,
            label=body.label,
            serial=body.serial,
            tag=tag,
            actor=actor_of(principal),
        )
    return EquipmentOut(
        id=item.id, site_id=item.site_id, kind=item.kind, label=item.label, tag_id=body.tag_id
    )


def _item(session: Session, principal: Principal, item_id: int) -> EquipmentItem:
    item = session.get(EquipmentItem, item_id)
    if item is None:
        raise NotFoundError(f"no equipment item {item_id}")
    _scoped(principal, item.site_id, f"no equipment item {item_id}")
    return item


@router.post("/equipment/{item_id}/assign", summary="Hand an item to a guard")
def post_equipment_assign(
    principal: Technician, ctx: ContextDep, session: SessionDep, item_id: ItemId, body: AssignIn
) -> Assignment:
    """The guard carries the item from ``at`` (default now); a previous holder returns it."""
    at = body.at or ctx.clock()
    with _transaction(session, "assignment"):
        item = _item(session, principal, item_id)
        guard = _guard(session, item.site_id, body.guard_id)
        row = provisioning.assign_equipment(
            session, item=item, guard=guard, at=at, actor=actor_of(principal)
        )
    return Assignment(id=row.id, guard_id=row.guard_id, started_at=row.assigned_at)


class Returned(BaseModel):
    item_id: int
    was_assigned: bool


@router.post("/equipment/{item_id}/return", summary="An item comes back")
def post_equipment_return(
    principal: Technician, ctx: ContextDep, session: SessionDep, item_id: ItemId
) -> Returned:
    """End the item's open assignment."""
    with _transaction(session, "return"):
        item = _item(session, principal, item_id)
        closed = provisioning.return_equipment(
            session, item=item, at=ctx.clock(), actor=actor_of(principal)
        )
    return Returned(item_id=item_id, was_assigned=closed)


@router.post("/wearables/{device_id}/assign", summary="Hand a wearable to a guard")
def post_wearable_assign(
    principal: Technician,
    ctx: ContextDep,
    session: SessionDep,
    device_id: DeviceIdText,
    body: AssignIn,
) -> Assignment:
    """The guard wears the device from ``at`` (default now); its previous assignment ends."""
    at = body.at or ctx.clock()
    with _transaction(session, "assignment"):
        device = _device(session, principal, DeviceKind.WEARABLE, device_id)
        assert device.site_id is not None
        guard = _guard(session, device.site_id, body.guard_id)
        row = provisioning.assign_wearable(
            session, guard=guard, device=device, at=at, actor=actor_of(principal)
        )
    return Assignment(id=row.id, guard_id=row.guard_id, started_at=row.started_at)


# ---------------------------------------------------------------- gateways


class GatewayIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"gateway_id": "gw-harbour-1", "site_id": 1}]}
    )

    gateway_id: AccountName
    site_id: Id


class GatewayCreated(BaseModel):
    gateway_id: str
    site_id: int
    api_key: str = Field(description="shown once; only its SHA-256 is stored")
    mqtt_username: str
    mqtt_password: str = Field(description="shown once; stored as a Mosquitto $7$ hash")


class GatewayKey(BaseModel):
    gateway_id: str
    api_key: str = Field(description="shown once; the previous key is refused from now on")


class RevokeIn(BaseModel):
    reason: Reason


class Revoked(BaseModel):
    id: str
    revoked_at: datetime
    reason: str


@router.post(
    "/gateways",
    status_code=status.HTTP_201_CREATED,
    response_model=GatewayCreated,
    summary="Register a gateway",
)
def post_gateway(principal: Technician, session: SessionDep, body: GatewayIn) -> GatewayCreated:
    """An edge gateway: its API key and broker password are in this response and nowhere else."""
    with _transaction(session, f"gateway {body.gateway_id!r}"):
        site = _site(session, principal, body.site_id)
        made = provisioning.provision_gateway(
            session, gateway_id=body.gateway_id, site=site, actor=actor_of(principal)
        )
    return GatewayCreated(
        gateway_id=made.gateway.gateway_id,
        site_id=made.gateway.site_id,
        api_key=made.api_key,
        mqtt_username=made.mqtt_username,
        mqtt_password=made.mqtt_password,
    )


@router.post("/gateways/{gateway_id}/rotate", summary="New API key for a gateway")
def post_gateway_rotate(
    principal: Technician, session: SessionDep, gateway_id: GatewayIdPath
) -> GatewayKey:
    """Replace the gateway's API key; the old one is refused as soon as this returns."""
    with _transaction(session, "key"):
        gateway = _gateway(session, principal, gateway_id)
        api_key = provisioning.rotate_gateway_key(
            session, gateway=gateway, actor=actor_of(principal)
        )
    return GatewayKey(gateway_id=gateway_id, api_key=api_key)


@router.post("/gateways/{gateway_id}/revoke", summary="Revoke a gateway")
def post_gateway_revoke(
    principal: Technician,
    ctx: ContextDep,
    session: SessionDep,
    gateway_id: GatewayIdPath,
    body: RevokeIn,
) -> Revoked:
    """Refuse the gateway's API key and remove its broker account from the export."""
    now = ctx.clock()
    with _transaction(session, "revocation"):
        gateway = _gateway(session, principal, gateway_id)
        provisioning.revoke_gateway(
            session, gateway=gateway, reason=body.reason, now=now, actor=actor_of(principal)
        )
        revoked_at = gateway.revoked_at or now
    return Revoked(id=gateway_id, revoked_at=revoked_at, reason=body.reason)


# ---------------------------------------------------------------- devices


class WearableIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"device_id": "0000b001", "site_id": 1, "label": "W-12"}]}
    )

    device_id: DeviceIdText
    site_id: Id
    key_id: Annotated[int, Field(ge=0, le=255)] = 1
    label: Annotated[str, StringConstraints(max_length=200)] | None = None


class WearableCreated(BaseModel):
    device_id: str
    key_id: int
    key_b64: str = Field(description="the 32-byte frame key, shown once; flash it now")
    presence_key_b64: str = Field(description="the 16-byte BLE presence key, shown once")
    mqtt_username: str
    mqtt_password: str = Field(description="shown once; stored as a Mosquitto $7$ hash")


class BleDeviceIn(BaseModel):
    site_id: Id
    key_id: Annotated[int, Field(ge=0, le=255)] = 1
    label: Annotated[str, StringConstraints(max_length=200)] | None = None


class BeaconIn(BleDeviceIn):
    beacon_id: DeviceIdText
    checkpoint_id: Id | None = None


class EquipmentTagIn(BleDeviceIn):
    tag_id: DeviceIdText


class KeyCreated(BaseModel):
    device_id: str
    kind: str
    key_id: int
    key_b64: str = Field(description="the device key, shown once")


class RotateIn(BaseModel):
    overlap_s: Annotated[int, Field(ge=0, le=provisioning.MAX_ROTATION_OVERLAP_S)] = Field(
        default=0,
        description="the old key keeps verifying this long (frames carry their key_id); "
        "0 refuses it at once",
    )


class Rotated(KeyCreated):
    old_keys_retire_at: datetime


class DevicePath(StrEnum):
    """Device kinds addressable under /devices/{kind}/..."""

    WEARABLE = DeviceKind.WEARABLE.value
    PRESENCE = DeviceKind.PRESENCE.value
    BEACON = DeviceKind.BEACON.value
    EQUIPMENT_TAG = DeviceKind.EQUIPMENT_TAG.value


@router.post(
    "/wearables",
    status_code=status.HTTP_201_CREATED,
    response_model=WearableCreated,
    summary="Register a wearable",
)
def post_wearable(
    principal: Technician, ctx: ContextDep, session: SessionDep, body: WearableIn
) -> WearableCreated:
    """A wearable with fresh frame and presence keys and its broker account (returned once)."""
    with _transaction(session, f"wearable {body.device_id}"):
        site = _site(session, principal, body.site_id)
        made = provisioning.provision_wearable(
            session,
            box=ctx.box,
            device_id=int(body.device_id, 16),
            site=site,
            key_id=body.key_id,
            label=body.label,
            actor=actor_of(principal),
        )
    return WearableCreated(
        device_id=device_id_text(made.device.device_id),
        key_id=made.key_id,
        key_b64=_b64(made.key),
        presence_key_b64=_b64(made.presence_key),
        mqtt_username=made.mqtt_username,
        mqtt_password=made.mqtt_password,
    )


def _new_ble_key() -> bytes:
    return os.urandom(provisioning.BLE_KEY_BYTES)


@router.post(
    "/beacons",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    summary="Register a BLE checkpoint beacon",
)
def post_beacon(
    principal: Technician, ctx: ContextDep, session: SessionDep, body: BeaconIn
) -> KeyCreated:
    """A BLE checkpoint beacon with a fresh 16-byte key (returned once)."""
    key = _new_ble_key()
    with _transaction(session, f"beacon {body.beacon_id}"):
        site = _site(session, principal, body.site_id)
        provisioning.register_beacon(
            session,
            box=ctx.box,
            beacon_id=int(body.beacon_id, 16),
            key=key,
            key_id=body.key_id,
            checkpoint=_checkpoint(session, site, body.checkpoint_id),
            site=site,
            label=body.label,
            actor=actor_of(principal),
        )
    return KeyCreated(
        device_id=body.beacon_id, kind="beacon", key_id=body.key_id, key_b64=_b64(key)
    )


@router.post(
    "/equipment-tags",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    summary="Register a BLE equipment tag",
)
def post_equipment_tag(
    principal: Technician, ctx: ContextDep, session: SessionDep, body: EquipmentTagIn
) -> KeyCreated:
    """A BLE tag for a radio, flashlight, ... with a fresh 16-byte key (returned once)."""
    key = _new_ble_key()
    with _transaction(session, f"equipment tag {body.tag_id}"):
        site = _site(session, principal, body.site_id)
        provisioning.register_equipment_tag(
            session,
            box=ctx.box,
            tag_id=int(body.tag_id, 16),
            key=key,
            key_id=body.key_id,
            label=body.label,
            site=site,
            actor=actor_of(principal),
        )
    return KeyCreated(
        device_id=body.tag_id, kind="equipment_tag", key_id=body.key_id, key_b64=_b64(key)
    )


@router.post("/devices/{kind}/{device_id}/rotate", summary="Rotate a device key")
def post_device_rotate(
    principal: Technician,
    ctx: ContextDep,
    session: SessionDep,
    kind: DevicePath,
    device_id: DeviceIdText,
    body: RotateIn,
) -> Rotated:
    """A new key as ``key_id + 1`` (returned once); older keys retire after ``overlap_s``."""
    now = ctx.clock()
    with _transaction(session, "key"):
        device = _device(session, principal, DeviceKind(kind.value), device_id)
        key_id, key = provisioning.rotate_device_key(
            session,
            box=ctx.box,
            device=device,
            now=now,
            overlap_s=body.overlap_s,
            actor=actor_of(principal),
        )
    return Rotated(
        device_id=device_id,
        kind=kind.value,
        key_id=key_id,
        key_b64=_b64(key),
        old_keys_retire_at=now + timedelta(seconds=body.overlap_s),
    )


@router.post("/devices/{kind}/{device_id}/revoke", summary="Revoke a device")
def post_device_revoke(
    principal: Technician,
    ctx: ContextDep,
    session: SessionDep,
    kind: DevicePath,
    device_id: DeviceIdText,
    body: RevokeIn,
) -> Revoked:
    """Refuse everything the device signs from now on; drop its broker account."""
    now = ctx.clock()
    with _transaction(session, "revocation"):
        device = _device(session, principal, DeviceKind(kind.value), device_id)
        provisioning.revoke_device(
            session, device=device, reason=body.reason, now=now, actor=actor_of(principal)
        )
        revoked_at = device.revoked_at or now
    return Revoked(id=device_id, revoked_at=revoked_at, reason=body.reason)


class MqttPassword(BaseModel):
    mqtt_username: str
    mqtt_password: str = Field(description="shown once; the old one stops with the next export")


@router.post("/mqtt-accounts/{username}/rotate", summary="New broker password")
def post_mqtt_rotate(
    principal: Technician, ctx: ContextDep, session: SessionDep, username: UsernamePath
) -> MqttPassword:
    """Replace a wearable's or gateway's MQTT password (the gateway re-fetches the export)."""
    with _transaction(session, "password"):
        credential = session.scalars(
            select(MqttCredential).where(MqttCredential.username == username)
        ).first()
        if credential is None:
            raise NotFoundError(f"no MQTT account {username}")
        _scoped(principal, credential.site_id, f"no MQTT account {username}")
        password = provisioning.rotate_mqtt_password(
            session, username=username, now=ctx.clock(), actor=actor_of(principal)
        )
    return MqttPassword(mqtt_username=username, mqtt_password=password)


# ---------------------------------------------------------------- NFC tags


class NfcTagIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"uid": "04de5f1eacc040", "site_id": 1, "tag_type": "ntag424", "keys": "diversify"}
            ]
        }
    )

    uid: UidHex
    site_id: Id
    tag_type: Literal["ntag424", "ntag21x"]
    keys: Literal["generate", "diversify"] = Field(
        default="generate",
        description="NTAG 424 only: fresh random keys, or AN10922 from the site master key",
    )
    checkpoint_id: Id | None = None


class NfcTagCreated(BaseModel):
    uid: str
    tag_type: str
    key_source: str | None
    master_key_version: int | None
    meta_read_key_b64: str | None = Field(description="SDMMetaReadKey, shown once")
    file_read_key_b64: str | None = Field(description="SDMFileReadKey, shown once")


class TagRotateIn(BaseModel):
    keys: Literal["generate", "diversify"] = "generate"


def _source(keys: str) -> KeySource:
    return KeySource.DIVERSIFIED if keys == "diversify" else KeySource.GENERATED


def _tag_only(session: Session, principal: Principal, uid: str) -> NfcTag:
    """The tag if the caller may see it (a tag registered without a site: admins only)."""
    tag = provisioning.find_tag(session, bytes.fromhex(uid))
    _scoped(principal, tag.site_id, f"no NFC tag {uid}")
    return tag


def _tag(session: Session, principal: Principal, uid: str) -> tuple[NfcTag, Site]:
    tag = _tag_only(session, principal, uid)
    site = session.get(Site, tag.site_id) if tag.site_id is not None else None
    if site is None:
        raise ProvisioningError(f"NFC tag {uid} belongs to no site; register it again")
    return tag, site


@router.post(
    "/nfc-tags",
    status_code=status.HTTP_201_CREATED,
    response_model=NfcTagCreated,
    summary="Register an NFC checkpoint tag",
)
def post_nfc_tag(
    principal: Technician, ctx: ContextDep, session: SessionDep, body: NfcTagIn
) -> NfcTagCreated:
    """An NTAG 424 DNA tag (keys generated or diversified, returned once) or a plain NTAG21x."""
    uid = bytes.fromhex(body.uid)
    with _transaction(session, f"NFC tag {body.uid}"):
        site = _site(session, principal, body.site_id)
        checkpoint = _checkpoint(session, site, body.checkpoint_id)
        if body.tag_type == "ntag21x":
            provisioning.register_ntag21x(
                session, uid=uid, checkpoint=checkpoint, site=site, actor=actor_of(principal)
            )
            return NfcTagCreated(
                uid=body.uid,
                tag_type="ntag21x",
                key_source=None,
                master_key_version=None,
                meta_read_key_b64=None,
                file_read_key_b64=None,
            )
        tag, meta, file = provisioning.provision_ntag424(
            session,
            box=ctx.box,
            site=site,
            uid=uid,
            source=_source(body.keys),
            checkpoint=checkpoint,
            actor=actor_of(principal),
        )
    return NfcTagCreated(
        uid=body.uid,
        tag_type="ntag424",
        key_source=tag.key_source,
        master_key_version=tag.master_key_version,
        meta_read_key_b64=_b64(meta),
        file_read_key_b64=_b64(file),
    )


@router.post("/nfc-tags/{uid}/rotate", summary="New keys for an NTAG 424 DNA tag")
def post_nfc_tag_rotate(
    principal: Technician,
    ctx: ContextDep,
    session: SessionDep,
    uid: UidHex,
    body: TagRotateIn,
) -> NfcTagCreated:
    """New SDM keys, replacing the stored ones at once (write them to the tag now)."""
    with _transaction(session, "key"):
        tag, site = _tag(session, principal, uid)
        meta, file = provisioning.rotate_tag_keys(
            session,
            box=ctx.box,
            tag=tag,
            site=site,
            source=_source(body.keys),
            actor=actor_of(principal),
        )
    return NfcTagCreated(
        uid=uid,
        tag_type=tag.tag_type,
        key_source=tag.key_source,
        master_key_version=tag.master_key_version,
        meta_read_key_b64=_b64(meta),
        file_read_key_b64=_b64(file),
    )


@router.post("/nfc-tags/{uid}/revoke", summary="Revoke an NFC tag")
def post_nfc_tag_revoke(
    principal: Technician, ctx: ContextDep, session: SessionDep, uid: UidHex, body: RevokeIn
) -> Revoked:
    """Refuse scans of a lost, cloned or removed checkpoint tag from now on."""
    now = ctx.clock()
    with _transaction(session, "revocation"):
        tag = _tag_only(session, principal, uid)
        provisioning.revoke_tag(
            session, tag=tag, reason=body.reason, now=now, actor=actor_of(principal)
        )
        revoked_at = tag.revoked_at or now
    return Revoked(id=uid, revoked_at=revoked_at, reason=body.reason)


class MasterKeyVersion(BaseModel):
    site_id: int
    version: int


@router.post("/sites/{site_id}/master-key/rotate", summary="New NTAG 424 master key for a site")
def post_master_key_rotate(
    principal: Technician, ctx: ContextDep, session: SessionDep, site_id: SiteId
) -> MasterKeyVersion:
    """A new AN10922 master key version; it never leaves the server. Tags keep their keys
    until rotated with ``keys: diversify``."""
    with _transaction(session, "master key"):
        site = _site(session, principal, site_id)
        version, _key = provisioning.rotate_site_master_key(
            session, box=ctx.box, site=site, now=ctx.clock(), actor=actor_of(principal)
        )
    return MasterKeyVersion(site_id=site_id, version=version)


# ---------------------------------------------------------------- commands


class CommandIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"kind": "locate", "duration_s": 30},
                {"kind": "set_time"},
                {"kind": "set_config", "config": {"heartbeat_interval_s": 60}},
            ]
        }
    )

    kind: Literal["set_time", "set_config", "locate"]
    duration_s: Annotated[int, Field(ge=1, le=LOCATE_MAX_S)] | None = None
    config: dict[str, int] | None = Field(
        default=None,
        description="set_config entries by name: heartbeat_interval_s, visit_rssi_dbm, "
        "visit_dwell_s, man_down_s",
    )
    valid_for_s: Annotated[int, Field(ge=1, le=0xFFFF)] = 300


class CommandOut(BaseModel):
    device_id: str
    cmd_seq: int
    key_id: int
    topic: str
    frame_b64: str = Field(description="the signed command frame, to publish as is")


_CONFIG_NAMES = {
    "heartbeat_interval_s": 1,
    "visit_rssi_dbm": 2,
    "visit_dwell_s": 3,
    "man_down_s": 4,
}


def _command_body(body: CommandIn, now: datetime) -> tuple[int, bytes]:
    if body.kind == "locate":
        if body.duration_s is None:
            raise ProvisioningError("locate needs duration_s")
        return CommandKind.LOCATE, encode_locate(body.duration_s)
    if body.kind == "set_time":
        return CommandKind.SET_TIME, encode_set_time(int(now.timestamp()), now.microsecond // 1000)
    if not body.config:
        raise ProvisioningError("set_config needs config entries")
    unknown = sorted(set(body.config) - set(_CONFIG_NAMES))
    if unknown:
        raise ProvisioningError(f"unknown config entries: {', '.join(unknown)}")
    try:
        return CommandKind.SET_CONFIG, encode_set_config(
            {_CONFIG_NAMES[name]: value for name, value in body.config.items()}
        )
    except ProtocolError as exc:
        raise ProvisioningError(str(exc)) from exc


@router.post(
    "/wearables/{device_id}/commands",
    status_code=status.HTTP_201_CREATED,
    summary="Sign a command for a wearable",
)
def post_command(
    principal: Technician,
    ctx: ContextDep,
    session: SessionDep,
    device_id: DeviceIdText,
    body: CommandIn,
) -> CommandOut:
    """SET_TIME, SET_CONFIG or LOCATE signed with the wearable's newest key.

    The frame is stored with its ``cmd_seq``; the gateway publishes it to the
    returned topic, and the wearable verifies it with its own key.
    """
    now = ctx.clock()
    with _transaction(session, "command"):
        device = _device(session, principal, DeviceKind.WEARABLE, device_id)
        kind, payload = _command_body(body, now)
        command = provisioning.sign_command(
            session,
            box=ctx.box,
            device=device,
            kind=kind,
            body=payload,
            now=now,
            valid_for_s=body.valid_for_s,
            actor=actor_of(principal),
        )
    return CommandOut(
        device_id=device_id,
        cmd_seq=command.cmd_seq,
        key_id=command.key_id,
        topic=cmd_topic(int(device_id, 16)),
        frame_b64=_b64(command.raw),
    )


# ---------------------------------------------------------------- Mosquitto export


class MosquittoFiles(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "gateway_id": "gw-harbour-1",
                    "site_id": 1,
                    "password_file": "0000a001:$7$101$...$...\ngw-harbour-1:$7$101$...$...\n",
                    "acl_file": "user gw-harbour-1\ntopic readwrite patrol/v1/#\n\n"
                    "pattern write patrol/v1/dev/%u/up\n...",
                }
            ]
        }
    )

    gateway_id: str | None = Field(description="the calling gateway (null for a person)")
    site_id: int
    password_file: str = Field(description="mosquitto_passwd format, $7$ PBKDF2-SHA512 lines")
    acl_file: str


@router.get("/sites/{site_id}/mosquitto", summary="The site's Mosquitto password file and ACL")
def get_site_mosquitto(
    principal: Technician, session: SessionDep, site_id: SiteId
) -> MosquittoFiles:
    """Every unrevoked broker account of the site, as stored hashes, and the ACL."""
    with _transaction(session, "export"):
        _site(session, principal, site_id)
        password_file, acl_file = provisioning.mosquitto_files(session, site_id)
    return MosquittoFiles(
        gateway_id=None, site_id=site_id, password_file=password_file, acl_file=acl_file
    )


@router.get("/gateway/mosquitto", summary="The calling gateway's Mosquitto files")
def get_gateway_mosquitto(gateway: GatewayDep, session: SessionDep) -> MosquittoFiles:
    """For the edge agent (gateway API key): its site's password file and ACL."""
    with session.begin():
        password_file, acl_file = provisioning.mosquitto_files(session, gateway.site_id)
    return MosquittoFiles(
        gateway_id=gateway.gateway_id,
        site_id=gateway.site_id,
        password_file=password_file,
        acl_file=acl_file,
    )


# ---------------------------------------------------------------- audit log


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_role: str
    action: str
    object_type: str
    object_id: str
    site_id: int | None
    detail: dict[str, Any]


@router.get("/sites/{site_id}/audit", summary="The site's audit log, newest first")
def get_audit(
    principal: AuditReader,
    session: SessionDep,
    site_id: SiteId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> list[AuditEntry]:
    """Who did what, when, to which object at this site (page with ``before_id``)."""
    with _transaction(session, "audit"):
        _site(session, principal, site_id)
        rows = audit.entries(session, site_id=site_id, limit=limit, before_id=before_id)
        return [
            AuditEntry(
                id=r.id,
                at=r.at,
                actor=r.actor,
                actor_role=r.actor_role,
                action=r.action,
                object_type=r.object_type,
                object_id=r.object_id,
                site_id=r.site_id,
                detail=r.detail,
            )
            for r in rows
        ]


# ---------------------------------------------------------------- bulk registration (CSV)


class CsvRowResult(BaseModel):
    line: int = Field(description="line in the uploaded text (the header is line 1)")
    kind: str
    id: str
    status: Literal["created", "error"]
    error: str | None = None
    secrets: dict[str, Any] = Field(
        default_factory=dict, description="what the row's device needs, shown once"
    )


class CsvResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "site_id": 1,
                    "created": 1,
                    "errors": 1,
                    "rows": [
                        {
                            "line": 2,
                            "kind": "beacon",
                            "id": "000005c1",
                            "status": "created",
                            "error": None,
                            "secrets": {"key_id": 1, "key_b64": "..."},
                        },
                        {
                            "line": 3,
                            "kind": "wearable",
                            "id": "A001",
                            "status": "error",
                            "error": "id must be 8 lowercase hex digits",
                            "secrets": {},
                        },
                    ],
                }
            ]
        }
    )

    site_id: int
    created: int
    errors: int
    rows: list[CsvRowResult]


_CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "kind,id,label,checkpoint_id,keys\nwearable,0000b001,W-01,,\n"
                "ntag424,04de5f1eacc041,,13,diversify\n",
            }
        },
    }
}


@router.post(
    "/sites/{site_id}/provisioning/csv",
    summary="Register devices and tags from CSV",
    openapi_extra=_CSV_BODY,
    responses=problem_responses(413, 415),
)
async def post_provisioning_csv(
    principal: Technician, ctx: ContextDep, site_id: SiteId, request: Request
) -> CsvResult:
    """One row per wearable, gateway, beacon, equipment tag or NFC tag; a result per row.

    Columns ``kind,id,label,checkpoint_id,keys`` (see :mod:`cloud_api.provisioning_csv`);
    at most 1,000 rows and 512 KiB per request (the ``patrol provision csv`` command
    uploads bigger files in chunks). Bad rows are reported and the others registered.
    """
    if request.headers.get("content-type", "").split(";")[0].strip() not in ("text/csv", ""):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail="send the file as text/csv"
        )
    raw = await request.body()
    if len(raw) > provisioning_csv.MAX_BYTES:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"CSV over {provisioning_csv.MAX_BYTES} bytes; upload in chunks",
        )
    try:
        rows = provisioning_csv.parse(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="the CSV is not UTF-8"
        ) from exc
    except provisioning_csv.CsvError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    return await run_in_threadpool(_register_csv, ctx, principal, site_id, rows)


def _register_csv(
    ctx: AppContext, principal: Principal, site_id: int, rows: list[tuple[int, dict[str, str]]]
) -> CsvResult:
    with ctx.sessions() as session, _transaction(session, "row"):
        site = _site(session, principal, site_id)
        results = provisioning_csv.register_rows(
            session, box=ctx.box, site=site, rows=rows, actor=actor_of(principal)
        )
    created = sum(1 for r in results if r.status == "created")
    return CsvResult(
        site_id=site_id,
        created=created,
        errors=len(results) - created,
        rows=[
            CsvRowResult(
                line=r.line,
                kind=r.kind,
                id=r.id,
                status="created" if r.status == "created" else "error",
                error=r.error,
                secrets=r.secrets,
            )
            for r in results
        ],
    )
