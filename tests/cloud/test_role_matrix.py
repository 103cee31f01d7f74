"""Every route x every kind of caller -> the status class it must get, on SQLite and PostgreSQL.

``MATRIX`` has one row per route (method, path template as FastAPI lists it).
``test_every_route_has_a_row`` enumerates ``app.routes`` and FAILS for a route
without a row (and for a row whose route is gone), so a new route cannot ship
without saying who may call it. ``test_role_matrix`` then sends each row's
request as each caller to the real app and checks the status class:

- ``OK``: any 2xx;
- ``401``: no credential or the wrong kind (a gateway key on a people route);
- ``403``: a valid credential whose role may not do this;
- ``404``: the resource is on a site outside the caller's scope.

Callers: ``anonymous`` (no header), one person per role scoped to site A
(``guard``, ``technician``, ``supervisor``, ``customer``; ``admin`` is not scoped),
``gateway`` (site A's gateway API key) and ``outsider``: a person of site B
holding the role the row names in ``outsider_role`` (by default the first of
supervisor, technician, customer, guard that the route admits), so the cell
tests site scope rather than the role check.

Adding a route: append a row with :func:`people` (people routes) or explicit
``expect`` and a ``call`` that builds a request that SUCCEEDS for an allowed
caller on site A (``m.site_a``, ``m.unique`` for names that must not collide).
See /work/coord/api.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import provisioning_seed
import pytest
from cloudtest import (
    SERVER_KEY,
    SERVER_NOW,
    World,
    frame_item,
    make_batch,
    make_frame,
    make_settings,
)
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from cloud_api.app import create_app
from cloud_api.auth.passwords import hash_password
from cloud_api.auth.tokens import issue_token, signing_key
from cloud_api.db import session_scope
from cloud_api.models import Role, Site, User, UserSite
from patrol_protocol.frames import Sos

OK: Literal["ok"] = "ok"
Expect = Literal["ok", 401, 403, 404]
CALLERS = (
    "anonymous",
    "guard",
    "technician",
    "supervisor",
    "customer",
    "admin",
    "gateway",
    "outsider",
)
SCOPED_ROLES = (Role.SUPERVISOR, Role.TECHNICIAN, Role.CUSTOMER, Role.GUARD)
PASSWORD = "matrix password 2026"
PASSWORD_HASH = hash_password(PASSWORD)  # once: argon2 per user would dominate the run


@dataclass
class Matrix:
    """The provisioned world the calls are built against."""

    world: World
    site_a: int
    site_b: int
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    @property
    def unique(self) -> str:
        """A fresh suffix for names that must not collide between cells."""
        return f"m{next(self.counter)}"

    def next_seq(self) -> int:
        return next(self.counter)


@dataclass(frozen=True)
class Call:
    """A request that succeeds for an allowed caller."""

    path_params: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    form: dict[str, str] | None = None
    content: bytes | None = None
    """A raw body (e.g. text/csv), with its Content-Type in ``headers``."""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    expect: dict[str, Expect]
    call: Callable[[Matrix], Call] = lambda _m: Call()
    outsider_role: Role | None = None
    """Role of the site-B person in the ``outsider`` cell (default: see module doc)."""


def people(*allowed: Role, outsider: Expect = 404) -> dict[str, Expect]:
    """A people route: ``allowed`` roles (admin always) OK, other roles 403, no person 401.

    ``outsider`` is what a site-B person with an allowed role gets (404 for a
    site-scoped resource, OK for one that is not).
    """
    ok = {*allowed, Role.ADMIN}
    expect: dict[str, Expect] = {"anonymous": 401, "gateway": 401, "outsider": outsider}
    for role in Role:
        expect[role.value] = OK if role in ok else 403
    return expect


def public() -> dict[str, Expect]:
    return dict.fromkeys(CALLERS, OK)


def gateway_only() -> dict[str, Expect]:
    expect: dict[str, Expect] = dict.fromkeys(CALLERS, 401)
    expect["gateway"] = OK
    return expect


def _ingest_call(m: Matrix) -> Call:
    return Call(json=make_batch(frame_item(1, make_frame(Sos(trigger=1), seq=m.next_seq()))))


def _events_call(m: Matrix) -> Call:
    return Call(query={"site_id": m.site_a})


def _site_call(m: Matrix) -> Call:
    return Call(path_params={"site_id": m.site_a})


# compliance (compliance-score): a post of site A, a plan, and a scored shift of the
# site-A guard user's own guard record (so the guard may read its score).
def _post_a(m: Matrix) -> int:
    from cloud_api.models import Post

    with session_scope(m.world.engine) as session:
        return session.scalars(select(Post.id).where(Post.site_id == m.site_a)).first() or 0


def _plan_call(m: Matrix) -> Call:
    return Call(
        path_params={"post_id": _post_a(m)},
        json={
            "name": f"plan {m.unique}",
            "checkpoints": [m.world.checkpoint_ids["sun"], m.world.checkpoint_ids["tag2"]],
            "schedule": "interval",
            "interval_s": 3600,
            "round_duration_s": 1200,
            "grace_s": 300,
            "windows": [{"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "22:00", "end": "06:00"}],
        },
    )


def _seed_plan(m: Matrix) -> Call:
    from cloud_api.models import CompliancePlan

    with session_scope(m.world.engine) as session:
        plan = CompliancePlan(
            post_id=_post_a(m),
            name=f"plan {m.unique}",
            checkpoints=[],
            schedule_kind="interval",
            interval_s=3600,
            round_duration_s=1200,
            windows=[],
        )
        session.add(plan)
        session.flush()
        return Call(path_params={"plan_id": plan.id})


def _guard_a(m: Matrix) -> int:
    from cloud_api.models import Guard

    with session_scope(m.world.engine) as session:
        user_id = session.scalars(select(User.id).where(User.username == "guard")).one()
        guard = session.scalars(select(Guard).where(Guard.user_id == user_id)).one_or_none()
        if guard is None:
            guard = Guard(site_id=m.site_a, name="Guard A", user_id=user_id)
            session.add(guard)
            session.flush()
        return guard.id


def _shift_body(m: Matrix) -> Call:
    return Call(
        json={
            "post_id": _post_a(m),
            "guard_id": _guard_a(m),
            "device_id": "0000a001",
            "start": "2026-11-24T21:00:00Z",
            "end": "2026-11-25T05:00:00Z",
        }
    )


def _scored_shift(m: Matrix) -> Call:
    from datetime import UTC, datetime

    from cloud_api.compliance import store

    with session_scope(m.world.engine) as session:
        shift = store.create_shift(
            session,
            post_id=_post_a(m),
            guard_id=_guard_a(m),
            device_id=0xA001,
            start=datetime(2026, 11, 24, 21, tzinfo=UTC),
            end=datetime(2026, 11, 25, 5, tzinfo=UTC),
        )
        store.score_shift_row(session, shift.id, now=SERVER_NOW, hooks=store.Hooks())
        return Call(path_params={"shift_id": shift.id})


def _site_span(m: Matrix) -> Call:
    return Call(
        path_params={"site_id": m.site_a},
        query={"start": "2026-11-24T00:00:00Z", "end": "2026-11-26T00:00:00Z"},
    )


# compliance workflow (compliance-workflow): an item, a complaint seeded on site A per call.
def _wf_item(m: Matrix, **call: Any) -> Call:
    from datetime import timedelta

    from cloud_api.compliance import workflow as wf
    from cloud_api.compliance.types import Severity
    from cloud_api.models import RectificationItem

    with session_scope(m.world.engine) as session:
        dev_id, _ = wf.record_deviation(
            session,
            wf.DeviationInput(
                source=wf.Source.INSPECTION,
                source_key=f"matrix:{m.unique}",
                rule="inspection_fail",
                severity=Severity.MAJOR,
                site_id=m.site_a,
                post_id=_post_a(m),
                guard_id=None,
                occurred_at=SERVER_NOW - timedelta(hours=1),
                detail="matrix",
            ),
            scope_key="matrix",
            now=SERVER_NOW,
        )
        item_id = session.scalars(
            select(RectificationItem.id).where(RectificationItem.deviation_id == dev_id)
        ).one()
    return Call(path_params={"item_id": item_id}, **call)


def _wf_owner(m: Matrix) -> Call:
    with session_scope(m.world.engine) as session:
        owner = session.scalars(select(User.id).where(User.username == "supervisor")).one()
    return _wf_item(m, json={"owner_id": owner})


def _wf_complaint(m: Matrix) -> Call:
    from cloud_api.compliance import workflow as wf

    with session_scope(m.world.engine) as session:
        complaint = wf.file_complaint(
            session,
            site_id=m.site_a,
            post_id=None,
            channel=wf.ComplaintChannel.PHONE,
            description="matrix",
            filed_by=None,
            received_at=SERVER_NOW,
        )
        return Call(path_params={"complaint_id": complaint.id}, json={"status": "investigating"})


def _wf_site(m: Matrix, **call: Any) -> Call:
    return Call(path_params={"site_id": m.site_a}, **call)


# ---------------------------------------------------------------- the table


def _alert_call(m: Matrix, json: Any = None) -> Call:
    """alerts (issue 7): a fresh open alert of site A (earlier ones resolved), by its id."""
    from sqlalchemy import text as sql_text

    with session_scope(m.world.engine) as session:
        session.execute(sql_text("UPDATE alerts SET state = 'resolved' WHERE state <> 'resolved'"))
    m.world.results(frame_item(1, make_frame(Sos(trigger=2), seq=m.next_seq())))
    alert_id = m.world.scalar("SELECT max(id) FROM alerts")
    return Call(path_params={"alert_id": alert_id}, json=json)


def _console_login_call(m: Matrix) -> Call:
    """console (issue 7): the login form with its double-submit CSRF cookie; ``next`` is the
    (public) form again, so the followed redirect does not depend on the caller's header."""
    token = f"csrf-{m.unique}"
    return Call(
        form={
            "username": "supervisor",
            "password": PASSWORD,
            "csrf": token,
            "next": "/console/login",
        },
        headers={"Cookie": f"patrol_login_csrf={token}"},
    )


def _console_item_call(m: Matrix) -> Call:
    """console (issue 7): a fresh open rectification item of site A, closed with a note."""
    from datetime import UTC, datetime

    from cloud_api.compliance import workflow as wf
    from cloud_api.compliance.types import Severity

    now = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    spec = wf.DeviationInput(
        source=wf.Source.ROUND,
        source_key=f"matrix-console:{m.unique}",
        rule="round_missed",
        severity=Severity.MINOR,
        site_id=m.site_a,
        post_id=None,
        guard_id=None,
        occurred_at=now,
        detail="matrix",
    )
    with session_scope(m.world.engine) as session:
        deviation_id, _ = wf.record_deviation(session, spec, scope_key="matrix-console", now=now)
    item_id = m.world.scalar(
        "SELECT id FROM rectification_items WHERE deviation_id = :d", d=deviation_id
    )
    return Call(path_params={"item_id": item_id}, form={"note": "fixed on site"})


MATRIX: dict[tuple[str, str], Row] = {
    # health, the API description and login: public
    ("GET", "/healthz"): Row(public()),
    ("GET", "/openapi.json"): Row(public()),
    ("GET", "/docs"): Row(public()),
    ("GET", "/docs/oauth2-redirect"): Row(public()),
    ("GET", "/redoc"): Row(public()),
    ("POST", "/api/v1/auth/token"): Row(
        public(), lambda _m: Call(form={"username": "supervisor", "password": PASSWORD})
    ),
    ("GET", "/api/v1/auth/me"): Row(
        people(Role.GUARD, Role.TECHNICIAN, Role.SUPERVISOR, Role.CUSTOMER, outsider=OK)
    ),
    # ingest: gateways only
    ("POST", "/api/v1/ingest"): Row(gateway_only(), _ingest_call),
    # events: guards (own), supervisors and customers of the site, admins
    ("GET", "/api/v1/events"): Row(
        people(Role.GUARD, Role.SUPERVISOR, Role.CUSTOMER), _events_call
    ),
    ("GET", "/api/v1/events.csv"): Row(
        people(Role.GUARD, Role.SUPERVISOR, Role.CUSTOMER), _events_call
    ),
    # the hash chain: the site's supervisors and customers, admins
    ("GET", "/api/v1/sites/{site_id}/chain"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _site_call
    ),
    ("GET", "/api/v1/sites/{site_id}/chain/verify"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _site_call
    ),
    ("POST", "/api/v1/sites/{site_id}/chain/verify"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _site_call
    ),
    # devices: technicians and supervisors of the device's site, admins
    ("GET", "/api/v1/devices/{device_id}/sequence"): Row(
        people(Role.TECHNICIAN, Role.SUPERVISOR),
        lambda _m: Call(path_params={"device_id": "0000a001"}),
    ),
    # provisioning (cloud-store): organisation by admins; everything else by technicians
    # of the object's site (and admins); seeds in tests/cloud/provisioning_seed.py
    ("POST", "/api/v1/companies"): Row(
        people(outsider=403), lambda m: Call(json={"name": f"Company {m.unique}"})
    ),
    ("POST", "/api/v1/customers"): Row(
        people(outsider=403), lambda m: Call(json={"name": f"Customer {m.unique}"})
    ),
    ("POST", "/api/v1/sites"): Row(
        people(outsider=403), lambda m: Call(json={"name": f"Site {m.unique}"})
    ),
    ("POST", "/api/v1/sites/{site_id}/zones"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(path_params={"site_id": m.site_a}, json={"name": f"Zone {m.unique}"}),
    ),
    ("POST", "/api/v1/sites/{site_id}/guards"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(path_params={"site_id": m.site_a}, json={"name": f"Guard {m.unique}"}),
    ),
    ("POST", "/api/v1/sites/{site_id}/equipment"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(
            path_params={"site_id": m.site_a}, json={"kind": "radio", "label": m.unique}
        ),
    ),
    ("POST", "/api/v1/equipment/{item_id}/assign"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(**provisioning_seed.equipment(m.world.engine, m.site_a, assign=True)),
    ),
    ("POST", "/api/v1/equipment/{item_id}/return"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(**provisioning_seed.equipment(m.world.engine, m.site_a, assign=False)),
    ),
    ("POST", "/api/v1/wearables/{device_id}/assign"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(
            path_params={"device_id": "0000a001"},
            json={"guard_id": provisioning_seed.guard_id(m.world.engine, m.site_a)},
        ),
    ),
    ("POST", "/api/v1/gateways"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(json={"gateway_id": f"gw-{m.unique}", "site_id": m.site_a}),
    ),
    ("POST", "/api/v1/gateways/{gateway_id}/rotate"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(**provisioning_seed.gateway(m.world.engine, m.site_a)),
    ),
    ("POST", "/api/v1/gateways/{gateway_id}/revoke"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(
            **provisioning_seed.gateway(m.world.engine, m.site_a), json={"reason": "test"}
        ),
    ),
    ("POST", "/api/v1/wearables"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(json={"device_id": f"{m.next_seq():08x}", "site_id": m.site_a}),
    ),
    ("POST", "/api/v1/beacons"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(json={"beacon_id": f"{0xB0000 + m.next_seq():08x}", "site_id": m.site_a}),
    ),
    ("POST", "/api/v1/equipment-tags"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(json={"tag_id": f"{0xE0000 + m.next_seq():08x}", "site_id": m.site_a}),
    ),
    ("POST", "/api/v1/nfc-tags"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(
            json={"uid": f"04{m.next_seq():012x}", "site_id": m.site_a, "tag_type": "ntag424"}
        ),
    ),
    ("POST", "/api/v1/devices/{kind}/{device_id}/rotate"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(**provisioning_seed.wearable(m.world.engine, m.site_a), json={}),
    ),
    ("POST", "/api/v1/devices/{kind}/{device_id}/revoke"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(
            **provisioning_seed.wearable(m.world.engine, m.site_a), json={"reason": "test"}
        ),
    ),
    ("POST", "/api/v1/mqtt-accounts/{username}/rotate"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(**provisioning_seed.mqtt_account(m.world.engine, m.site_a)),
    ),
    ("POST", "/api/v1/nfc-tags/{uid}/rotate"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(**provisioning_seed.ntag424(m.world.engine, m.site_a), json={}),
    ),
    ("POST", "/api/v1/nfc-tags/{uid}/revoke"): Row(
        people(Role.TECHNICIAN),
        lambda m: Call(
            **provisioning_seed.ntag424(m.world.engine, m.site_a), json={"reason": "test"}
        ),
    ),
    ("POST", "/api/v1/sites/{site_id}/master-key/rotate"): Row(people(Role.TECHNICIAN), _site_call),
    ("POST", "/api/v1/wearables/{device_id}/commands"): Row(
        people(Role.TECHNICIAN),
        lambda _m: Call(
            path_params={"device_id": "0000a001"}, json={"kind": "locate", "duration_s": 5}
        ),
    ),
    ("GET", "/api/v1/sites/{site_id}/mosquitto"): Row(people(Role.TECHNICIAN), _site_call),
    ("GET", "/api/v1/gateway/mosquitto"): Row(gateway_only()),
    ("GET", "/api/v1/sites/{site_id}/audit"): Row(
        people(Role.TECHNICIAN, Role.SUPERVISOR), _site_call
    ),
    ("POST", "/api/v1/sites/{site_id}/provisioning/csv"): Row(
        people(Role.TECHNICIAN), lambda m: Call(**provisioning_seed.csv_call(m.site_a))
    ),
    # compliance (compliance-score): targets, plans, shifts, scores
    ("GET", "/api/v1/posts/{post_id}/targets"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER),
        lambda m: Call(path_params={"post_id": _post_a(m)}),
    ),
    ("PUT", "/api/v1/posts/{post_id}/targets"): Row(
        people(Role.SUPERVISOR), lambda m: Call(path_params={"post_id": _post_a(m)}, json={})
    ),
    ("POST", "/api/v1/posts/{post_id}/plans"): Row(people(Role.SUPERVISOR), _plan_call),
    ("DELETE", "/api/v1/plans/{plan_id}"): Row(people(Role.SUPERVISOR), _seed_plan),
    ("PUT", "/api/v1/customers/{customer_id}/weights"): Row(
        people(outsider=403),
        lambda _m: Call(path_params={"customer_id": 1}, json={"weights": {"rounds": 60}}),
    ),
    ("POST", "/api/v1/shifts"): Row(people(Role.SUPERVISOR), _shift_body),
    ("GET", "/api/v1/sites/{site_id}/shifts"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _site_span
    ),
    ("GET", "/api/v1/shifts/{shift_id}/score"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER, Role.GUARD), _scored_shift
    ),
    ("GET", "/api/v1/shifts/{shift_id}/score/history"): Row(people(Role.SUPERVISOR), _scored_shift),
    ("POST", "/api/v1/shifts/{shift_id}/score"): Row(people(Role.SUPERVISOR), _scored_shift),
    ("GET", "/api/v1/sites/{site_id}/scores"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _site_span
    ),
    # compliance workflow (compliance-workflow): supervision, return visit, incentive
    ("GET", "/api/v1/sites/{site_id}/rectification-items"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _wf_site
    ),
    ("GET", "/api/v1/sites/{site_id}/rectification-counts"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _wf_site
    ),
    ("GET", "/api/v1/rectification-items/{item_id}"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _wf_item
    ),
    ("POST", "/api/v1/rectification-items/{item_id}/transitions"): Row(
        people(Role.SUPERVISOR), lambda m: _wf_item(m, json={"action": "start"})
    ),
    ("POST", "/api/v1/rectification-items/{item_id}/owner"): Row(
        people(Role.SUPERVISOR), _wf_owner
    ),
    ("POST", "/api/v1/sites/{site_id}/inspections"): Row(
        people(Role.SUPERVISOR),
        lambda m: _wf_site(
            m,
            json={
                "post_id": _post_a(m),
                "inspected_at": "2026-11-25T03:00:00Z",
                "result": "pass",
            },
        ),
    ),
    ("GET", "/api/v1/sites/{site_id}/inspections"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _wf_site
    ),
    ("POST", "/api/v1/sites/{site_id}/complaints"): Row(
        people(Role.CUSTOMER, Role.SUPERVISOR),
        lambda m: _wf_site(m, json={"channel": "phone", "description": "gate left open"}),
    ),
    ("GET", "/api/v1/sites/{site_id}/complaints"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _wf_site
    ),
    ("POST", "/api/v1/complaints/{complaint_id}/status"): Row(
        people(Role.SUPERVISOR), _wf_complaint
    ),
    ("POST", "/api/v1/sites/{site_id}/surveys"): Row(
        people(Role.CUSTOMER), lambda m: _wf_site(m, json={"rating": 4})
    ),
    ("GET", "/api/v1/sites/{site_id}/surveys"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER), _wf_site
    ),
    ("GET", "/api/v1/sites/{site_id}/reports/{month}.{fmt}"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER),
        lambda m: Call(path_params={"site_id": m.site_a, "month": "2026-11", "fmt": "csv"}),
    ),
    ("GET", "/api/v1/sites/{site_id}/rankings/guards"): Row(
        people(Role.SUPERVISOR, Role.CUSTOMER, Role.GUARD), _wf_site
    ),
    ("GET", "/api/v1/rankings/sites"): Row(people(Role.SUPERVISOR, outsider=OK)),
    # alerts (issue 7, helper "alerts"): supervisors of the alert's site and admins
    ("GET", "/api/v1/alerts"): Row(
        people(Role.SUPERVISOR), lambda m: Call(query={"site_id": m.site_a, "state": "live"})
    ),
    ("GET", "/api/v1/alerts/stream"): Row(
        people(Role.SUPERVISOR), lambda m: Call(query={"site_id": m.site_a, "max_s": 0})
    ),
    ("GET", "/api/v1/alerts/{alert_id}"): Row(people(Role.SUPERVISOR), _alert_call),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): Row(
        people(Role.SUPERVISOR), lambda m: _alert_call(m, json={"note": "on my way"})
    ),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): Row(
        people(Role.SUPERVISOR), lambda m: _alert_call(m, json={"note": "false alarm"})
    ),
    # console (issue 7, helper "console"): pages for supervisors and admins. Successful
    # form posts answer 303 to a page (followed here); scripts get problem+json errors.
    ("GET", "/console/login"): Row(public()),
    ("POST", "/console/login"): Row(public(), _console_login_call),
    ("POST", "/console/logout"): Row(public()),
    ("GET", "/console/alerts"): Row(people(Role.SUPERVISOR, outsider=OK)),
    ("POST", "/console/alerts/{alert_id}/acknowledge"): Row(
        people(Role.SUPERVISOR),
        lambda m: Call(path_params=_alert_call(m).path_params, form={"note": "on my way"}),
    ),
    ("GET", "/console/sites/{site_id}"): Row(people(Role.SUPERVISOR), _wf_site),
    ("GET", "/console/posts/{post_id}"): Row(
        people(Role.SUPERVISOR),
        lambda m: Call(
            path_params={
                "post_id": m.world.scalar(
                    "SELECT min(id) FROM posts WHERE site_id = :s", s=m.site_a
                )
            }
        ),
    ),
    ("POST", "/console/items/{item_id}/close"): Row(people(Role.SUPERVISOR), _console_item_call),
    ("GET", "/console/sites/{site_id}/devices"): Row(
        people(Role.TECHNICIAN, Role.SUPERVISOR), _wf_site
    ),
    ("GET", "/console/sites/{site_id}/reports/{month}.{fmt}"): Row(
        people(Role.SUPERVISOR),
        lambda m: Call(path_params={"site_id": m.site_a, "month": "2026-11", "fmt": "csv"}),
    ),
}

# ---------------------------------------------------------------- machinery


def _app_routes(db_path: str) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, API routes and the docs alike (HEAD mirrors GET)."""
    app = create_app(make_settings(f"sqlite:///{db_path}"))
    return {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        for method in route.methods or ()
        if method != "HEAD"
    }


def test_every_route_has_a_row(tmp_path: Any) -> None:
    routes = _app_routes(str(tmp_path / "routes.sqlite"))
    missing = sorted(routes - set(MATRIX))
    stale = sorted(set(MATRIX) - routes)
    assert not missing, f"routes without a row in MATRIX (add them): {missing}"
    assert not stale, f"rows in MATRIX for routes that no longer exist: {stale}"
    for key, row in MATRIX.items():
        assert set(row.expect) == set(CALLERS), f"{key}: expectations for {set(CALLERS)}"


def _outsider_role(row: Row) -> Role:
    if row.outsider_role is not None:
        return row.outsider_role
    for role in SCOPED_ROLES:
        if row.expect[role.value] == OK:
            return role
    return Role.SUPERVISOR


def _tokens(world: World, site_a: int, site_b: int) -> dict[str, str]:
    """A user and access token per role on site A, and a site-B user per scoped role."""
    key = signing_key(SERVER_KEY)
    tokens: dict[str, str] = {}
    with session_scope(world.engine) as session:
        for name, role, site in [
            *((role.value, role, site_a) for role in SCOPED_ROLES),
            ("admin", Role.ADMIN, None),
            *((f"outsider-{role.value}", role, site_b) for role in SCOPED_ROLES),
        ]:
            user = User(username=name, password_hash=PASSWORD_HASH, role=role.value)
            session.add(user)
            session.flush()
            if site is not None:
                session.add(UserSite(user_id=user.id, site_id=site))
            tokens[name], _ = issue_token(
                key, user_id=user.id, username=name, role=role.value, now=SERVER_NOW, ttl_s=900
            )
    return tokens


def _status_class(status: int) -> Expect | int:
    if 200 <= status < 300:
        return OK
    return status


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda key: f"{key[0]} {key[1]}")
def test_role_matrix(world: World, route: tuple[str, str]) -> None:
    method, template = route
    row = MATRIX[route]
    with session_scope(world.engine) as session:
        site_a = session.scalars(select(Site.id).where(Site.name == "Harbour depot")).one()
        site_b = session.scalars(select(Site.id).where(Site.name == "Other site")).one()
    # One accepted frame, so per-device reports exist.
    world.results(frame_item(1, make_frame(Sos(trigger=1), seq=1)))
    tokens = _tokens(world, site_a, site_b)
    m = Matrix(world, site_a, site_b)
    outsider = f"outsider-{_outsider_role(row).value}"
    headers_of = {
        "anonymous": {},
        "gateway": {"Authorization": f"Bearer {world.api_key}"},
        "outsider": {"Authorization": f"Bearer {tokens[outsider]}"},
        **{
            role.value: {"Authorization": f"Bearer {tokens[role.value]}"}
            for role in (*SCOPED_ROLES, Role.ADMIN)
        },
    }
    got: dict[str, Expect | int] = {}
    bodies: dict[str, str] = {}
    for caller in CALLERS:
        call = row.call(m)
        response = world.client.request(
            method,
            template.format(**call.path_params),
            params=call.query,
            json=call.json,
            data=call.form,
            content=call.content,
            headers={**headers_of[caller], **call.headers},
        )
        got[caller] = _status_class(response.status_code)
        bodies[caller] = response.text[:200]
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json", caller
    wrong = {c: (row.expect[c], got[c], bodies[c]) for c in CALLERS if got[c] != row.expect[c]}
    assert not wrong, f"{method} {template}: caller -> (expected, got, body): {wrong}"
