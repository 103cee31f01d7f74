"""``GET /api/v1/devices/{device_id}/sequence``: received, lost and evicted seqs."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from cloud_api import sequences
from cloud_api.api.deps import AdminDep, SessionDep
from patrol_protocol.errors import ProtocolError
from patrol_protocol.ids import device_id_text, parse_device_id

router = APIRouter(tags=["devices"])


class SeqRange(BaseModel):
    first_seq: int
    last_seq: int


class SequenceOut(BaseModel):
    device_id: str
    received: int = Field(description="Frames of this wearable accepted so far.")
    highest_seq: int
    lost: list[SeqRange] = Field(description="Gaps never received and not evicted.")
    lost_count: int
    evicted: list[SeqRange] = Field(description="Seqs the wearable reported dropping itself.")
    evicted_count: int


def _ranges(ranges: list[sequences.Range]) -> list[SeqRange]:
    return [SeqRange(first_seq=a, last_seq=b) for a, b in ranges]


@router.get("/devices/{device_id}/sequence", response_model=SequenceOut)
def device_sequence(device_id: str, _admin: AdminDep, session: SessionDep) -> SequenceOut:
    """Which of the wearable's sequence numbers arrived, were lost, or were evicted."""
    try:
        wire_id = parse_device_id(device_id)
    except ProtocolError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    report = sequences.report(session, wire_id)
    if report is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no frame of {device_id} was ever accepted"
        )
    return SequenceOut(
        device_id=device_id_text(wire_id),
        received=report.received,
        highest_seq=report.highest_seq,
        lost=_ranges(report.lost),
        lost_count=sum(b - a + 1 for a, b in report.lost),
        evicted=_ranges(report.evicted),
        evicted_count=sum(b - a + 1 for a, b in report.evicted),
    )
