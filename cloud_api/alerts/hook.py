"""The one call ingest makes (cloud_api/ingest.py, ``_insert_pending``).

Kept apart so ingest imports a single function: after an SOS frame's event row was
inserted (never for a duplicate), the alert is made in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from cloud_api.alerts import service
from cloud_api.alerts.settings import get_alert_settings
from patrol_protocol.frames import Kind


def on_event(
    session: Session, *, event_id: int, row: Mapping[str, Any], site_id: int, now: datetime
) -> None:
    """Alert for an inserted SOS event row (``row`` as inserted into ``events``); else nothing."""
    if row.get("kind") != Kind.SOS:
        return
    service.on_sos_event(
        session,
        event_id=event_id,
        row=row,
        site_id=site_id,
        now=now,
        chain=get_alert_settings().chain(),
    )
