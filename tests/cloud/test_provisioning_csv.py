"""Bulk registration from CSV: a result per row, bad rows reported, good rows registered."""

from __future__ import annotations

import base64

from cloudtest import ADMIN_TOKEN, World, frame_item, make_frame

from patrol_protocol.frames import Sos

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CSV = {"Content-Type": "text/csv"}


def _upload(world: World, site_id: int, text: str) -> object:
    return world.client.post(
        f"/api/v1/sites/{site_id}/provisioning/csv",
        content=text.encode(),
        headers={**ADMIN, **CSV},
    )


def test_rows_are_registered_or_refused_one_by_one(world: World) -> None:
    site = int(world.scalar("SELECT id FROM sites WHERE name = 'Harbour depot'"))
    checkpoint = world.checkpoint_ids["beacon"]
    text = (
        "kind,id,label,checkpoint_id,keys\n"
        "wearable,0000f001,W-01,,\n"
        "wearable,A001,bad id,,\n"
        "gateway,gw-csv-1,,,\n"
        f"beacon,000005c1,,{checkpoint},\n"
        "equipment_tag,0000e101,Radio 4,,\n"
        "ntag424,04de5f1eacc041,,,diversify\n"
        "ntag21x,04a1b2c3d4e5f7,,,\n"
        "ntag21x,04a1b2c3d4e5f7,,,\n"
        "wearable,0000a001,already there,,\n"
        "sensor,0000f002,,,\n"
        "beacon,000005c2,,99999,\n"
        "wearable,0000f003,,,diversify\n"
        "\n"
    )
    response = _upload(world, site, text)
    assert response.status_code == 200, response.text
    body = response.json()
    summary = [(r["line"], r["kind"], r["id"], r["status"], r["error"]) for r in body["rows"]]
    assert summary == [
        (2, "wearable", "0000f001", "created", None),
        (3, "wearable", "A001", "error", "id must be 8 lowercase hex digits"),
        (4, "gateway", "gw-csv-1", "created", None),
        (5, "beacon", "000005c1", "created", None),
        (6, "equipment_tag", "0000e101", "created", None),
        (7, "ntag424", "04de5f1eacc041", "created", None),
        (8, "ntag21x", "04a1b2c3d4e5f7", "created", None),
        (9, "ntag21x", "04a1b2c3d4e5f7", "error", "ntag21x 04a1b2c3d4e5f7 already exists"),
        (10, "wearable", "0000a001", "error", "wearable 0000a001 already exists"),
        (
            11,
            "sensor",
            "0000f002",
            "error",
            "kind must be one of wearable, gateway, beacon, equipment_tag, ntag424, ntag21x",
        ),
        (12, "beacon", "000005c2", "error", f"no checkpoint 99999 at site {site}"),
        (13, "wearable", "0000f003", "error", "keys=diversify is for ntag424 rows"),
    ]
    assert (body["created"], body["errors"]) == (6, 6)
    secrets = {r["id"]: r["secrets"] for r in body["rows"]}
    assert sorted(secrets["0000f001"]) == [
        "key_b64",
        "key_id",
        "mqtt_password",
        "mqtt_username",
        "presence_key_b64",
    ]
    assert sorted(secrets["gw-csv-1"]) == ["api_key", "mqtt_password", "mqtt_username"]
    assert secrets["04de5f1eacc041"]["key_source"] == "diversified"
    assert secrets["04a1b2c3d4e5f7"] == {}
    # The failed rows left nothing behind; the created ones are all there.
    assert (
        world.scalar(
            "SELECT count(*) FROM nfc_tags WHERE uid = :u", u=bytes.fromhex("04a1b2c3d4e5f7")
        )
        == 1
    )
    assert world.scalar("SELECT beacon_id FROM checkpoints WHERE id = :c", c=checkpoint) == 0x05C1
    assert world.scalar("SELECT count(*) FROM devices WHERE device_id = :d", d=0xF002) == 0
    # A wearable registered from the CSV signs frames the cloud accepts.
    key = base64.b64decode(secrets["0000f001"]["key_b64"])
    raw = make_frame(Sos(trigger=1), seq=1, device_id=0xF001, key=key)
    [result] = world.results(frame_item(1, raw, topic="patrol/v1/dev/0000f001/up"))
    assert result["status"] == "accepted"


def test_whole_file_errors(world: World) -> None:
    site = int(world.scalar("SELECT id FROM sites WHERE name = 'Harbour depot'"))
    cases = {
        "": "empty file: the first line must name the columns",
        "kind,id,colour\n": (
            "unknown columns: colour (allowed: kind, id, label, checkpoint_id, keys)"
        ),
        "kind,label\nwearable,x\n": "missing columns: id",
        "kind,id\n" + "wearable,0000f0ff\n" * 1001: "more than 1000 rows; upload in chunks",
    }
    for text, detail in cases.items():
        response = _upload(world, site, text)
        assert (response.status_code, response.json()["detail"]) == (422, detail), text[:40]
    json_body = world.client.post(
        f"/api/v1/sites/{site}/provisioning/csv", json={"kind": "wearable"}, headers=ADMIN
    )
    assert json_body.status_code == 415
    nowhere = _upload(world, 999, "kind,id\nwearable,0000f001\n")
    assert (nowhere.status_code, nowhere.json()["detail"]) == (404, "no site 999")
