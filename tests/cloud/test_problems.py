"""Every error is RFC 9457 ``application/problem+json`` with a documented type.

Through the real app on SQLite and PostgreSQL: Starlette's own 404 and 405,
request validation (422 with one entry per field, never echoing the input),
401/403/409/413/429, a database that does not answer (503) and an unhandled
bug (500, which says nothing about the cause but logs it under an incident id).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cloudtest import ADMIN_TOKEN, World, frame_item, make_batch, make_frame
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from cloud_api.api import problems
from cloud_api.auth.users import create_user
from cloud_api.db import make_sessionmaker, session_scope
from cloud_api.models import Role
from patrol_protocol.frames import Sos

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DOCS = Path(__file__).parents[2] / "docs" / "api.md"
# Nothing listens on port 1: connecting is refused at once, a real driver error.
DEAD_PG_URL = "postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=2"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def problem(response: Any) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


def test_unknown_path_is_a_not_found_problem(world: World) -> None:
    body = problem(world.client.get("/api/v1/nothing-here"))
    assert body == {
        "type": "tag:patrol-verification,2026:problem:not-found",
        "title": "Not found",
        "status": 404,
        "detail": "Not Found",
        "instance": "/api/v1/nothing-here",
    }


def test_wrong_method_keeps_the_allow_header(world: World) -> None:
    response = world.client.delete("/api/v1/events", headers=ADMIN)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert problem(response)["type"] == problems.METHOD_NOT_ALLOWED.uri


def test_query_validation_lists_each_field(world: World) -> None:
    response = world.client.get("/api/v1/events?limit=0&site_id=x", headers=ADMIN)
    body = problem(response)
    assert body["type"] == problems.VALIDATION.uri
    assert body["title"] == "Request validation failed"
    assert sorted(body["errors"], key=lambda e: e["field"]) == [
        {
            "in": "query",
            "field": "limit",
            "detail": "Input should be greater than or equal to 1",
            "code": "greater_than_equal",
        },
        {
            "in": "query",
            "field": "site_id",
            "detail": "Input should be a valid integer, unable to parse string as an integer",
            "code": "int_parsing",
        },
    ]


def test_body_validation_points_into_the_body_and_never_echoes_input(world: World) -> None:
    secret = "hunter2-do-not-echo"
    response = world.client.post(
        "/api/v1/auth/token", data={"username": secret, "password": secret, "grant_type": secret}
    )
    body = problem(response)
    assert secret not in response.text
    assert body["errors"] == [
        {
            "in": "body",
            "field": "grant_type",
            "pointer": "#/grant_type",
            "detail": "String should match pattern '^password$'",
            "code": "string_pattern_mismatch",
        }
    ]


def test_a_route_level_invalid_value_has_its_field(world: World) -> None:
    response = world.client.get("/api/v1/events?cursor=bm9wZQ", headers=ADMIN)
    assert problem(response) == {
        "type": problems.VALIDATION.uri,
        "title": "Request validation failed",
        "status": 422,
        "detail": "cursor is not one this service issued",
        "instance": "/api/v1/events",
        "errors": [
            {
                "in": "query",
                "field": "cursor",
                "detail": "cursor is not one this service issued",
                "code": "value_error",
            }
        ],
    }


def test_401_asks_for_a_bearer_token(world: World) -> None:
    response = world.client.get("/api/v1/events")
    assert response.headers["www-authenticate"] == "Bearer"
    assert problem(response)["type"] == problems.UNAUTHENTICATED.uri
    assert response.json()["detail"] == "missing bearer token"


def test_403_names_the_roles_allowed(world: World) -> None:
    with session_scope(world.engine) as session:
        create_user(session, username="gus", role=Role.GUARD, password="guard password 1")
    token = world.client.post(
        "/api/v1/auth/token", data={"username": "gus", "password": "guard password 1"}
    ).json()["access_token"]
    response = world.client.get(
        "/api/v1/sites/1/chain", headers={"Authorization": f"Bearer {token}"}
    )
    body = problem(response)
    assert (body["type"], body["detail"]) == (
        problems.FORBIDDEN.uri,
        "role guard may not do this (allowed: admin, customer, supervisor)",
    )


def test_409_conflict(world: World) -> None:
    first = world.client.post("/api/v1/sites", json={"name": "Twice"}, headers=ADMIN)
    assert first.status_code == 201
    body = problem(world.client.post("/api/v1/sites", json={"name": "Twice"}, headers=ADMIN))
    assert (body["status"], body["type"]) == (409, problems.CONFLICT.uri)


def test_413_content_too_large(make_world: Callable[..., World]) -> None:
    world = make_world(max_batch_bytes=100)
    response = world.ingest(make_batch(frame_item(1, make_frame(Sos(1), seq=1))))
    assert problem(response)["type"] == problems.CONTENT_TOO_LARGE.uri


def test_429_rate_limited_with_retry_after(make_world: Callable[..., World]) -> None:
    world = make_world(login_max_failures=1, login_lockout_s=60)
    with session_scope(world.engine) as session:
        create_user(session, username="ann", role=Role.SUPERVISOR, password="the right password")
    wrong = {"username": "ann", "password": "the wrong password"}
    assert world.client.post("/api/v1/auth/token", data=wrong).status_code == 401
    response = world.client.post("/api/v1/auth/token", data=wrong)
    assert response.headers["retry-after"] == "61"
    assert problem(response)["type"] == problems.RATE_LIMITED.uri


def _kill_database(world: World) -> None:
    """Point the running app at a PostgreSQL that refuses connections."""
    app = world.client.app
    dead = create_engine(DEAD_PG_URL)
    ctx = app.state.ctx  # type: ignore[attr-defined]
    app.state.ctx = dataclasses.replace(  # type: ignore[attr-defined]
        ctx, engine=dead, sessions=make_sessionmaker(dead)
    )


def test_healthz_503_when_the_database_does_not_answer(world: World) -> None:
    _kill_database(world)
    response = world.client.get("/healthz")
    assert response.headers["retry-after"] == "5"
    body = problem(response)
    assert (body["type"], body["detail"], body["checks"]) == (
        problems.UNAVAILABLE.uri,
        "the database does not answer",
        {"database": "unreachable"},
    )


def test_any_route_503_when_the_database_does_not_answer(world: World) -> None:
    _kill_database(world)
    response = world.client.get("/api/v1/events", headers=ADMIN)
    body = problem(response)
    assert response.headers["retry-after"] == "5"
    assert body["detail"] == "the database is unavailable or busy; retry later"
    assert "127.0.0.1" not in response.text and "psycopg" not in response.text
    assert UUID.match(body["incident"])


def test_500_leaks_nothing_and_logs_an_incident(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    app = world.client.app

    @app.get("/boom")  # type: ignore[attr-defined,misc]
    def boom() -> None:
        raise RuntimeError("secret internals: key=0xdeadbeef")

    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="cloud_api.api.problems"):
        response = client.get("/boom")
    body = problem(response)
    assert "deadbeef" not in response.text and "RuntimeError" not in response.text
    assert (body["type"], body["detail"]) == (
        problems.INTERNAL.uri,
        "an internal error occurred; quote the incident id when reporting it",
    )
    assert UUID.match(body["incident"])
    logged = [r for r in caplog.records if body["incident"] in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_openapi_declares_every_error_as_a_problem(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert "500" in operation["responses"], (method, path)
            for code, response in operation["responses"].items():
                if code[0] in "45":
                    assert set(response["content"]) == {"application/problem+json"}, (path, code)


def test_every_problem_type_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for ptype in problems.PROBLEM_TYPES:
        assert f"`{ptype.uri}`" in text, ptype.slug


def test_openapi_documents_credentials_and_roles(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    events = spec["paths"]["/api/v1/events"]["get"]
    assert events["security"] == [{"bearer": []}]
    assert {"401", "403", "404", "422", "500"} <= set(events["responses"])
    assert events["description"].endswith(
        "Roles: customer, guard, supervisor (within their sites) and admin."
    )
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert spec["paths"]["/api/v1/ingest"]["post"]["security"] == [{"bearer": []}]


def test_a_site_id_beyond_64_bits_is_422_not_a_driver_error(world: World) -> None:
    response = world.client.get(f"/api/v1/sites/{2**63}/chain", headers=ADMIN)
    assert problem(response)["errors"] == [
        {
            "in": "path",
            "field": "site_id",
            "detail": "Input should be less than or equal to 9223372036854775807",
            "code": "less_than_equal",
        }
    ]
