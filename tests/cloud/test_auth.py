"""People log in: argon2 hashes, short-lived tokens, lockout across requests, roles, scope.

Every test runs on SQLite and on PostgreSQL through the real app; time is an
injected clock, never a sleep.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cloudtest import ADMIN_TOKEN, make_settings
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cloud_api.app import create_app
from cloud_api.auth.passwords import WeakPasswordError
from cloud_api.auth.tokens import signing_key
from cloud_api.auth.users import create_user
from cloud_api.db import make_engine, session_scope
from cloud_api.models import Role, User
from cloud_api.provisioning import create_site

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class App:
    client: TestClient
    engine: Engine
    clock: Clock
    site_ids: dict[str, int]


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    settings = make_settings(db_url, login_max_failures=3, login_lockout_s=600)
    clock = Clock()
    application = create_app(settings, clock=clock)
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        north = create_site(session, name="North")
        south = create_site(session, name="South")
        create_user(session, username="sue", role=Role.SUPERVISOR, password=PASSWORD, sites=[north])
        create_user(session, username="ada", role=Role.ADMIN, password=PASSWORD)
        site_ids = {"North": north.id, "South": south.id}
    with TestClient(application) as client:
        yield App(client, engine, clock, site_ids)
    engine.dispose()


def login(app: App, username: str, password: str) -> tuple[int, dict[str, object]]:
    response = app.client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    )
    return response.status_code, response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_returns_a_short_lived_token_naming_role_and_sites(app: App) -> None:
    status, body = login(app, "sue", PASSWORD)
    assert status == 200
    assert (body["token_type"], body["expires_in"]) == ("bearer", 900)
    me = app.client.get("/api/v1/auth/me", headers=bearer(str(body["access_token"])))
    assert me.json() == {
        "username": "sue",
        "role": "supervisor",
        "site_ids": [app.site_ids["North"]],
    }


def test_only_an_argon2id_hash_is_stored(app: App) -> None:
    with session_scope(app.engine) as session:
        stored = session.scalars(select(User.password_hash).where(User.username == "sue")).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_deployments_hash_with_argon2_cffis_recommended_parameters() -> None:
    """The suite's cheap hashes (conftest) never leak into a process without the variable."""
    env = {k: v for k, v in os.environ.items() if k != "PATROL_TEST_CHEAP_PASSWORD_HASHES"}
    code = "from cloud_api.auth.passwords import hash_password; print(hash_password('x' * 12))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    # RFC 9106's low-memory profile, argon2-cffi's default: 64 MiB, 3 passes, 4 lanes.
    assert out.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


@pytest.mark.parametrize(("username", "password"), [("sue", "wrong password!"), ("bob", PASSWORD)])
def test_wrong_password_and_unknown_user_get_the_same_answer(
    app: App, username: str, password: str
) -> None:
    assert login(app, username, password) == (
        401,
        {
            "type": "tag:patrol-verification,2026:problem:unauthenticated",
            "title": "Authentication required",
            "status": 401,
            "detail": "wrong username or password",
            "instance": "/api/v1/auth/token",
        },
    )


def test_repeated_failures_lock_the_account_until_the_lockout_ends(app: App) -> None:
    for _ in range(3):
        assert login(app, "sue", "wrong password!")[0] == 401
    response = app.client.post("/api/v1/auth/token", data={"username": "sue", "password": PASSWORD})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "601"
    app.clock.now = NOW + timedelta(seconds=601)
    assert login(app, "sue", PASSWORD)[0] == 200


def test_a_success_resets_the_failure_count(app: App) -> None:
    for _ in range(2):
        assert login(app, "sue", "wrong password!")[0] == 401
    assert login(app, "sue", PASSWORD)[0] == 200
    for _ in range(2):
        assert login(app, "sue", "wrong password!")[0] == 401
    assert login(app, "sue", PASSWORD)[0] == 200


def test_an_expired_token_is_refused(app: App) -> None:
    token = str(login(app, "sue", PASSWORD)[1]["access_token"])
    app.clock.now = NOW + timedelta(seconds=900)
    response = app.client.get("/api/v1/auth/me", headers=bearer(token))
    assert (response.status_code, response.json()["detail"]) == (401, "token expired")


def test_a_token_signed_with_another_key_is_refused(app: App) -> None:
    claims = {
        "sub": "1",
        "name": "ada",
        "role": "admin",
        "iss": "patrol-cloud",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 900,
    }
    forged = jwt.encode(claims, signing_key(bytes(32)), algorithm="HS256")
    response = app.client.get("/api/v1/auth/me", headers=bearer(forged))
    assert response.status_code == 401
    assert response.json()["detail"].startswith("invalid token: Signature verification failed")


def test_a_token_with_alg_none_is_refused(app: App) -> None:
    claims = {
        "sub": "1",
        "name": "ada",
        "role": "admin",
        "iss": "patrol-cloud",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 900,
    }
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    assert app.client.get("/api/v1/auth/me", headers=bearer(unsigned)).status_code == 401


def test_a_disabled_account_loses_its_live_tokens(app: App) -> None:
    token = str(login(app, "sue", PASSWORD)[1]["access_token"])
    with session_scope(app.engine) as session:
        user = session.scalars(select(User).where(User.username == "sue")).one()
        user.disabled_at = NOW
    response = app.client.get("/api/v1/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert login(app, "sue", PASSWORD)[0] == 401


@pytest.mark.parametrize(
    ("who", "site", "expected"),
    [
        ("sue", "North", 200),
        ("sue", "South", 404),  # not her site: answered like a missing one
        ("ada", "South", 200),
        ("admin-token", "South", 200),
        ("nobody", "North", 401),
    ],
)
def test_site_records_are_scoped_to_the_callers_sites(
    app: App, who: str, site: str, expected: int
) -> None:
    if who == "admin-token":
        token = ADMIN_TOKEN
    elif who == "nobody":
        token = "not-a-token"
    else:
        token = str(login(app, who, PASSWORD)[1]["access_token"])
    site_id = app.site_ids[site]
    response = app.client.get(f"/api/v1/sites/{site_id}/chain", headers=bearer(token))
    assert response.status_code == expected
    if expected == 404:
        assert response.json()["detail"] == f"no site {site_id}"


def test_weak_passwords_are_refused_at_creation(app: App) -> None:
    with session_scope(app.engine) as session, pytest.raises(WeakPasswordError):
        create_user(session, username="tim", role=Role.GUARD, password="short")


def test_a_generated_password_is_returned_once_and_works(app: App) -> None:
    with session_scope(app.engine) as session:
        _, password = create_user(session, username="tim", role=Role.TECHNICIAN)
    assert len(password) == 24
    assert login(app, "tim", password)[0] == 200


def test_server_key_is_not_the_token_key() -> None:
    server_key = base64.b64decode(base64.b64encode(bytes(range(32))))
    assert signing_key(server_key) != server_key and len(signing_key(server_key)) == 32
