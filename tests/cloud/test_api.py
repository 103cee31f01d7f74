"""HTTP behaviour of the app: credentials, body limits, malformed input, events, health."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from cloudtest import (
    ADMIN_TOKEN,
    OTHER_GATEWAY_ID,
    World,
    frame_item,
    make_batch,
    make_frame,
)

from patrol_protocol.frames import Boot, Sos
from patrol_protocol.limits import MAX_BATCH_BYTES

SOS_1 = make_frame(Sos(trigger=1), seq=1)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer pgw_wrong"}, {"Authorization": "Basic Z3c6cGFzcw=="}],
    ids=["missing", "wrong_key", "not_bearer"],
)
def test_wrong_gateway_key_is_401(world: World, headers: dict[str, str]) -> None:
    response = world.client.post(
        "/api/v1/ingest", json=make_batch(frame_item(1, SOS_1)), headers=headers
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert world.scalar("SELECT count(*) FROM events") == 0


def test_batch_naming_another_gateway_is_403(world: World) -> None:
    response = world.ingest(make_batch(frame_item(1, SOS_1), gateway_id=OTHER_GATEWAY_ID))
    assert response.status_code == 403
    assert world.scalar("SELECT count(*) FROM events") == 0


def test_oversized_body_is_413_before_parsing(world: World) -> None:
    body = b"{" + b" " * MAX_BATCH_BYTES + b"}"
    response = world.client.post(
        "/api/v1/ingest",
        content=body,
        headers={"Authorization": f"Bearer {world.api_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["detail"] == f"batch body is {len(body)} bytes, limit {MAX_BATCH_BYTES}"
    assert world.scalar("SELECT count(*) FROM rejected_events") == 0


def test_streamed_body_over_the_limit_is_413(make_world: Callable[..., World]) -> None:
    world = make_world(max_batch_bytes=1000)

    def chunks() -> object:
        for _ in range(5):
            yield b" " * 300

    response = world.client.post(
        "/api/v1/ingest",
        content=chunks(),  # type: ignore[arg-type]
        headers={"Authorization": f"Bearer {world.api_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["detail"] == "batch body exceeds 1000 bytes"


def test_malformed_json_is_422_and_recorded(world: World) -> None:
    body = b'{"v": 1, "gateway_id": "gw-test-1", "items": [}'
    response = world.client.post(
        "/api/v1/ingest",
        content=body,
        headers={"Authorization": f"Bearer {world.api_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith("not an ingest batch: (body): Invalid JSON")
    rows = world.rows("SELECT reason, item_type, raw, gateway_pk IS NOT NULL FROM rejected_events")
    assert [tuple(r) for r in rows] == [("malformed", "batch", body, True)]


def test_wrong_envelope_is_422_and_recorded(world: World) -> None:
    batch = make_batch(frame_item(1, SOS_1)) | {"v": 2}
    response = world.ingest(batch)
    assert response.status_code == 422
    assert response.json()["detail"] == "not an ingest batch: v: Input should be 1"
    assert world.scalar("SELECT reason FROM rejected_events") == "malformed"


def test_empty_item_list_is_422(world: World) -> None:
    assert world.ingest(make_batch()).status_code == 422


def test_a_malformed_item_is_rejected_alone(world: World) -> None:
    naive_time = frame_item(2, make_frame(Boot(1, 0, 0, 0), seq=2)) | {
        "received_at": "2026-11-25T04:00:05"
    }
    results = world.results(
        frame_item(1, SOS_1), naive_time, frame_item(3, make_frame(Sos(3), seq=3))
    )
    assert [(r["gw_seq"], r["status"], r["reason"]) for r in results] == [
        (1, "accepted", None),
        (2, "rejected", "malformed"),
        (3, "accepted", None),
    ]
    row = world.rows("SELECT item_type, raw, detail FROM rejected_events")[0]
    assert row[0] == "malformed_item"
    assert json.loads(row[1])["received_at"] == "2026-11-25T04:00:05"
    assert "received_at" in row[2]


def test_gw_seq_beyond_signed_64_bits_is_rejected_alone(world: World) -> None:
    results = world.results(frame_item(2**63, SOS_1), frame_item(2**63 - 1, SOS_1))
    assert [(r["status"], r["reason"]) for r in results] == [
        ("rejected", "malformed"),
        ("accepted", None),
    ]
    assert world.scalar("SELECT gw_seq FROM rejected_events") is None


def test_item_without_gw_seq_fails_the_batch(world: World) -> None:
    item = frame_item(1, SOS_1)
    del item["gw_seq"]
    assert world.ingest(make_batch(item)).status_code == 422


def test_events_need_the_admin_token(world: World) -> None:
    world.results(frame_item(1, SOS_1))
    assert world.client.get("/api/v1/events").status_code == 401
    gateway = {"Authorization": f"Bearer {world.api_key}"}
    assert world.client.get("/api/v1/events", headers=gateway).status_code == 401
    assert world.client.get("/api/v1/events", headers=ADMIN).status_code == 200


def test_events_without_a_configured_admin_token_are_closed(
    make_world: Callable[..., World],
) -> None:
    world = make_world(admin_token=None)
    response = world.client.get("/api/v1/events", headers=ADMIN)
    assert response.status_code == 401
    # Without a configured admin token the bearer must be a person's access token.
    assert response.json()["detail"] == "invalid token: Not enough segments"


def test_events_filter_and_page(world: World) -> None:
    frames = [
        make_frame(Sos(1), seq=1),
        make_frame(Boot(1, 0, 0, 0), seq=2),
        make_frame(Sos(3), seq=3),
    ]
    world.results(*(frame_item(n, raw) for n, raw in enumerate(frames, 1)))
    sos = world.client.get("/api/v1/events?kind=sos&device_id=0000a001", headers=ADMIN).json()
    assert [(e["key"], e["kind"]) for e in sos["items"]] == [
        ("0000a001:3", "sos"),
        ("0000a001:1", "sos"),
    ]
    first = world.client.get("/api/v1/events?limit=2", headers=ADMIN).json()
    assert [e["seq"] for e in first["items"]] == [3, 2]
    rest = world.client.get(
        "/api/v1/events", params={"limit": 2, "cursor": first["next_cursor"]}, headers=ADMIN
    ).json()
    assert ([e["seq"] for e in rest["items"]], rest["next_cursor"]) == ([1], None)
    other = world.client.get("/api/v1/events?device_id=0000a002", headers=ADMIN).json()
    assert other["items"] == []


@pytest.mark.parametrize("query", ["device_id=A001", "device_id=a001", "kind=teleport", "limit=0"])
def test_events_bad_filters_are_422(world: World, query: str) -> None:
    response = world.client.get(f"/api/v1/events?{query}", headers=ADMIN)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_healthz(world: World) -> None:
    response = world.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "database": "ok"})


def test_openapi_lists_the_routes_and_the_batch_body(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    # Every route's presence and access rule is checked by test_role_matrix.py.
    assert set(spec["paths"]) >= {
        "/healthz",
        "/api/v1/ingest",
        "/api/v1/events",
        "/api/v1/events.csv",
        "/api/v1/sites",
        "/api/v1/gateways",
        "/api/v1/wearables",
        "/api/v1/sites/{site_id}/chain",
        "/api/v1/sites/{site_id}/chain/verify",
        "/api/v1/devices/{device_id}/sequence",
        "/api/v1/auth/token",
        "/api/v1/auth/me",
    }
    body = spec["paths"]["/api/v1/ingest"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/IngestBatch"}
    schemas = spec["components"]["schemas"]
    assert {"IngestBatch", "DeviceFrameItem", "AdvertItem", "ObservationItem"} <= set(schemas)
    assert "$defs" not in schemas["IngestBatch"]
