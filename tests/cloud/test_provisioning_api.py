"""The thin provisioning API: secrets returned once, then usable end to end."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta

from cloudtest import (
    ADMIN_TOKEN,
    SERVER_KEY,
    SERVER_NOW,
    TAG2_FILE_KEY,
    TAG2_META_KEY,
    TAG2_UID,
    World,
    frame_item,
    make_batch,
    make_frame,
    make_sun,
)
from sqlalchemy import select, update

from cloud_api.auth.tokens import issue_token, signing_key
from cloud_api.db import session_scope
from cloud_api.models import DeviceKey, Post, Role, Site, User, UserSite
from cloud_api.provisioning import create_checkpoint
from patrol_protocol.commands import (
    CommandKind,
    decode_command,
    decode_locate,
    decode_set_config,
    decode_set_time,
    verify_command,
)
from patrol_protocol.frames import TAG_NTAG424_SUN, NfcScan, Sos

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


# ---------------------------------------------------------------- technicians, keys, commands


def _person(world: World, role: Role, site_names: list[str]) -> dict[str, str]:
    """An access token for a new person of ``role`` scoped to ``site_names``."""
    with session_scope(world.engine) as s:
        user = User(username=f"{role.value}-{len(site_names)}", password_hash="x", role=role.value)
        s.add(user)
        s.flush()
        for name in site_names:
            site_id = s.scalars(select(Site.id).where(Site.name == name)).one()
            s.add(UserSite(user_id=user.id, site_id=site_id))
        token, _ = issue_token(
            signing_key(SERVER_KEY),
            user_id=user.id,
            username=user.username,
            role=role.value,
            now=SERVER_NOW,
            ttl_s=900,
        )
    return {"Authorization": f"Bearer {token}"}


def _site_id(world: World, name: str) -> int:
    return int(world.scalar("SELECT id FROM sites WHERE name = :n", n=name))


def test_technicians_provision_only_their_sites(world: World) -> None:
    tech = _person(world, Role.TECHNICIAN, ["Harbour depot"])
    supervisor = _person(world, Role.SUPERVISOR, ["Harbour depot"])
    here, there = _site_id(world, "Harbour depot"), _site_id(world, "Other site")
    ok = world.client.post(
        "/api/v1/wearables", json={"device_id": "0000d001", "site_id": here}, headers=tech
    )
    assert ok.status_code == 201, ok.text
    assert sorted(ok.json()) == [
        "device_id",
        "key_b64",
        "key_id",
        "mqtt_password",
        "mqtt_username",
        "presence_key_b64",
    ]
    elsewhere = world.client.post(
        "/api/v1/wearables", json={"device_id": "0000d002", "site_id": there}, headers=tech
    )
    assert (elsewhere.status_code, elsewhere.json()["detail"]) == (404, f"no site {there}")
    denied = world.client.post(
        "/api/v1/wearables", json={"device_id": "0000d003", "site_id": here}, headers=supervisor
    )
    assert denied.status_code == 403
    # A device of another site is invisible to the technician (404, not 403).
    world.client.post(
        "/api/v1/wearables", json={"device_id": "0000d004", "site_id": there}, headers=ADMIN
    )
    hidden = world.client.post(
        "/api/v1/devices/wearable/0000d004/revoke", json={"reason": "x"}, headers=tech
    )
    assert (hidden.status_code, hidden.json()["detail"]) == (404, "no wearable 0000d004")
    creating_sites = world.client.post("/api/v1/sites", json={"name": "Mine"}, headers=tech)
    assert creating_sites.status_code == 403
    # The audit log names the technician; the supervisor may read it.
    log = world.client.get(f"/api/v1/sites/{here}/audit?limit=3", headers=supervisor)
    assert log.status_code == 200
    assert [(e["action"], e["object_id"], e["actor"]) for e in log.json()] == [
        ("mqtt.create", "0000d001", "technician-1"),
        ("presence.register", "0000d001", "technician-1"),
        ("wearable.register", "0000d001", "technician-1"),
    ]


def test_rotated_key_signs_and_the_old_one_is_refused(world: World) -> None:
    site = _site_id(world, "Harbour depot")
    first = world.client.post(
        "/api/v1/wearables", json={"device_id": "0000b101", "site_id": site}, headers=ADMIN
    ).json()
    rotated = world.client.post(
        "/api/v1/devices/wearable/0000b101/rotate", json={"overlap_s": 0}, headers=ADMIN
    )
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert (body["key_id"], body["old_keys_retire_at"]) == (
        2,
        SERVER_NOW.isoformat().replace("+00:00", "Z"),
    )
    new_key = base64.b64decode(body["key_b64"])
    old_key = base64.b64decode(first["key_b64"])
    topic = "patrol/v1/dev/0000b101/up"
    results = world.results(
        frame_item(
            1,
            make_frame(Sos(trigger=1), seq=1, device_id=0xB101, key=new_key, key_id=2),
            topic=topic,
        ),
        frame_item(
            2,
            make_frame(Sos(trigger=1), seq=2, device_id=0xB101, key=old_key, key_id=1),
            topic=topic,
        ),
    )
    assert [(r["status"], r["reason"]) for r in results] == [
        ("accepted", None),
        ("rejected", "unknown_device"),
    ]


def test_revoked_wearable_is_refused(world: World) -> None:
    revoke = world.client.post(
        "/api/v1/devices/wearable/0000a001/revoke",
        json={"reason": "left in a taxi"},
        headers=ADMIN,
    )
    assert revoke.status_code == 200, revoke.text
    assert revoke.json()["reason"] == "left in a taxi"
    [result] = world.results(frame_item(1, make_frame(Sos(trigger=1), seq=1)))
    assert (result["status"], result["reason"]) == ("rejected", "device_revoked")
    assert world.rows("SELECT reason, detail FROM rejected_events") == [
        ("device_revoked", "wearable 0000a001 is revoked: left in a taxi")
    ]
    again = world.client.post("/api/v1/devices/wearable/0000a001/rotate", json={}, headers=ADMIN)
    assert (again.status_code, again.json()["detail"]) == (422, "a revoked device gets no new key")


def test_commands_are_signed_with_the_wearable_key(world: World) -> None:
    site = _site_id(world, "Harbour depot")
    made = world.client.post(
        "/api/v1/wearables", json={"device_id": "0000b201", "site_id": site}, headers=ADMIN
    ).json()
    key = base64.b64decode(made["key_b64"])
    sent = []
    for payload in (
        {"kind": "locate", "duration_s": 30},
        {"kind": "set_time", "valid_for_s": 60},
        {"kind": "set_config", "config": {"heartbeat_interval_s": 120, "visit_rssi_dbm": -70}},
    ):
        response = world.client.post(
            "/api/v1/wearables/0000b201/commands", json=payload, headers=ADMIN
        )
        assert response.status_code == 201, response.text
        sent.append(response.json())
    assert [(c["cmd_seq"], c["key_id"], c["topic"]) for c in sent] == [
        (1, 1, "patrol/v1/dev/0000b201/cmd"),
        (2, 1, "patrol/v1/dev/0000b201/cmd"),
        (3, 1, "patrol/v1/dev/0000b201/cmd"),
    ]
    frames = [decode_command(base64.b64decode(c["frame_b64"])) for c in sent]
    for frame in frames:
        verify_command(frame, key)
        assert (frame.device_id, frame.issued_s) == (0xB201, int(SERVER_NOW.timestamp()))
    assert [f.kind for f in frames] == [
        CommandKind.LOCATE,
        CommandKind.SET_TIME,
        CommandKind.SET_CONFIG,
    ]
    assert decode_locate(frames[0].body).duration_s == 30
    assert decode_set_time(frames[1].body).time_s == int(SERVER_NOW.timestamp())
    assert decode_set_config(frames[2].body) == {1: 120, 2: -70}
    assert (frames[0].valid_for_s, frames[1].valid_for_s) == (300, 60)
    bad = world.client.post(
        "/api/v1/wearables/0000b201/commands",
        json={"kind": "set_config", "config": {"volume": 3}},
        headers=ADMIN,
    )
    assert (bad.status_code, bad.json()["detail"]) == (422, "unknown config entries: volume")


def test_diversified_ntag424_registered_by_api_verifies_at_ingest(world: World) -> None:
    site = _site_id(world, "Harbour depot")
    with session_scope(world.engine) as s:
        post = s.scalars(select(Post).where(Post.site_id == site)).first()
        assert post is not None
        checkpoint = create_checkpoint(s, post=post, name="Pier gate")
        checkpoint_id = checkpoint.id
    uid = "04c0ffee000001"
    made = world.client.post(
        "/api/v1/nfc-tags",
        json={
            "uid": uid,
            "site_id": site,
            "tag_type": "ntag424",
            "keys": "diversify",
            "checkpoint_id": checkpoint_id,
        },
        headers=ADMIN,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["key_source"], body["master_key_version"]) == ("diversified", 1)
    meta, file = (base64.b64decode(body[k]) for k in ("meta_read_key_b64", "file_read_key_b64"))
    picc_enc, mac = make_sun(meta, file, bytes.fromhex(uid), 7)
    scan = NfcScan(tag_type=TAG_NTAG424_SUN, uid=bytes.fromhex(uid), picc_enc=picc_enc, sdmmac=mac)
    assert world.results(frame_item(1, make_frame(scan, seq=1))) == [
        {"gw_seq": 1, "status": "accepted", "key": "0000a001:1", "reason": None}
    ]
    [event] = world.events()
    assert (event.assurance, event.checkpoint_id, event.sun_read_counter) == (
        "high",
        checkpoint_id,
        7,
    )
    duplicate = world.client.post(
        "/api/v1/nfc-tags",
        json={"uid": uid, "site_id": site, "tag_type": "ntag21x"},
        headers=ADMIN,
    )
    assert (duplicate.status_code, duplicate.json()["detail"]) == (
        409,
        f"NFC tag {uid} already exists",
    )


def test_gateway_key_rotation_and_revocation(world: World) -> None:
    site = _site_id(world, "Harbour depot")
    gw = world.client.post(
        "/api/v1/gateways", json={"gateway_id": "gw-rot", "site_id": site}, headers=ADMIN
    ).json()
    rotated = world.client.post("/api/v1/gateways/gw-rot/rotate", headers=ADMIN).json()
    assert rotated["api_key"] != gw["api_key"]
    batch = make_batch(frame_item(1, make_frame(Sos(trigger=1), seq=1)), gateway_id="gw-rot")
    assert world.ingest(batch, api_key=gw["api_key"]).status_code == 401
    assert world.ingest(batch, api_key=rotated["api_key"]).status_code == 200
    world.client.post("/api/v1/gateways/gw-rot/revoke", json={"reason": "stolen"}, headers=ADMIN)
    assert world.ingest(batch, api_key=rotated["api_key"]).status_code == 401


def test_rotation_overlap_keeps_the_old_key_until_it_ends(make_world: Callable[..., World]) -> None:
    """Server time is SERVER_NOW: an overlap of an hour still accepts key 1, then not."""
    world = make_world()
    rotated = world.client.post(
        "/api/v1/devices/wearable/0000a001/rotate", json={"overlap_s": 3600}, headers=ADMIN
    ).json()
    new_key = base64.b64decode(rotated["key_b64"])
    results = world.results(
        frame_item(1, make_frame(Sos(trigger=1), seq=1)),  # old key 1, within the overlap
        frame_item(2, make_frame(Sos(trigger=1), seq=2, key=new_key, key_id=2)),
    )
    assert [(r["status"], r["reason"]) for r in results] == [("accepted", None)] * 2
    # An app whose clock is past the overlap refuses key 1.
    with session_scope(world.engine) as s:
        s.execute(
            update(DeviceKey)
            .where(DeviceKey.key_id == 1)
            .values(retired_at=SERVER_NOW - timedelta(seconds=1))
        )
    [late] = world.results(frame_item(3, make_frame(Sos(trigger=1), seq=3)))
    assert (late["status"], late["reason"]) == ("rejected", "unknown_device")


def test_revoked_nfc_tag_is_refused(world: World) -> None:
    revoke = world.client.post(
        f"/api/v1/nfc-tags/{TAG2_UID.hex()}/revoke", json={"reason": "cloned"}, headers=ADMIN
    )
    assert revoke.status_code == 200, revoke.text  # an admin: the fixture's tag has no site
    picc_enc, mac = make_sun(TAG2_META_KEY, TAG2_FILE_KEY, TAG2_UID, 3)
    scan = NfcScan(tag_type=TAG_NTAG424_SUN, uid=TAG2_UID, picc_enc=picc_enc, sdmmac=mac)
    [result] = world.results(frame_item(1, make_frame(scan, seq=1)))
    assert (result["status"], result["reason"]) == ("rejected", "tag_revoked")
