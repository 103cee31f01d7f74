"""Helpers for the alert tests: a provisioned site, people with tokens, a movable clock.

Reuses tests/cloud/cloudtest.py (the same test site, wearable 0000a001 and gateway),
so an SOS frame here is exactly what the edge forwards.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cloud"))

from cloudtest import (
    ADMIN_TOKEN,
    GATEWAY_ID,
    SERVER_KEY,
    SERVER_NOW,
    frame_item,
    make_batch,
    make_frame,
    make_settings,
    provision,
)
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from cloud_api.auth.tokens import issue_token, signing_key
from cloud_api.auth.users import create_user
from cloud_api.db import session_scope
from cloud_api.models import Role
from cloud_api.models import Site as SiteRow
from cloud_api.settings import Settings
from patrol_protocol.frames import Sos

__all__ = [
    "ADMIN_TOKEN",
    "GATEWAY_ID",
    "SERVER_KEY",
    "SERVER_NOW",
    "Clock",
    "People",
    "Site",
    "frame_item",
    "make_batch",
    "make_frame",
    "make_settings",
    "people",
    "provision",
    "sos_item",
]


@dataclass
class Clock:
    """Server time the tests move by hand (the app and the worker read it)."""

    now: datetime = SERVER_NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class People:
    """Access tokens by name: sam (supervisor, site A), olga (supervisor, site B), tia
    (technician, site A); and the two site ids."""

    site_a: int
    site_b: int
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, name: str) -> dict[str, str]:
        token = ADMIN_TOKEN if name == "admin" else self.tokens[name]
        return {"Authorization": f"Bearer {token}"}


def people(engine: Engine) -> People:
    key = signing_key(SERVER_KEY)
    with session_scope(engine) as session:
        site_a = session.scalars(select(SiteRow).where(SiteRow.name == "Harbour depot")).one()
        site_b = session.scalars(select(SiteRow).where(SiteRow.name == "Other site")).one()
        out = People(site_a.id, site_b.id)
        for name, role, site in [
            ("sam", Role.SUPERVISOR, site_a),
            ("olga", Role.SUPERVISOR, site_b),
            ("tia", Role.TECHNICIAN, site_a),
        ]:
            user, _ = create_user(
                session, username=name, role=role, password="pw " * 6, sites=[site]
            )
            out.tokens[name], _ = issue_token(
                key, user_id=user.id, username=name, role=role.value, now=SERVER_NOW, ttl_s=86_400
            )
    return out


def sos_item(seq: int, *, trigger: int = 1, gw_seq: int | None = None) -> dict[str, Any]:
    """A signed SOS frame of wearable 0000a001 as the edge forwards it."""
    return frame_item(gw_seq if gw_seq is not None else seq, make_frame(Sos(trigger), seq=seq))


def ingest(client: TestClient, api_key: str, *items: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(
        "/api/v1/ingest", json=make_batch(*items), headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


@dataclass
class Site:
    """The app (TestClient, lifespan run), its database, the gateway key, people, clock."""

    client: TestClient
    engine: Engine
    settings: Settings
    api_key: str
    people: People
    clock: Clock
