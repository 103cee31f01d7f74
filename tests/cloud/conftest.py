"""Fixtures for the cloud service: the real app on a real database (SQLite and PostgreSQL).

Every store test runs twice, through the ``db_url`` fixture of tests/conftest.py:
on a fresh SQLite file and on a fresh schema of the private PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cloudtest import SERVER_NOW, World, make_settings, provision
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud_api.app import create_app
from cloud_api.db import make_engine


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
