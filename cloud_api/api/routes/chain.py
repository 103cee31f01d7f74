"""A site's hash chain: ``GET .../chain`` (the head), ``GET|POST .../chain/verify``."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from sqlalchemy.orm import Session

from cloud_api import chain
from cloud_api.api.deps import Principal, SessionDep, SiteIdPath, SiteReaderDep, visible_site
from cloud_api.api.problems import problem_responses

router = APIRouter(tags=["chain"])

_ERRORS = problem_responses(401, 403, 404, 422)
_HEAD_EXAMPLE: dict[str, JsonValue] = {
    "site_id": 1,
    "length": 1284,
    "head_hash": "9f2c3e5d0b7a41c8e6f1d2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7",
}


class ChainHeadOut(BaseModel):
    """The head of a site's hash chain."""

    model_config = ConfigDict(json_schema_extra={"examples": [_HEAD_EXAMPLE]})

    site_id: int
    length: int = Field(description="Number of entries; 0 before the first accepted record.")
    head_hash: str = Field(
        description="Hex SHA-256 of the last entry (64 zeros when empty); publish it."
    )


class BrokenLinkOut(BaseModel):
    """The first link that does not recompute."""

    position: int = Field(description="1-based position of the first entry that fails.")
    reason: str = Field(
        description="missing_entry, record_missing, hash_mismatch, head_mismatch or extra_entry"
    )
    detail: str


class ChainVerificationOut(BaseModel):
    """The outcome of recomputing a chain from genesis."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"head": _HEAD_EXAMPLE, "ok": True, "checked": 1284, "first_broken": None},
                {
                    "head": _HEAD_EXAMPLE,
                    "ok": False,
                    "checked": 41,
                    "first_broken": {
                        "position": 42,
                        "reason": "hash_mismatch",
                        "detail": "entry 42 does not recompute from its record",
                    },
                },
            ]
        }
    )

    head: ChainHeadOut
    ok: bool
    checked: int = Field(description="Entries that recomputed correctly before any break.")
    first_broken: BrokenLinkOut | None


def _head_out(head: chain.Head) -> ChainHeadOut:
    return ChainHeadOut(site_id=head.site_id, length=head.length, head_hash=head.hash.hex())


@router.get(
    "/sites/{site_id}/chain",
    response_model=ChainHeadOut,
    summary="Read a site's chain head",
    responses=_ERRORS,
)
def chain_head(site_id: SiteIdPath, principal: SiteReaderDep, session: SessionDep) -> ChainHeadOut:
    """The site's chain head: the value to publish outside the company.

    Readable by the site's supervisors and customers (who keep the published
    heads to compare later) and by admins.
    """
    visible_site(session, principal, site_id)
    return _head_out(chain.read_head(session, site_id))


def _verify(site_id: int, principal: Principal, session: Session) -> ChainVerificationOut:
    visible_site(session, principal, site_id)
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


@router.get(
    "/sites/{site_id}/chain/verify",
    response_model=ChainVerificationOut,
    summary="Verify a site's chain",
    responses=_ERRORS,
)
def verify_chain_get(
    site_id: SiteIdPath, principal: SiteReaderDep, session: SessionDep
) -> ChainVerificationOut:
    """Recompute every link from genesis; report the first broken one.

    A broken chain is a 200 with ``ok: false``: the verification succeeded, the
    record did not.
    """
    return _verify(site_id, principal, session)


@router.post(
    "/sites/{site_id}/chain/verify",
    response_model=ChainVerificationOut,
    summary="Verify a site's chain (POST)",
    responses=_ERRORS,
)
def verify_chain_post(
    site_id: SiteIdPath, principal: SiteReaderDep, session: SessionDep
) -> ChainVerificationOut:
    """Same as GET (for clients that treat a long recomputation as an action)."""
    return _verify(site_id, principal, session)
