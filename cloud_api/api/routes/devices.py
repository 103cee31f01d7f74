"""``GET /api/v1/devices/{device_id}/sequence``: received, lost and evicted seqs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from cloud_api import sequences
from cloud_api.api.deps import DeviceReaderDep, SessionDep
from cloud_api.api.problems import invalid, not_found, problem_responses
from cloud_api.models import Device, DeviceKind
from patrol_protocol.errors import ProtocolError
from patrol_protocol.ids import device_id_text, parse_device_id

router = APIRouter(tags=["devices"])


class SeqRange(BaseModel):
    """An inclusive run of sequence numbers."""

    first_seq: int
    last_seq: int


class SequenceOut(BaseModel):
    """A wearable's sequence numbers: what arrived, what is missing and why."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device_id": "0000a001",
                    "received": 1200,
                    "highest_seq": 1210,
                    "lost": [{"first_seq": 1001, "last_seq": 1004}],
                    "lost_count": 4,
                    "evicted": [{"first_seq": 500, "last_seq": 505}],
                    "evicted_count": 6,
                }
            ]
        }
    )

    device_id: str
    received: int = Field(description="Frames of this wearable accepted so far.")
    highest_seq: int
    lost: list[SeqRange] = Field(description="Gaps never received and not evicted.")
    lost_count: int
    evicted: list[SeqRange] = Field(description="Seqs the wearable reported dropping itself.")
    evicted_count: int


def _ranges(ranges: list[sequences.Range]) -> list[SeqRange]:
    return [SeqRange(first_seq=a, last_seq=b) for a, b in ranges]


@router.get(
    "/devices/{device_id}/sequence",
    response_model=SequenceOut,
    summary="A wearable's received, lost and evicted sequence numbers",
    responses=problem_responses(401, 403, 404, 422),
)
def device_sequence(
    device_id: Annotated[
        str, Path(description="The wearable's id: 8 lowercase hex digits.", examples=["0000a001"])
    ],
    principal: DeviceReaderDep,
    session: SessionDep,
) -> SequenceOut:
    """Which of the wearable's sequence numbers arrived, were lost, or were evicted.

    For technicians and supervisors of the wearable's site, and admins; a
    wearable of another site is 404 like an unknown one.
    """
    try:
        wire_id = parse_device_id(device_id)
    except ProtocolError as exc:
        raise invalid(str(exc), field="device_id", location="path") from exc
    row = session.execute(
        select(Device.site_id).where(
            Device.kind == DeviceKind.WEARABLE.value, Device.device_id == wire_id
        )
    ).first()
    site_id = None if row is None else row.site_id
    if row is None or not (
        principal.all_sites or (site_id is not None and principal.may_see(site_id))
    ):
        raise not_found(f"no wearable {device_id}")
    report = sequences.report(session, wire_id)
    if report is None:
        raise not_found(f"no frame of {device_id} was ever accepted")
    return SequenceOut(
        device_id=device_id_text(wire_id),
        received=report.received,
        highest_seq=report.highest_seq,
        lost=_ranges(report.lost),
        lost_count=sum(b - a + 1 for a, b in report.lost),
        evicted=_ranges(report.evicted),
        evicted_count=sum(b - a + 1 for a, b in report.evicted),
    )
