"""Seeds for the provisioning rows of test_role_matrix.py: each returns ``Call`` keyword
arguments for a request that succeeds for an allowed caller on site A.

Every call seeds its own object (the matrix calls a row once per caller), so a
revocation or rotation by one caller never makes the next caller's request fail.
"""

from __future__ import annotations

import itertools
from typing import Any

from cloudtest import SERVER_KEY, SERVER_NOW
from sqlalchemy import Engine, select

from cloud_api.crypto_store import SecretBox
from cloud_api.db import session_scope
from cloud_api.models import EquipmentKind, Site
from cloud_api.provisioning import (
    KeySource,
    create_equipment_item,
    create_guard,
    provision_gateway,
    provision_ntag424,
    provision_wearable,
)

_ids = itertools.count(0x00C0_0000)
BOX = SecretBox(SERVER_KEY)


def _next() -> int:
    return next(_ids)


def _site(session: Any, site_id: int) -> Site:
    return session.scalars(select(Site).where(Site.id == site_id)).one()


def gateway(engine: Engine, site_id: int) -> dict[str, Any]:
    with session_scope(engine) as s:
        gw = provision_gateway(s, gateway_id=f"gw-seed-{_next():x}", site=_site(s, site_id))
        return {"path_params": {"gateway_id": gw.gateway.gateway_id}}


def wearable(engine: Engine, site_id: int) -> dict[str, Any]:
    with session_scope(engine) as s:
        made = provision_wearable(s, box=BOX, device_id=_next(), site=_site(s, site_id))
        return {"path_params": {"kind": "wearable", "device_id": made.mqtt_username}}


def mqtt_account(engine: Engine, site_id: int) -> dict[str, Any]:
    return {"path_params": {"username": wearable(engine, site_id)["path_params"]["device_id"]}}


def ntag424(engine: Engine, site_id: int) -> dict[str, Any]:
    uid = bytes.fromhex("04") + _next().to_bytes(6, "big")
    with session_scope(engine) as s:
        provision_ntag424(s, box=BOX, site=_site(s, site_id), uid=uid, source=KeySource.GENERATED)
    return {"path_params": {"uid": uid.hex()}}


def guard_id(engine: Engine, site_id: int) -> int:
    with session_scope(engine) as s:
        return create_guard(s, site=_site(s, site_id), name=f"Guard {_next()}").id


def equipment(engine: Engine, site_id: int, *, assign: bool) -> dict[str, Any]:
    with session_scope(engine) as s:
        item = create_equipment_item(
            s, site=_site(s, site_id), kind=EquipmentKind.RADIO, label=f"Radio {_next()}"
        )
        item_id = item.id
    call: dict[str, Any] = {"path_params": {"item_id": item_id}}
    if assign:
        call["json"] = {"guard_id": guard_id(engine, site_id), "at": SERVER_NOW.isoformat()}
    return call


def csv_call(site_id: int) -> dict[str, Any]:
    return {
        "path_params": {"site_id": site_id},
        "content": f"kind,id\nwearable,{_next():08x}\n".encode(),
        "headers": {"Content-Type": "text/csv"},
    }
