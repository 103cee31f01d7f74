"""``GET /api/v1/events`` (JSON pages) and ``GET /api/v1/events.csv`` (streamed export).

Both take the same filters: site, wearable, kind and a half-open device-time
range ``[since, until)``. Scope: an event belongs to the site of the gateway that
relayed it (the site whose hash chain holds it). Admins see every site;
supervisors and customers their own sites; guards only the events of the
wearables they wore, while they wore them (:func:`worn_by`). A ``site_id`` outside
the caller's scope is 404, like a missing site.

Pages are newest first and keyset-paginated by an opaque cursor, so a page
costs the same however deep it is and an event ingested meanwhile never shifts
a page. The CSV export walks the same rows oldest first in chunks, up to the
newest event that existed when the export started.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Row, Select, false, or_, select
from sqlalchemy.orm import Session

from cloud_api.api.deps import (
    MAX_DB_ID,
    AppContext,
    ContextDep,
    EventReaderDep,
    Principal,
    SessionDep,
    visible_site,
)
from cloud_api.api.problems import invalid, problem_responses
from cloud_api.models import Event, Gateway, Guard, Role, WearableAssignment
from patrol_protocol.errors import ProtocolError
from patrol_protocol.frames import Kind
from patrol_protocol.ids import device_id_text, parse_device_id

router = APIRouter(tags=["events"])

MAX_EVENTS_PAGE = 1000
"""One page stays small enough to serialise quickly."""
DEFAULT_EVENTS_PAGE = 100
EXPORT_CHUNK_ROWS = 1000
"""Rows the CSV export reads per query: bounded memory whatever the export's size."""
_CURSOR_PREFIX = "ev1:"
CSV_COLUMNS = (
    "id",
    "site_id",
    "key",
    "device_id",
    "seq",
    "kind",
    "device_time",
    "received_at",
    "ingested_at",
    "gateway_id",
    "assurance",
    "flags",
    "checkpoint_id",
    "body",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with these runs as a formula in spreadsheets (CSV injection)."""


class EventKind(StrEnum):
    """Event kinds by name (``patrol_protocol.frames.Kind`` in lower case)."""

    NFC_SCAN = "nfc_scan"
    BLE_VISIT = "ble_visit"
    HEARTBEAT = "heartbeat"
    SOS = "sos"
    EVICTION = "eviction"
    BOOT = "boot"
    CMD_RESULT = "cmd_result"
    CLOCK_JUMP = "clock_jump"

    @property
    def wire(self) -> int:
        return int(Kind[self.name])


_EVENT_EXAMPLE: dict[str, Any] = {
    "id": 4812,
    "site_id": 1,
    "key": "0000a001:57",
    "device_id": "0000a001",
    "seq": 57,
    "kind": "nfc_scan",
    "device_time": "2026-11-25T04:00:00Z",
    "received_at": "2026-11-25T04:00:05Z",
    "ingested_at": "2026-11-25T04:00:06Z",
    "gateway_id": "gw-harbour-1",
    "assurance": "high",
    "flags": [],
    "checkpoint_id": 12,
    "body": {"tag_type": 1, "uid": "04de5f1eacc040", "read_counter": 61},
}


class EventOut(BaseModel):
    """An accepted, verified event."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EVENT_EXAMPLE]})

    id: int = Field(description="Server id; larger is ingested later.")
    site_id: int = Field(description="Site of the gateway that relayed it.")
    key: str = Field(description="Idempotency key ``device_id:seq``.")
    device_id: str = Field(description="The wearable: 8 lowercase hex digits.")
    seq: int
    kind: str = Field(description="nfc_scan, ble_visit, heartbeat, sos, ...")
    device_time: datetime = Field(description="When it happened, by the wearable's clock.")
    received_at: datetime = Field(description="When the gateway received it.")
    ingested_at: datetime = Field(description="When the cloud stored it.")
    gateway_id: str
    assurance: str = Field(description="high, medium or low (see docs/protocol.md).")
    flags: list[str] = Field(description="Reasons a supervisor should look at it.")
    checkpoint_id: int | None
    body: dict[str, Any] = Field(description="The decoded body of the signed frame.")


class EventsPage(BaseModel):
    """One page of events, newest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_EVENT_EXAMPLE], "next_cursor": "ZXYxOjQ4MTI"}]}
    )

    items: list[EventOut]
    next_cursor: str | None = Field(
        description="Pass as ``cursor`` for the next (older) page; null on the last page."
    )


@dataclass(frozen=True, slots=True)
class EventFilters:
    """Validated filters shared by the page and the export."""

    site_id: int | None
    device_id: int | None
    kind: EventKind | None
    since: datetime | None
    until: datetime | None


def event_filters(
    site_id: Annotated[
        int | None,
        Query(ge=1, le=MAX_DB_ID, description="Only this site's events.", examples=[1]),
    ] = None,
    device_id: Annotated[
        str | None,
        Query(
            pattern="^[0-9a-f]{8}$",
            description="Only this wearable's events: 8 lowercase hex digits.",
            examples=["0000a001"],
        ),
    ] = None,
    kind: Annotated[EventKind | None, Query(description="Only events of this kind.")] = None,
    since: Annotated[
        AwareDatetime | None,
        Query(
            description="Device time at or after this instant (RFC 3339 with offset).",
            examples=["2026-11-25T00:00:00Z"],
        ),
    ] = None,
    until: Annotated[
        AwareDatetime | None,
        Query(
            description="Device time strictly before this instant (RFC 3339 with offset).",
            examples=["2026-11-26T00:00:00Z"],
        ),
    ] = None,
) -> EventFilters:
    wire_id = None
    if device_id is not None:
        try:
            wire_id = parse_device_id(device_id)
        except ProtocolError as exc:  # the pattern already holds; kept as the one parser
            raise invalid(str(exc), field="device_id") from exc
    for name, value in (("since", since), ("until", until)):
        try:
            if value is not None:
                value.astimezone(UTC)
        except OverflowError as exc:  # 9999-12-31T23:00-05:00 is past year 9999 in UTC
            raise invalid("outside the years 1..9999 in UTC", field=name) from exc
    if since is not None and until is not None and until <= since:
        raise invalid("until must be later than since", field="until")
    return EventFilters(site_id, wire_id, kind, since, until)


FiltersDep = Annotated[EventFilters, Depends(event_filters)]


def worn_by(user_id: int | None) -> ColumnElement[bool]:
    """Events of a wearable while the guard with login ``user_id`` wore it.

    A wearable changes hands between shifts (``wearable_assignments``, a
    half-open ``[started_at, ended_at)`` by device time), so a guard sees the
    events of their own shifts and not those of the colleague who wore it before.
    """
    if user_id is None:
        return false()
    return (
        select(WearableAssignment.id)
        .join(Guard, Guard.id == WearableAssignment.guard_id)
        .where(
            Guard.user_id == user_id,
            WearableAssignment.device_pk == Event.device_pk,
            WearableAssignment.started_at <= Event.device_time,
            or_(
                WearableAssignment.ended_at.is_(None),
                Event.device_time < WearableAssignment.ended_at,
            ),
        )
        .exists()
    )


def _scope(
    session: Session, principal: Principal, filters: EventFilters
) -> list[ColumnElement[bool]]:
    """WHERE clauses for the filters and the caller's scope (404 for a site not theirs)."""
    clauses: list[ColumnElement[bool]] = []
    if filters.site_id is not None:
        visible_site(session, principal, filters.site_id)
        clauses.append(Gateway.site_id == filters.site_id)
    elif not principal.all_sites:
        clauses.append(Gateway.site_id.in_(sorted(principal.site_ids)))
    if principal.role is Role.GUARD:
        clauses.append(worn_by(principal.user_id))
    if filters.device_id is not None:
        clauses.append(Event.device_id == filters.device_id)
    if filters.kind is not None:
        clauses.append(Event.kind == filters.kind.wire)
    if filters.since is not None:
        clauses.append(Event.device_time >= filters.since)
    if filters.until is not None:
        clauses.append(Event.device_time < filters.until)
    return clauses


def _select(clauses: list[ColumnElement[bool]]) -> Select[Event, str, int]:
    return (
        select(Event, Gateway.gateway_id, Gateway.site_id)
        .join(Gateway, Gateway.id == Event.gateway_pk)
        .where(*clauses)
    )


def encode_cursor(before_id: int) -> str:
    raw = f"{_CURSOR_PREFIX}{before_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor stands for; 422 for anything this service did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise invalid("cursor is not one this service issued", field="cursor") from exc
    number = raw.removeprefix(_CURSOR_PREFIX)
    if not raw.startswith(_CURSOR_PREFIX) or not number.isdigit() or int(number) > MAX_DB_ID:
        raise invalid("cursor is not one this service issued", field="cursor")
    return int(number)


def _kind_name(kind: int) -> str:
    try:
        return Kind(kind).name.lower()
    except ValueError:
        return str(kind)


def _event_out(row: Row[Event, str, int]) -> EventOut:
    event, gateway_id, site_id = row
    return EventOut(
        id=event.id,
        site_id=site_id,
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


_ERRORS = problem_responses(401, 403, 404, 422)


@router.get("/events", response_model=EventsPage, summary="List events", responses=_ERRORS)
def list_events(
    principal: EventReaderDep,
    session: SessionDep,
    filters: FiltersDep,
    cursor: Annotated[
        str | None, Query(max_length=64, description="``next_cursor`` of the previous page.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_EVENTS_PAGE, description="Events per page.")
    ] = DEFAULT_EVENTS_PAGE,
) -> EventsPage:
    """Accepted events in the caller's scope, newest first, filtered and keyset-paginated.

    Guards see their own wearables' events, supervisors and customers their
    sites', admins all. Follow ``next_cursor`` until it is null.
    """
    clauses = _scope(session, principal, filters)
    if cursor is not None:
        clauses.append(Event.id < decode_cursor(cursor))
    rows = session.execute(_select(clauses).order_by(Event.id.desc()).limit(limit + 1)).all()
    items = [_event_out(row) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return EventsPage(items=items, next_cursor=next_cursor)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _text_cell(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_row(out: EventOut) -> list[str]:
    """One event as CSV cells (the columns of :data:`CSV_COLUMNS`)."""
    return [
        str(out.id),
        str(out.site_id),
        out.key,
        out.device_id,
        str(out.seq),
        out.kind,
        _iso(out.device_time),
        _iso(out.received_at),
        _iso(out.ingested_at),
        _text_cell(out.gateway_id),
        out.assurance,
        " ".join(out.flags),
        "" if out.checkpoint_id is None else str(out.checkpoint_id),
        json.dumps(out.body, sort_keys=True, separators=(",", ":")),
    ]


def _csv_lines(ctx: AppContext, clauses: list[ColumnElement[bool]]) -> Iterator[str]:
    """The header, then the rows oldest first, a chunk per short transaction.

    Nothing is held open between chunks (on SQLite a transaction holds the write
    lock), so ingest goes on while a slow client downloads. The export ends at
    the newest matching event that existed when it started.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    with ctx.sessions() as session:
        newest = session.scalar(
            _select(clauses).with_only_columns(Event.id).order_by(Event.id.desc()).limit(1)
        )
    after = 0
    while newest is not None:
        with ctx.sessions() as session:
            rows = session.execute(
                _select([*clauses, Event.id > after, Event.id <= newest])
                .order_by(Event.id)
                .limit(EXPORT_CHUNK_ROWS)
            ).all()
            outs = [_event_out(row) for row in rows]
        if not outs:
            break
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(csv_row(out) for out in outs)
        yield buffer.getvalue()
        after = outs[-1].id


@router.get(
    "/events.csv",
    summary="Export events as CSV",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "RFC 4180 CSV with a header row, oldest first.",
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": ",".join(CSV_COLUMNS)
                    + "\r\n4812,1,0000a001:57,0000a001,57,nfc_scan,2026-11-25T04:00:00Z,"
                    "2026-11-25T04:00:05Z,2026-11-25T04:00:06Z,gw-harbour-1,high,,12,"
                    '"{""read_counter"":61,""tag_type"":1,""uid"":""04de5f1eacc040""}"\r\n',
                }
            },
        },
        **_ERRORS,
    },
)
def export_events(
    principal: EventReaderDep, ctx: ContextDep, filters: FiltersDep
) -> StreamingResponse:
    """Every event matching the filters, streamed as CSV (same scope as ``GET /events``).

    Columns: id, site_id, key, device_id, seq, kind, device_time, received_at,
    ingested_at (RFC 3339 UTC), gateway_id, assurance, flags (space-separated),
    checkpoint_id (empty when none), body (compact JSON, sorted keys). A text
    cell starting with ``= + - @`` gets a leading ``'`` so spreadsheets do not
    run it. Errors (scope, filters) are answered before the first byte.
    """
    # Its own short session, closed before streaming: on SQLite every transaction
    # takes the write lock (BEGIN IMMEDIATE), so one held open across the stream
    # would block the export's own reads.
    with ctx.sessions() as session:
        clauses = _scope(session, principal, filters)
    return StreamingResponse(
        _csv_lines(ctx, clauses),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="events.csv"'},
    )
