"""``POST /api/v1/ingest``: a gateway's batch in, one final result per item out.

Order of refusals: bad credential (401) before the body is read; a body over
``max_batch_bytes`` (413) before it is parsed; an unparseable body (422, kept in
rejected_events as ``malformed``); a batch naming another gateway (403).

``Content-Encoding: gzip`` bodies (what the edge sends) are inflated with the same
``max_batch_bytes`` cap on the inflated size, so a small "gzip bomb" is refused
(413) without being inflated past the cap; a body that is not valid gzip is 400,
another encoding 415.
"""

from __future__ import annotations

import zlib

from fastapi import APIRouter, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from cloud_api.api.deps import AppContext, ContextDep, GatewayDep
from cloud_api.ingest import (
    BatchRejected,
    ParsedBatch,
    ingest_batch,
    parse_batch,
    record_malformed_body,
)
from cloud_api.models import Gateway
from patrol_protocol.batch import IngestResponse

router = APIRouter(tags=["ingest"])


async def _read_body_limited(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"batch body is {declared} bytes, limit {max_bytes}",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"batch body exceeds {max_bytes} bytes",
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Encoding {encoding!r} is not supported (gzip or identity)",
        )
    return _gunzip_limited(body, max_bytes)


def _gunzip_limited(body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
    try:
        inflated = inflater.decompress(body, max_bytes + 1)
        if len(inflated) > max_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"batch body inflates beyond {max_bytes} bytes",
            )
        if not inflater.eof or inflater.unused_data:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, detail="gzip body is truncated or has trailing data"
            )
    except zlib.error as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"body is not valid gzip: {exc}"
        ) from exc
    return inflated


def _record_malformed(ctx: AppContext, gateway: Gateway, body: bytes, detail: str) -> None:
    with ctx.sessions() as session, session.begin():
        record_malformed_body(session, gateway=session.merge(gateway), body=body, detail=detail)


def _ingest(ctx: AppContext, gateway: Gateway, batch: ParsedBatch) -> IngestResponse:
    with ctx.sessions() as session, session.begin():
        return ingest_batch(
            session,
            gateway=session.merge(gateway),
            batch=batch,
            box=ctx.box,
            policy=ctx.policy,
            now=ctx.clock(),
            outbox=ctx.settings.influx_enabled,
        )


@router.post(
    "/ingest",
    response_model=IngestResponse,
    # The body is read by hand (size limit before parsing); document it all the same.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/IngestBatch"}}
            },
        }
    },
    responses={
        401: {"description": "missing, unknown or revoked gateway API key"},
        403: {"description": "the batch names a different gateway"},
        400: {"description": "Content-Encoding gzip, but the body is not valid gzip"},
        413: {"description": "body (or its gzip inflation) larger than MAX_BATCH_BYTES"},
        415: {"description": "a Content-Encoding other than gzip or identity"},
        422: {"description": "body is not an ingest batch (recorded as malformed)"},
    },
)
async def ingest(request: Request, ctx: ContextDep, gateway: GatewayDep) -> IngestResponse:
    """Verify and store a gateway batch; every item gets a final result."""
    body = await _read_body_limited(request, ctx.settings.max_batch_bytes)
    try:
        batch = parse_batch(body)
    except BatchRejected as exc:
        await run_in_threadpool(_record_malformed, ctx, gateway, body, str(exc))
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    if batch.gateway_id != gateway.gateway_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"batch names gateway {batch.gateway_id!r}, the API key is "
            f"{gateway.gateway_id!r}'s",
        )
    return await run_in_threadpool(_ingest, ctx, gateway, batch)
