"""Fixtures for the alert tests: the real app on SQLite and PostgreSQL, people, a clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alertstest import Clock, Site, make_settings, people, provision
from fastapi.testclient import TestClient

from cloud_api.alerts.settings import get_alert_settings
from cloud_api.app import create_app
from cloud_api.db import make_engine


@pytest.fixture(autouse=True)
def _no_background_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests drive escalation and webhooks by hand (AlertWorker.run_once) with their clock."""
    monkeypatch.setenv("PATROL_CLOUD_ALERTS_RUN_WORKER", "false")
    get_alert_settings.cache_clear()
    yield
    get_alert_settings.cache_clear()


@pytest.fixture
def make_site(db_url: str) -> Iterator[Callable[..., Site]]:
    made: list[Site] = []

    def factory(**overrides: Any) -> Site:
        settings = make_settings(db_url, **overrides)
        clock = Clock()
        app = create_app(settings, clock=clock)
        engine = make_engine(db_url)
        api_key, _other, _ids = provision(engine, settings)
        client = TestClient(app)
        client.__enter__()
        site = Site(client, engine, settings, api_key, people(engine), clock)
        made.append(site)
        return site

    yield factory
    for site in made:
        site.client.__exit__(None, None, None)
        site.engine.dispose()


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    return make_site()
