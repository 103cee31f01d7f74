"""Fixtures for the cloud service: the real app on a real database (SQLite and PostgreSQL).

Every store test runs twice, through the ``db_url`` fixture: on a fresh SQLite file
and on a fresh schema of the private PostgreSQL database of this test run
(``pg_url`` from tests/conftest.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from cloudtest import SERVER_NOW, World, make_settings, provision
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from cloud_api.app import create_app
from cloud_api.db import make_engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a private schema in the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cloud.db"
        return
    pg_url: str = request.getfixturevalue("pg_url")
    schema = f"cloud_{uuid.uuid4().hex[:12]}"
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def make_world(db_url: str) -> Iterator[Callable[..., World]]:
    """Factory: a provisioned world with optional settings overrides (one per test)."""
    engines: list[Engine] = []
    clients: list[TestClient] = []

    def factory(**overrides: Any) -> World:
        settings = make_settings(db_url, **overrides)
        app = create_app(settings, clock=lambda: SERVER_NOW)
        engine = make_engine(db_url)
        engines.append(engine)
        api_key, other_api_key, ids = provision(engine, settings)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return World(client, engine, settings, api_key, other_api_key, ids)

    yield factory
    for client in clients:
        client.__exit__(None, None, None)
    for engine in engines:
        engine.dispose()


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()
