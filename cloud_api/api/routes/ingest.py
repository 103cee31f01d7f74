"""``POST /api/v1/ingest``: a gateway's batch in, one final result per item out.

Order of refusals: bad credential (401) before the body is read; a gateway over its
admission limits (429 with ``Retry-After``: ``ingest_gateway_batches_per_s`` token
bucket, ``ingest_gateway_max_concurrent`` batches in progress; per process) before
the body is read; a body over ``max_batch_bytes`` (413) before it is parsed; an
unparseable body (422, kept in rejected_events as ``malformed``); a batch naming
another gateway (403). A database that is down or locked: 503 with ``Retry-After``.

``Content-Encoding: gzip`` bodies (what the edge sends) are inflated with the same
``max_batch_bytes`` cap on the inflated size, so a small "gzip bomb" is refused
(413) without being inflated past the cap; a body that is not valid gzip is 400,
another encoding 415.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from cloud_api.api.deps import AppContext, ContextDep, GatewayDep
from cloud_api.api.problems import rate_limited
from cloud_api.ingest import (
    BatchRejected,
    ParsedBatch,
    ingest_batch,
    parse_batch,
    record_malformed_body,
)
from cloud_api.models import Gateway
from cloud_api.settings import Settings
from patrol_protocol.batch import IngestResponse

router = APIRouter(tags=["ingest"])


@dataclass
class _Bucket:
    tokens: float
    refilled_at_s: float
    in_progress: int = 0


@dataclass
class GatewayAdmission:
    """Per-gateway token bucket and concurrency cap (this process only; both optional).

    ``admit`` answers None (go ahead, call ``release`` when done) or the seconds the
    gateway should wait (the 429's ``Retry-After``, at least 1).
    """

    batches_per_s: float | None
    burst: int
    max_concurrent: int | None
    busy_retry_after_s: int
    clock_s: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayAdmission:
        return cls(
            batches_per_s=settings.ingest_gateway_batches_per_s,
            burst=settings.ingest_gateway_burst,
            max_concurrent=settings.ingest_gateway_max_concurrent,
            busy_retry_after_s=settings.ingest_busy_retry_after_s,
        )

    def admit(self, gateway_id: str) -> tuple[int, str] | None:
        """None when admitted, else (Retry-After seconds, why)."""
        with self._lock:
            now_s = self.clock_s()
            bucket = self._buckets.setdefault(gateway_id, _Bucket(float(self.burst), now_s))
            if self.max_concurrent is not None and bucket.in_progress >= self.max_concurrent:
                return self.busy_retry_after_s, (
                    f"{bucket.in_progress} batches of this gateway are in progress "
                    f"(limit {self.max_concurrent})"
                )
            if self.batches_per_s is not None:
                elapsed_s = max(0.0, now_s - bucket.refilled_at_s)
                bucket.tokens = min(
                    float(self.burst), bucket.tokens + elapsed_s * self.batches_per_s
                )
                bucket.refilled_at_s = now_s
                if bucket.tokens < 1.0:
                    wait_s = max(1, math.ceil((1.0 - bucket.tokens) / self.batches_per_s))
                    return wait_s, (
                        f"more than {self.batches_per_s:g} batches/s (burst {self.burst})"
                    )
                bucket.tokens -= 1.0
            bucket.in_progress += 1
            return None

    def release(self, gateway_id: str) -> None:
        """The admitted batch is done (answered or failed)."""
        with self._lock:
            bucket = self._buckets.get(gateway_id)
            if bucket is not None and bucket.in_progress > 0:
                bucket.in_progress -= 1


def _admission(request: Request, settings: Settings) -> GatewayAdmission:
    admission = getattr(request.app.state, "ingest_admission", None)
    if admission is None:  # made on first use: the app factory stays untouched
        admission = GatewayAdmission.from_settings(settings)
        request.app.state.ingest_admission = admission
    return admission


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
        429: {"description": "gateway over its batch rate or concurrency limit; see Retry-After"},
        503: {"description": "database unavailable or busy; see Retry-After"},
    },
)
async def ingest(request: Request, ctx: ContextDep, gateway: GatewayDep) -> IngestResponse:
    """Verify and store a gateway batch; every item gets a final result."""
    admission = _admission(request, ctx.settings)
    refused = admission.admit(gateway.gateway_id)
    if refused is not None:
        retry_after_s, why = refused
        raise rate_limited(f"gateway {gateway.gateway_id!r}: {why}", retry_after_s=retry_after_s)
    try:
        return await _ingest_admitted(request, ctx, gateway)
    finally:
        admission.release(gateway.gateway_id)


async def _ingest_admitted(request: Request, ctx: AppContext, gateway: Gateway) -> IngestResponse:
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
