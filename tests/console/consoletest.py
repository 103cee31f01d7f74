"""Helpers for the console tests: the real app served by uvicorn on SQLite, people, an item.

The site, gateway and wearable are tests/cloud/cloudtest.py's (via tests/alerts'
helpers), so the SOS frame posted here is exactly what an edge gateway forwards.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "alerts"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cloud"))

from alertstest import (
    SERVER_NOW,
    Clock,
    frame_item,
    make_batch,
    make_frame,
    make_settings,
    provision,
    sos_item,
)
from sqlalchemy import Engine, select, text

from cloud_api.app import create_app
from cloud_api.auth.users import create_user
from cloud_api.compliance import workflow as wf
from cloud_api.compliance.store import create_shift
from cloud_api.compliance.types import Severity
from cloud_api.db import make_engine, session_scope
from cloud_api.models import Checkpoint, CompliancePlan, ComplianceTargets, Guard, Post, Role, Site
from cloud_api.server import ServerThread

__all__ = [
    "PASSWORD",
    "Console",
    "frame_item",
    "make_batch",
    "make_frame",
    "sos_item",
    "start_console",
]

PASSWORD = "console test password 2026"
SHIFT_START = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 02:00 in Berlin
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
"""Where the browser tests save each page (build/ is gitignored)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Console:
    """A running app: its URL, database, gateway key, site ids, user ids, seeded item."""

    server: ServerThread
    engine: Engine
    api_key: str
    site_a: int
    site_b: int
    item_id: int
    post_id: int
    user_ids: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def stop(self) -> None:
        self.server.stop()
        self.engine.dispose()


def start_console(db_path: Path) -> Console:
    """Provision a fresh SQLite database, seed people and one open item, serve the app."""
    url = f"sqlite:///{db_path}"
    settings = make_settings(url)
    app = create_app(settings, clock=Clock())
    engine = make_engine(url)
    api_key, _other, _ids = provision(engine, settings)
    user_ids: dict[str, int] = {}
    with session_scope(engine) as session:
        site_a = session.scalars(select(Site).where(Site.name == "Harbour depot")).one()
        site_b = session.scalars(select(Site).where(Site.name == "Other site")).one()
        for name, role, site in [
            ("sam", Role.SUPERVISOR, site_a),
            ("olga", Role.SUPERVISOR, site_b),
            ("tia", Role.TECHNICIAN, site_a),
        ]:
            user, _ = create_user(
                session, username=name, role=role, password=PASSWORD, sites=[site]
            )
            user_ids[name] = user.id
        post = session.scalars(select(Post).where(Post.site_id == site_a.id)).first()
        assert post is not None
        spec = wf.DeviationInput(
            source=wf.Source.ROUND,
            source_key="console-test:round-1",
            rule="round_missed",
            severity=Severity.MAJOR,
            site_id=site_a.id,
            post_id=post.id,
            guard_id=None,
            occurred_at=SERVER_NOW,
            detail="Round 02:00 at Main gate missed",
        )
        deviation_id, created = wf.record_deviation(
            session, spec, scope_key="console-test", now=SERVER_NOW
        )
        assert created
        item_id = session.execute(
            text("SELECT id FROM rectification_items WHERE deviation_id = :d"), {"d": deviation_id}
        ).scalar_one()
        # A shift running at the server's time (04:01 UTC), hourly rounds of three checkpoints.
        checkpoints = list(
            session.scalars(
                select(Checkpoint.id).where(Checkpoint.post_id == post.id).order_by(Checkpoint.id)
            )
        )[:3]
        session.add(ComplianceTargets(post_id=post.id, equipment=[]))
        session.add(
            CompliancePlan(
                post_id=post.id,
                name="night",
                checkpoints=checkpoints,
                ordered=False,
                schedule_kind="interval",
                interval_s=3600,
                round_duration_s=1200,
                grace_s=300,
                windows=[{"weekdays": list(range(7)), "start": "00:00", "end": "00:00"}],
            )
        )
        guard = Guard(site_id=site_a.id, name="Night guard")
        session.add(guard)
        session.flush()
        create_shift(
            session,
            post_id=post.id,
            guard_id=guard.id,
            device_id=0x0000A001,
            start=SHIFT_START,
            end=SHIFT_START + timedelta(hours=6),
        )
        ids = (site_a.id, site_b.id, post.id)
    server = ServerThread(app, free_port(), timeout_graceful_shutdown=5)
    server.start()
    return Console(server, engine, api_key, ids[0], ids[1], int(item_id), ids[2], user_ids)
