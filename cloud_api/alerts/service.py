"""Alert life cycle: created from ingest, acknowledged, escalated, resolved.

Every step runs in the caller's transaction and leaves, in that same transaction:
an ``alert_log`` row (its id is the SSE event id), one webhook delivery row per
matching target (:mod:`.webhooks`, delivered later by the worker, so a step is
never lost when a target is down), a notification (PostgreSQL ``NOTIFY``, sent by
the server only at commit; on SQLite published in this process after commit) and,
for acknowledge/escalate/resolve with the InfluxDB sink on, one ``sos_response``
line in the sink outbox.

Idempotency: an alert is keyed by its event (``alerts.event_id`` unique), and the
ingest hook only runs for an event row it inserted, so a duplicate or retried SOS
frame never creates a second alert. A new SOS frame of a wearable that already has
a live (not resolved) alert counts as a repeat of that alert.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud_api.alerts import hub as alert_hub
from cloud_api.alerts.settings import EscalationStep
from cloud_api.models import Alert, AlertLog
from cloud_api.sink import outbox
from cloud_api.sink.compliance_lines import sos_response_line

log = logging.getLogger(__name__)

CHANNEL: Final = alert_hub.CHANNEL
"""PostgreSQL NOTIFY channel; the payload is the alert snapshot as JSON (< 8000 bytes)."""

TRIGGERS: Final[dict[int, str]] = {1: "button", 2: "man_down", 3: "test"}
"""SOS frame ``trigger`` (docs/protocol.md) -> alert trigger."""

OPEN: Final = "open"
ACKNOWLEDGED: Final = "acknowledged"
RESOLVED: Final = "resolved"
MAX_NOTE_CHARS: Final = 2000


class AlertConflict(Exception):
    """The transition is not allowed from the alert's state (the API answers 409)."""


class AlertNotFound(Exception):
    """No such alert, or not in the caller's sites (the API answers 404)."""


def snapshot(alert: Alert, *, action: str, log_id: int) -> dict[str, Any]:
    """What subscribers and webhooks receive for one step of ``alert``."""

    def iso(moment: datetime | None) -> str | None:
        return None if moment is None else moment.isoformat()

    return {
        "log_id": log_id,
        "action": action,
        "id": alert.id,
        "site_id": alert.site_id,
        "device": f"{alert.device_id:08x}",
        "seq": alert.seq,
        "trigger": alert.trigger,
        "state": alert.state,
        "level": alert.level,
        "repeats": alert.repeats,
        "device_time": iso(alert.device_time),
        "created_at": iso(alert.created_at),
        "acknowledged_at": iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "ack_note": alert.ack_note,
        "resolved_at": iso(alert.resolved_at),
        "resolved_by": alert.resolved_by,
        "resolve_note": alert.resolve_note,
    }


# ---------------------------------------------------------------- notification


def _publish_after_commit(session: Session, payload: dict[str, Any]) -> None:
    """Hand ``payload`` to this process's hub once the transaction commits (SQLite)."""
    pending: list[dict[str, Any]] = session.info.setdefault("alerts_pending", [])
    pending.append(payload)
    if session.info.get("alerts_listening"):
        return
    session.info["alerts_listening"] = True
    url = alert_hub.hub_key(session.get_bind().engine.url)

    def committed(sess: Session) -> None:
        items = sess.info.pop("alerts_pending", [])
        if items:
            hub = alert_hub.hub_for(url)
            for item in items:
                hub.publish(item)

    def rolled_back(sess: Session, _previous: Any = None) -> None:
        sess.info.pop("alerts_pending", None)

    sa_event.listen(session, "after_commit", committed)
    sa_event.listen(session, "after_rollback", rolled_back)


def _notify(session: Session, payload: dict[str, Any]) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Delivered by the server at commit, to every process LISTENing (this one too).
        session.execute(select(func.pg_notify(CHANNEL, json.dumps(payload))))
    else:
        _publish_after_commit(session, payload)


def _step(
    session: Session,
    alert: Alert,
    *,
    action: str,
    now: datetime,
    actor: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Log one step, queue its webhooks, notify; the snapshot sent."""
    from cloud_api.alerts import webhooks  # webhooks imports snapshot() from here

    entry = AlertLog(
        alert_id=alert.id,
        site_id=alert.site_id,
        at=now,
        action=action,
        actor=actor,
        note=note,
        level=alert.level,
    )
    session.add(entry)
    session.flush()
    payload = snapshot(alert, action=action, log_id=entry.id)
    webhooks.enqueue_deliveries(session, alert, payload, now=now)
    _notify(session, payload)
    return payload


def _response_line(session: Session, alert: Alert, transition: str, now: datetime) -> None:
    elapsed_s = max(0.0, (now - alert.created_at).total_seconds())
    line = sos_response_line(
        site_id=alert.site_id,
        alert_id=alert.id,
        trigger=alert.trigger,
        transition=transition,
        at=now,
        elapsed_s=elapsed_s,
        device=f"{alert.device_id:08x}",
        level=alert.level,
    )
    outbox.enqueue(session, lines=line, n_points=1, now=now)


def _next_escalation(
    created_at: datetime, level: int, chain: Sequence[EscalationStep]
) -> datetime | None:
    if level + 1 >= len(chain):
        return None
    return created_at + timedelta(seconds=chain[level + 1].after_s)


# ---------------------------------------------------------------- creation (ingest hook)


def _live_alert(session: Session, device_id: int) -> Alert | None:
    return session.execute(
        select(Alert).where(Alert.device_id == device_id, Alert.state != RESOLVED).with_for_update()
    ).scalar_one_or_none()


def on_sos_event(
    session: Session,
    *,
    event_id: int,
    row: Mapping[str, Any],
    site_id: int,
    now: datetime,
    chain: Sequence[EscalationStep],
) -> dict[str, Any]:
    """An SOS event row was just inserted (ingest, same transaction): alert at once.

    Returns the snapshot sent (action ``created`` or ``repeated``).
    """
    body = row.get("body") or {}
    trigger = TRIGGERS.get(int(body.get("trigger", 1)), "button")
    device_id = int(row["device_id"])
    live = _live_alert(session, device_id)
    if live is None:
        alert = Alert(
            site_id=site_id,
            event_id=event_id,
            device_id=device_id,
            seq=int(row["seq"]),
            trigger=trigger,
            state=OPEN,
            level=0,
            repeats=0,
            device_time=row["device_time"],
            created_at=now,
            next_escalation_at=_next_escalation(now, 0, chain),
        )
        try:
            with session.begin_nested():
                session.add(alert)
                session.flush()
        except IntegrityError:  # another process created this wearable's live alert first
            live = _live_alert(session, device_id)
            if live is None:
                raise
        else:
            log.warning(
                "ALERT %d: %s of wearable %08x at site %d", alert.id, trigger, device_id, site_id
            )
            return _step(session, alert, action="created", now=now)
    live.repeats += 1
    return _step(session, live, action="repeated", now=now)


# ---------------------------------------------------------------- people's transitions


def get_alert(session: Session, alert_id: int, *, site_ids: frozenset[int] | None) -> Alert:
    """The alert if it exists and is in ``site_ids`` (None: any site), else AlertNotFound."""
    alert = session.get(Alert, alert_id, with_for_update=True)
    if alert is None or (site_ids is not None and alert.site_id not in site_ids):
        raise AlertNotFound(f"no alert {alert_id}")
    return alert


def _clean_note(note: str | None) -> str | None:
    if note is None:
        return None
    note = note.strip()
    return note or None


def acknowledge(
    session: Session,
    alert: Alert,
    *,
    person: str,
    note: str | None,
    now: datetime,
    influx: bool,
) -> dict[str, Any]:
    """open -> acknowledged (stops escalation); AlertConflict from any other state."""
    if alert.state == RESOLVED:
        raise AlertConflict(
            f"alert {alert.id} was already resolved by {alert.resolved_by} at "
            f"{alert.resolved_at.isoformat() if alert.resolved_at else '?'}"
        )
    if alert.state == ACKNOWLEDGED:
        raise AlertConflict(
            f"alert {alert.id} was already acknowledged by {alert.acknowledged_by} at "
            f"{alert.acknowledged_at.isoformat() if alert.acknowledged_at else '?'}"
        )
    alert.state = ACKNOWLEDGED
    alert.acknowledged_at = now
    alert.acknowledged_by = person
    alert.ack_note = _clean_note(note)
    alert.next_escalation_at = None
    if influx:
        _response_line(session, alert, "acknowledged", now)
    return _step(session, alert, action="acknowledged", now=now, actor=person, note=alert.ack_note)


def resolve(
    session: Session,
    alert: Alert,
    *,
    person: str,
    note: str | None,
    now: datetime,
    influx: bool,
) -> dict[str, Any]:
    """open|acknowledged -> resolved; AlertConflict when already resolved."""
    if alert.state == RESOLVED:
        raise AlertConflict(
            f"alert {alert.id} was already resolved by {alert.resolved_by} at "
            f"{alert.resolved_at.isoformat() if alert.resolved_at else '?'}"
        )
    alert.state = RESOLVED
    alert.resolved_at = now
    alert.resolved_by = person
    alert.resolve_note = _clean_note(note)
    alert.next_escalation_at = None
    if influx:
        _response_line(session, alert, "resolved", now)
    return _step(session, alert, action="resolved", now=now, actor=person, note=alert.resolve_note)


# ---------------------------------------------------------------- escalation (worker)


def escalate_due(
    session: Session,
    *,
    now: datetime,
    chain: Sequence[EscalationStep],
    influx: bool,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Escalate every open alert whose deadline passed, one level each; the snapshots.

    Rows are locked ``FOR UPDATE SKIP LOCKED`` (PostgreSQL): several workers never
    escalate the same alert twice; SQLite serialises writers (BEGIN IMMEDIATE).
    """
    alerts = list(
        session.execute(
            select(Alert)
            .where(
                Alert.state == OPEN,
                Alert.next_escalation_at.is_not(None),
                Alert.next_escalation_at <= now,
            )
            .order_by(Alert.next_escalation_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    sent: list[dict[str, Any]] = []
    for alert in alerts:
        if alert.level + 1 >= len(chain):
            alert.next_escalation_at = None
            continue
        alert.level += 1
        alert.next_escalation_at = _next_escalation(alert.created_at, alert.level, chain)
        step = chain[alert.level]
        log.warning("ALERT %d escalated to level %d (%s)", alert.id, alert.level, step.name)
        if influx:
            _response_line(session, alert, "escalated", now)
        sent.append(
            _step(
                session,
                alert,
                action="escalated",
                now=now,
                actor=step.name,
                note=f"not acknowledged within {step.after_s} s",
            )
        )
    return sent


def log_since(
    session: Session, after_id: int, *, site_ids: frozenset[int] | None, limit: int = 500
) -> list[dict[str, Any]]:
    """Steps after ``after_id`` (an SSE ``Last-Event-ID``), as snapshots of the alert now.

    The alert's fields are its current ones; ``action`` and ``log_id`` are the step's.
    """
    query = (
        select(AlertLog, Alert)
        .join(Alert, Alert.id == AlertLog.alert_id)
        .where(AlertLog.id > after_id)
        .order_by(AlertLog.id)
        .limit(limit)
    )
    if site_ids is not None:
        query = query.where(AlertLog.site_id.in_(sorted(site_ids)))
    return [
        snapshot(alert, action=entry.action, log_id=entry.id)
        for entry, alert in session.execute(query).all()
    ]
