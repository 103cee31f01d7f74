"""Signed webhooks: every alert step to every matching target, retried until delivered.

Signature (docs/alerts.md): for each attempt the worker sends

    X-Patrol-Timestamp: <unix seconds of this attempt>
    X-Patrol-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
    X-Patrol-Delivery: <delivery id>    (the same on every retry: deduplicate on it)
    X-Patrol-Event: created | repeated | acknowledged | escalated | resolved

A receiver recomputes the HMAC over the timestamp and the raw body, compares in
constant time, and refuses a timestamp more than 5 minutes from its clock (a
captured request cannot be replayed later). Secrets are stored AES-GCM-encrypted
(:class:`cloud_api.crypto_store.SecretBox`) and never logged.

Delivery: rows are queued in the step's transaction (nothing is lost when a target
is down), claimed with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so many
processes never send one row at once), sent outside any transaction with a
timeout, and completed or rescheduled with exponential backoff. Every attempt is a
row of ``alert_webhook_attempts`` (status or error, duration). A 2xx answer
delivers; a timeout, a transport error or any other status is retried, forever,
capped at ``webhook_retry_max_s`` between attempts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cloud_api.alerts import mqtt_out
from cloud_api.crypto_store import SecretBox
from cloud_api.models import (
    Alert,
    AlertWebhookAttempt,
    AlertWebhookDelivery,
    AlertWebhookTarget,
    Site,
)

SIGNATURE_HEADER: Final = "X-Patrol-Signature"
TIMESTAMP_HEADER: Final = "X-Patrol-Timestamp"
DELIVERY_HEADER: Final = "X-Patrol-Delivery"
EVENT_HEADER: Final = "X-Patrol-Event"
REPLAY_WINDOW_S: Final = 300
"""What receivers should accept between the timestamp and their clock."""
MAX_ERROR_CHARS: Final = 500
_CONTEXT_PREFIX: Final = b"alert-webhook:"


def _context(name: str) -> bytes:
    return _CONTEXT_PREFIX + name.encode()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Patrol-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(
    secret: bytes, *, timestamp: str, signature: str, body: bytes, now_s: float
) -> bool:
    """A receiver's check (also used by the tests): fresh timestamp, matching HMAC."""
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > REPLAY_WINDOW_S:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def add_target(
    session: Session,
    *,
    box: SecretBox,
    name: str,
    url: str,
    secret: bytes,
    site: Site | None = None,
    min_level: int = 0,
) -> AlertWebhookTarget:
    """Register a webhook target (``site`` None: every site); the secret is encrypted."""
    if url.startswith("mqtt://"):
        mqtt_out.parse(url)  # ValueError for a malformed one
    elif not url.startswith(("http://", "https://")):
        raise ValueError("webhook url must be http://, https:// or mqtt://")
    if len(secret) < 16 and not url.startswith("mqtt://"):
        raise ValueError("webhook secret must be at least 16 bytes")
    target = AlertWebhookTarget(
        name=name,
        url=url,
        secret_enc=box.encrypt(secret, context=_context(name)),
        site_id=None if site is None else site.id,
        min_level=min_level,
    )
    session.add(target)
    session.flush()
    return target


def enqueue_deliveries(
    session: Session, alert: Alert, payload: dict[str, Any], *, now: datetime
) -> int:
    """One delivery row per enabled target of the alert's site at its level; how many."""
    targets = session.execute(
        select(AlertWebhookTarget.id).where(
            AlertWebhookTarget.disabled_at.is_(None),
            or_(AlertWebhookTarget.site_id.is_(None), AlertWebhookTarget.site_id == alert.site_id),
            AlertWebhookTarget.min_level <= alert.level,
        )
    ).scalars()
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    count = 0
    for target_id in targets:
        session.add(
            AlertWebhookDelivery(
                target_id=target_id,
                log_id=payload["log_id"],
                body=body,
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )
        count += 1
    return count


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to this worker, with what it needs to send it."""

    id: int
    url: str
    secret: bytes
    body: str
    attempts: int
    event: str


def claim(
    session: Session, *, box: SecretBox, owner: str, now: datetime, lease_s: float, limit: int = 20
) -> list[Claimed]:
    """Lease due, undelivered rows to ``owner`` (the caller commits)."""
    due = list(
        session.execute(
            select(AlertWebhookDelivery.id)
            .where(
                AlertWebhookDelivery.delivered_at.is_(None),
                AlertWebhookDelivery.next_attempt_at <= now,
                or_(
                    AlertWebhookDelivery.lease_until.is_(None),
                    AlertWebhookDelivery.lease_until < now,
                ),
            )
            .order_by(AlertWebhookDelivery.next_attempt_at, AlertWebhookDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    if not due:
        return []
    session.execute(
        update(AlertWebhookDelivery)
        .where(AlertWebhookDelivery.id.in_(due))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
    )
    rows = session.execute(
        select(AlertWebhookDelivery, AlertWebhookTarget)
        .join(AlertWebhookTarget, AlertWebhookTarget.id == AlertWebhookDelivery.target_id)
        .where(AlertWebhookDelivery.id.in_(due))
        .order_by(AlertWebhookDelivery.id)
    ).all()
    out: list[Claimed] = []
    for delivery, target in rows:
        secret = box.decrypt(target.secret_enc, context=_context(target.name))
        out.append(
            Claimed(
                id=delivery.id,
                url=target.url,
                secret=secret,
                body=delivery.body,
                attempts=delivery.attempts,
                event=str(json.loads(delivery.body).get("action", "")),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: HTTP status (None on a transport error/timeout), error text."""

    status: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def send(client: httpx.Client, item: Claimed, *, now_s: Callable[[], float]) -> Outcome:
    """POST one signed delivery (outside any transaction); mqtt:// targets are published."""
    body = item.body.encode()
    if item.url.startswith("mqtt://"):
        started = time.monotonic()
        try:
            mqtt_out.publish(item.url, item.secret, body, timeout_s=client.timeout.read or 5.0)
        except (mqtt_out.MqttTargetError, OSError, ValueError) as exc:
            error = str(exc)[:MAX_ERROR_CHARS]
            return Outcome(None, error, int((time.monotonic() - started) * 1000))
        return Outcome(200, None, int((time.monotonic() - started) * 1000))
    timestamp = int(now_s())
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(item.secret, timestamp, body),
        DELIVERY_HEADER: str(item.id),
        EVENT_HEADER: item.event,
    }
    started = time.monotonic()
    try:
        response = client.post(item.url, content=body, headers=headers)
    except httpx.TimeoutException:
        return Outcome(None, "timeout", int((time.monotonic() - started) * 1000))
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        return Outcome(None, error, int((time.monotonic() - started) * 1000))
    duration_ms = int((time.monotonic() - started) * 1000)
    if 200 <= response.status_code < 300:
        return Outcome(response.status_code, None, duration_ms)
    return Outcome(response.status_code, f"HTTP {response.status_code}", duration_ms)


def backoff_s(attempts: int, *, initial_s: float, max_s: float) -> float:
    """Seconds before attempt ``attempts + 1``: initial, doubling, capped."""
    return float(min(max_s, initial_s * (2 ** max(0, attempts - 1))))


def record(
    session: Session,
    item: Claimed,
    outcome: Outcome,
    *,
    owner: str,
    now: datetime,
    initial_s: float,
    max_s: float,
) -> None:
    """Log the attempt; mark delivered, or reschedule (only while ``owner`` holds the lease)."""
    delivery = session.get(AlertWebhookDelivery, item.id, with_for_update=True)
    if delivery is None:
        return
    session.add(
        AlertWebhookAttempt(
            delivery_id=item.id,
            at=now,
            status=outcome.status,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )
    if delivery.delivered_at is not None or delivery.lease_owner != owner:
        return  # another worker took it over after our lease ran out; its result counts
    delivery.attempts += 1
    delivery.last_status = outcome.status
    delivery.last_error = outcome.error
    delivery.lease_owner = None
    delivery.lease_until = None
    if outcome.delivered:
        delivery.delivered_at = now
    else:
        delivery.next_attempt_at = now + timedelta(
            seconds=backoff_s(delivery.attempts, initial_s=initial_s, max_s=max_s)
        )
