"""A thin slice of the technicians' provisioning API (admin token until issue 5's roles).

Sites, gateways and wearables. Secrets (a gateway's API key, a wearable's device
key) are generated here and returned once in the 201 response; the store keeps
only the API key's hash and the device key encrypted under the server key.
"""

from __future__ import annotations

import base64
import os
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.exc import IntegrityError

from cloud_api.api.deps import AdminDep, ContextDep, SessionDep
from cloud_api.models import Site
from cloud_api.provisioning import (
    WEARABLE_KEY_BYTES,
    create_gateway,
    create_site,
    register_wearable,
)
from patrol_protocol.ids import device_id_text

router = APIRouter(tags=["provisioning"])

DeviceIdText = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class SiteIn(BaseModel):
    name: Name
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"


class SiteOut(BaseModel):
    id: int
    name: str
    timezone: str


class GatewayIn(BaseModel):
    gateway_id: Name
    site_id: int


class GatewayCreated(BaseModel):
    gateway_id: str
    site_id: int
    api_key: str = Field(description="shown once; only its SHA-256 is stored")


class WearableIn(BaseModel):
    device_id: DeviceIdText
    site_id: int
    key_id: Annotated[int, Field(ge=0, le=255)] = 1
    label: Annotated[str, StringConstraints(max_length=200)] | None = None


class WearableCreated(BaseModel):
    device_id: str
    key_id: int
    key_b64: str = Field(description="the 32-byte device key, shown once; flash it now")


def _site(session: SessionDep, site_id: int) -> Site:
    site = session.get(Site, site_id)
    if site is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no site {site_id}")
    return site


def _conflict(what: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=f"{what} already exists")


@router.post("/sites", status_code=status.HTTP_201_CREATED, response_model=SiteOut)
def post_site(_admin: AdminDep, session: SessionDep, body: SiteIn) -> SiteOut:
    """Create a customer site."""
    try:
        with session.begin():
            site = create_site(session, name=body.name, timezone=body.timezone)
    except IntegrityError as exc:
        raise _conflict(f"site {body.name!r}") from exc
    return SiteOut(id=site.id, name=site.name, timezone=site.timezone)


@router.post("/gateways", status_code=status.HTTP_201_CREATED, response_model=GatewayCreated)
def post_gateway(_admin: AdminDep, session: SessionDep, body: GatewayIn) -> GatewayCreated:
    """Register an edge gateway; its API key is in this response and nowhere else."""
    try:
        with session.begin():
            gateway, api_key = create_gateway(
                session, gateway_id=body.gateway_id, site=_site(session, body.site_id)
            )
    except IntegrityError as exc:
        raise _conflict(f"gateway {body.gateway_id!r}") from exc
    return GatewayCreated(gateway_id=gateway.gateway_id, site_id=gateway.site_id, api_key=api_key)


@router.post("/wearables", status_code=status.HTTP_201_CREATED, response_model=WearableCreated)
def post_wearable(
    _admin: AdminDep, ctx: ContextDep, session: SessionDep, body: WearableIn
) -> WearableCreated:
    """Register a wearable with a freshly generated device key (returned once)."""
    key = os.urandom(WEARABLE_KEY_BYTES)
    device_id = int(body.device_id, 16)
    try:
        with session.begin():
            register_wearable(
                session,
                box=ctx.box,
                device_id=device_id,
                key=key,
                key_id=body.key_id,
                site=_site(session, body.site_id),
                label=body.label,
            )
    except IntegrityError as exc:
        raise _conflict(f"wearable {body.device_id}") from exc
    return WearableCreated(
        device_id=device_id_text(device_id),
        key_id=body.key_id,
        key_b64=base64.b64encode(key).decode("ascii"),
    )
