"""A small site for the workflow, ranking and report tests, on a real database.

"Kunming depot" (Asia/Shanghai, UTC+8 all year) has two posts, Main gate and Car
park; two supervisors (sup-li, sup-wang: the lower id first), two guards (``guards``
rows "Zhao Wei" and "Qian Lei", each linked to a login: guard-zhao, guard-qian) and
a customer (cust-chen). "Other site" exists so
scope checks have something to refuse. Users get a fixed password so tests can
log in through the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.auth.users import create_user
from cloud_api.db import init_db, make_engine, make_sessionmaker, session_scope
from cloud_api.models import Guard, Role
from cloud_api.provisioning import create_post, create_site

PASSWORD = "correct horse battery staple"
ZONE = "Asia/Shanghai"
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in Kunming


@dataclass(frozen=True, slots=True)
class Depot:
    engine: Engine
    sessions: sessionmaker[Session]
    site: int
    other_site: int
    gate: int
    car_park: int
    other_post: int
    sup_li: int
    sup_wang: int
    guard_zhao: int
    """``guards.id`` (what shifts, deviations and rankings name)."""
    guard_qian: int
    user_zhao: int
    """The login of guard Zhao (role guard)."""
    user_qian: int
    customer: int
    other_customer: int


def build_depot(engine: Engine) -> Depot:
    init_db(engine)
    with session_scope(engine) as s:
        site = create_site(s, name="Kunming depot", timezone=ZONE)
        other = create_site(s, name="Other site", timezone="UTC")
        gate = create_post(s, site=site, name="Main gate")
        car_park = create_post(s, site=site, name="Car park")
        other_post = create_post(s, site=other, name="Lobby")
        ids = {}
        for name, role, sites in (
            ("sup-li", Role.SUPERVISOR, [site]),
            ("sup-wang", Role.SUPERVISOR, [site]),
            ("guard-zhao", Role.GUARD, [site]),
            ("guard-qian", Role.GUARD, [site]),
            ("cust-chen", Role.CUSTOMER, [site]),
            ("cust-other", Role.CUSTOMER, [other]),
        ):
            user, _ = create_user(s, username=name, role=role, password=PASSWORD, sites=sites)
            ids[name] = user.id
        zhao = Guard(site_id=site.id, name="Zhao Wei", user_id=ids["guard-zhao"])
        qian = Guard(site_id=site.id, name="Qian Lei", user_id=ids["guard-qian"])
        s.add_all([zhao, qian])
        s.flush()
        return Depot(
            engine=engine,
            sessions=make_sessionmaker(engine),
            site=site.id,
            other_site=other.id,
            gate=gate.id,
            car_park=car_park.id,
            other_post=other_post.id,
            sup_li=ids["sup-li"],
            sup_wang=ids["sup-wang"],
            guard_zhao=zhao.id,
            guard_qian=qian.id,
            user_zhao=ids["guard-zhao"],
            user_qian=ids["guard-qian"],
            customer=ids["cust-chen"],
            other_customer=ids["cust-other"],
        )


@contextmanager
def depot_on(db_url: str) -> Iterator[Depot]:
    engine = make_engine(db_url)
    try:
        yield build_depot(engine)
    finally:
        engine.dispose()
