"""The thin provisioning API: secrets returned once, then usable end to end."""

from __future__ import annotations

import base64

from cloudtest import ADMIN_TOKEN, World, frame_item, make_batch, make_frame

from patrol_protocol.frames import Sos

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_provisioned_gateway_and_wearable_work_end_to_end(world: World) -> None:
    site = world.client.post("/api/v1/sites", json={"name": "Depot 7"}, headers=ADMIN)
    assert site.status_code == 201
    assert site.json() | {"id": 0} == {"id": 0, "name": "Depot 7", "timezone": "UTC"}
    site_id = site.json()["id"]
    gw = world.client.post(
        "/api/v1/gateways", json={"gateway_id": "gw-depot-7", "site_id": site_id}, headers=ADMIN
    ).json()
    wearable = world.client.post(
        "/api/v1/wearables", json={"device_id": "0000b001", "site_id": site_id}, headers=ADMIN
    ).json()
    key = base64.b64decode(wearable["key_b64"])
    assert (wearable["device_id"], wearable["key_id"], len(key)) == ("0000b001", 1, 32)
    raw = make_frame(Sos(trigger=3), seq=1, device_id=0x0000B001, key=key)
    item = frame_item(1, raw, topic="patrol/v1/dev/0000b001/up")
    response = world.ingest(make_batch(item, gateway_id="gw-depot-7"), api_key=gw["api_key"])
    assert response.json()["results"] == [
        {"gw_seq": 1, "status": "accepted", "key": "0000b001:1", "reason": None}
    ]
    assert [e.flags for e in world.events()] == [[]]


def test_provisioning_needs_the_admin_token(world: World) -> None:
    gateway = {"Authorization": f"Bearer {world.api_key}"}
    response = world.client.post("/api/v1/sites", json={"name": "X"}, headers=gateway)
    assert response.status_code == 401


def test_conflicts_and_unknown_sites(world: World) -> None:
    again = world.client.post("/api/v1/sites", json={"name": "Harbour depot"}, headers=ADMIN)
    assert (again.status_code, again.json()["detail"]) == (
        409,
        "site 'Harbour depot' already exists",
    )
    wearable = world.client.post(
        "/api/v1/wearables", json={"device_id": "0000a001", "site_id": 1}, headers=ADMIN
    )
    assert wearable.status_code == 409
    nowhere = world.client.post(
        "/api/v1/gateways", json={"gateway_id": "gw-x", "site_id": 999}, headers=ADMIN
    )
    assert (nowhere.status_code, nowhere.json()["detail"]) == (404, "no site 999")
    bad_id = world.client.post(
        "/api/v1/wearables", json={"device_id": "A001", "site_id": 1}, headers=ADMIN
    )
    assert bad_id.status_code == 422
