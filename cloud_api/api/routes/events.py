"""``GET /api/v1/events``: accepted events, newest first (admin token for now)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel
from sqlalchemy import select

from cloud_api.api.deps import AdminDep, SessionDep
from cloud_api.models import Event, Gateway
from patrol_protocol.errors import ProtocolError
from patrol_protocol.frames import Kind
from patrol_protocol.ids import device_id_text, parse_device_id

router = APIRouter(tags=["events"])

MAX_EVENTS_PAGE = 1000
"""One page stays small enough to serialise quickly."""


class EventOut(BaseModel):
    id: int
    key: str
    device_id: str
    seq: int
    kind: str
    device_time: datetime
    received_at: datetime
    ingested_at: datetime
    gateway_id: str
    assurance: str
    flags: list[str]
    checkpoint_id: int | None
    body: dict[str, Any]


class EventsPage(BaseModel):
    items: list[EventOut]
    next_before_id: int | None
    """Pass as ``before_id`` for the next (older) page; null on the last page."""


def _kind_name(kind: int) -> str:
    try:
        return Kind(kind).name.lower()
    except ValueError:
        return str(kind)


@router.get("/events", response_model=EventsPage)
def list_events(
    _admin: AdminDep,
    session: SessionDep,
    device_id: Annotated[str | None, Query(description="8 lowercase hex digits")] = None,
    kind: Annotated[str | None, Query(description="nfc_scan, ble_visit, heartbeat, ...")] = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 100,
) -> EventsPage:
    """Accepted events filtered by device and kind, newest first, keyset-paginated."""
    stmt = select(Event, Gateway.gateway_id).join(Gateway, Gateway.id == Event.gateway_pk)
    if device_id is not None:
        try:
            stmt = stmt.where(Event.device_id == parse_device_id(device_id))
        except ProtocolError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    if kind is not None:
        try:
            stmt = stmt.where(Event.kind == int(Kind[kind.upper()]))
        except KeyError as exc:
            names = ", ".join(k.name.lower() for k in Kind)
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"kind must be one of {names}"
            ) from exc
    if before_id is not None:
        stmt = stmt.where(Event.id < before_id)
    rows = session.execute(stmt.order_by(Event.id.desc()).limit(limit)).all()
    items = [
        EventOut(
            id=event.id,
            key=f"{device_id_text(event.device_id)}:{event.seq}",
            device_id=device_id_text(event.device_id),
            seq=event.seq,
            kind=_kind_name(event.kind),
            device_time=event.device_time,
            received_at=event.received_at,
            ingested_at=event.ingested_at,
            gateway_id=gateway_id,
            assurance=event.assurance,
            flags=list(event.flags),
            checkpoint_id=event.checkpoint_id,
            body=event.body,
        )
        for event, gateway_id in rows
    ]
    next_before = items[-1].id if len(items) == limit else None
    return EventsPage(items=items, next_before_id=next_before)
