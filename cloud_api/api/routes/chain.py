"""A site's hash chain: ``GET .../chain`` (the head), ``GET|POST .../chain/verify``."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cloud_api import chain
from cloud_api.api.deps import AdminDep, SessionDep
from cloud_api.models import Site

router = APIRouter(tags=["chain"])


class ChainHeadOut(BaseModel):
    site_id: int
    length: int = Field(description="Number of entries; 0 before the first accepted record.")
    head_hash: str = Field(
        description="Hex SHA-256 of the last entry (64 zeros when empty); publish it."
    )


class BrokenLinkOut(BaseModel):
    position: int = Field(description="1-based position of the first entry that fails.")
    reason: str = Field(
        description="missing_entry, record_missing, hash_mismatch, head_mismatch or extra_entry"
    )
    detail: str


class ChainVerificationOut(BaseModel):
    head: ChainHeadOut
    ok: bool
    checked: int = Field(description="Entries that recomputed correctly before any break.")
    first_broken: BrokenLinkOut | None


def _site(session: Session, site_id: int) -> None:
    if session.get(Site, site_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no site {site_id}")


def _head_out(head: chain.Head) -> ChainHeadOut:
    return ChainHeadOut(site_id=head.site_id, length=head.length, head_hash=head.hash.hex())


@router.get("/sites/{site_id}/chain", response_model=ChainHeadOut)
def chain_head(site_id: int, _admin: AdminDep, session: SessionDep) -> ChainHeadOut:
    """The site's chain head: the value to publish outside the company."""
    _site(session, site_id)
    return _head_out(chain.read_head(session, site_id))


def _verify(site_id: int, session: Session) -> ChainVerificationOut:
    _site(session, site_id)
    result = chain.verify_chain(session, site_id)
    broken = result.broken
    return ChainVerificationOut(
        head=_head_out(result.head),
        ok=result.ok,
        checked=result.checked,
        first_broken=None
        if broken is None
        else BrokenLinkOut(position=broken.position, reason=broken.reason, detail=broken.detail),
    )


@router.get("/sites/{site_id}/chain/verify", response_model=ChainVerificationOut)
def verify_chain_get(site_id: int, _admin: AdminDep, session: SessionDep) -> ChainVerificationOut:
    """Recompute every link from genesis; report the first broken one."""
    return _verify(site_id, session)


@router.post("/sites/{site_id}/chain/verify", response_model=ChainVerificationOut)
def verify_chain_post(site_id: int, _admin: AdminDep, session: SessionDep) -> ChainVerificationOut:
    """Same as GET (for clients that treat a long recomputation as an action)."""
    return _verify(site_id, session)
