"""The per-site hash chain: the head, its format, and tampering found at the exact link."""

from __future__ import annotations

import hashlib
import struct
from datetime import datetime
from typing import Any

from cloudtest import (
    ADMIN_TOKEN,
    GATEWAY_ID,
    RECEIVED_AT,
    SERVER_NOW,
    World,
    frame_item,
    make_frame,
    observation_item,
)
from sqlalchemy import text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cloud_api import chain
from cloud_api.models import GatewayObservation
from patrol_cli.main import app as cli
from patrol_protocol.frames import Sos

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FRAMES = [make_frame(Sos(trigger=1), seq=s) for s in range(1, 6)]
OBSERVATION = {"kind": "health", "cpu_pct": 12.5, "queue": [1, 2]}


def _execute(world: World, sql: str, **params: Any) -> None:
    """Tamper as whoever holds the database would: plain SQL, committed."""
    with world.engine.begin() as conn:
        conn.execute(text(sql), params)


def _site_id(world: World) -> int:
    return int(world.scalar("SELECT site_id FROM gateways WHERE gateway_id = :g", g=GATEWAY_ID))


def _ingest_five(world: World) -> int:
    results = world.results(*(frame_item(s, raw) for s, raw in enumerate(FRAMES, start=1)))
    assert [r["status"] for r in results] == ["accepted"] * 5
    return _site_id(world)


def _verify(world: World, site_id: int) -> dict[str, Any]:
    response = world.client.post(f"/api/v1/sites/{site_id}/chain/verify", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _by_hand(previous: bytes, position: int, site_id: int, key: str, raw: bytes) -> bytes:
    """docs/hash-chain.md, written out independently of cloud_api.chain."""
    entry = (
        bytes([1])
        + position.to_bytes(8, "big")
        + site_id.to_bytes(8, "big")
        + bytes([1])
        + _micros(SERVER_NOW).to_bytes(8, "big", signed=True)
        + _micros(RECEIVED_AT).to_bytes(8, "big", signed=True)
        + struct.pack(">I", len(key))
        + key.encode()
        + struct.pack(">I", len(GATEWAY_ID))
        + GATEWAY_ID.encode()
        + struct.pack(">I", len(raw))
        + raw
    )
    return hashlib.sha256(previous + entry).digest()


def test_head_is_the_documented_hash_of_every_accepted_frame(world: World) -> None:
    site_id = _ingest_five(world)
    expected = bytes(32)
    for position, raw in enumerate(FRAMES, start=1):
        expected = _by_hand(expected, position, site_id, f"0000a001:{position}", raw)
    response = world.client.get(f"/api/v1/sites/{site_id}/chain", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {"site_id": site_id, "length": 5, "head_hash": expected.hex()}
    assert _verify(world, site_id) == {
        "head": {"site_id": site_id, "length": 5, "head_hash": expected.hex()},
        "ok": True,
        "checked": 5,
        "first_broken": None,
    }


def test_duplicates_and_rejections_do_not_extend_the_chain(world: World) -> None:
    site_id = _ingest_five(world)
    head = world.client.get(f"/api/v1/sites/{site_id}/chain", headers=ADMIN).json()
    forged = FRAMES[0][:-1] + bytes([FRAMES[0][-1] ^ 1])
    results = world.results(frame_item(1, FRAMES[0]), frame_item(9, forged))
    assert [r["status"] for r in results] == ["duplicate", "rejected"]
    assert world.client.get(f"/api/v1/sites/{site_id}/chain", headers=ADMIN).json() == head


def test_observations_are_chained_too(world: World) -> None:
    site_id = _site_id(world)
    results = world.results(
        frame_item(1, FRAMES[0]),
        observation_item(3, OBSERVATION),
    )
    assert [r["status"] for r in results] == ["accepted"] * 2
    rows = world.rows(
        "SELECT position, record_type FROM chain_entries WHERE site_id = :s ORDER BY position",
        s=site_id,
    )
    assert [tuple(r) for r in rows] == [(1, 1), (2, 3)]
    assert _verify(world, site_id)["ok"] is True
    # The observation is hashed as canonical JSON: an edit of its content is found.
    with Session(world.engine) as session, session.begin():
        stored = session.get_one(GatewayObservation, 1)
        stored.observation = {**OBSERVATION, "cpu_pct": 99}
    assert _verify(world, site_id)["first_broken"] == {
        "position": 2,
        "reason": "hash_mismatch",
        "detail": f"observation gw:{GATEWAY_ID}:3 (row 1) does not hash to the stored link",
    }


def test_edited_raw_bytes_are_found_at_their_position(world: World) -> None:
    site_id = _ingest_five(world)
    tampered = FRAMES[2][:-1] + bytes([FRAMES[2][-1] ^ 0xFF])
    _execute(world, "UPDATE events SET raw = :raw WHERE seq = 3", raw=tampered)
    body = _verify(world, site_id)
    assert (body["ok"], body["checked"]) == (False, 2)
    assert body["first_broken"]["position"] == 3
    assert body["first_broken"]["reason"] == "hash_mismatch"


def test_deleted_event_is_found_at_its_position(world: World) -> None:
    site_id = _ingest_five(world)
    event_id = world.scalar("SELECT id FROM events WHERE seq = 4")
    _execute(world, "DELETE FROM events WHERE seq = 4")
    body = _verify(world, site_id)
    assert body["first_broken"] == {
        "position": 4,
        "reason": "record_missing",
        "detail": f"device_frame row {event_id} is gone",
    }


def test_deleted_event_and_its_link_are_found_at_their_position(world: World) -> None:
    site_id = _ingest_five(world)
    _execute(world, "DELETE FROM chain_entries WHERE position = 2")
    _execute(world, "DELETE FROM events WHERE seq = 2")
    assert _verify(world, site_id)["first_broken"] == {
        "position": 2,
        "reason": "missing_entry",
        "detail": "next stored entry is 3",
    }
    # Renumbering the later links does not help: their hashes chain through the gap.
    for position in (3, 4, 5):
        _execute(
            world,
            "UPDATE chain_entries SET position = :new WHERE position = :old",
            new=position - 1,
            old=position,
        )
    _execute(world, "UPDATE chain_heads SET length = 4")
    body = _verify(world, site_id)
    assert (body["first_broken"]["position"], body["first_broken"]["reason"]) == (
        2,
        "hash_mismatch",
    )


def test_reordered_links_are_found_at_the_first_moved_position(world: World) -> None:
    site_id = _ingest_five(world)
    _execute(world, "UPDATE chain_entries SET position = 100 WHERE position = 3")
    _execute(world, "UPDATE chain_entries SET position = 3 WHERE position = 4")
    _execute(world, "UPDATE chain_entries SET position = 4 WHERE position = 100")
    body = _verify(world, site_id)
    assert (body["checked"], body["first_broken"]["position"]) == (2, 3)
    assert body["first_broken"]["reason"] == "hash_mismatch"


def test_truncated_tail_is_found_against_the_head(world: World) -> None:
    site_id = _ingest_five(world)
    _execute(world, "DELETE FROM chain_entries WHERE position = 5")
    assert _verify(world, site_id)["first_broken"] == {
        "position": 5,
        "reason": "missing_entry",
        "detail": "the head says length 5, found 4",
    }


def test_chain_endpoints_need_the_admin_token_and_a_known_site(world: World) -> None:
    site_id = _ingest_five(world)
    assert world.client.get(f"/api/v1/sites/{site_id}/chain").status_code == 401
    assert world.client.post(f"/api/v1/sites/{site_id}/chain/verify").status_code == 401
    assert world.client.get("/api/v1/sites/9999/chain", headers=ADMIN).status_code == 404
    assert world.client.get("/api/v1/sites/9999/chain/verify", headers=ADMIN).status_code == 404


def test_cli_prints_the_head_and_fails_on_a_broken_chain(world: World) -> None:
    site_id = _ingest_five(world)
    url = world.settings.database_url
    head = chain.Head(site_id, 5, bytes.fromhex(_verify(world, site_id)["head"]["head_hash"]))
    runner = CliRunner()
    ok = runner.invoke(cli, ["chain", "verify", "--database-url", url, "--site", str(site_id)])
    assert ok.exit_code == 0, ok.output
    assert ok.output == (
        f"site {site_id} (Harbour depot): length 5, head {head.hash.hex()}\n"
        "chain intact: 5 entries recomputed\n"
    )
    by_name = runner.invoke(
        cli, ["chain", "verify", "--database-url", url, "--site", "Harbour depot"]
    )
    assert by_name.output == ok.output
    _execute(world, "UPDATE events SET raw = :raw WHERE seq = 1", raw=b"\x00")
    broken = runner.invoke(cli, ["chain", "verify", "--database-url", url, "--site", str(site_id)])
    assert broken.exit_code == 1
    assert broken.output.splitlines()[1].startswith("BROKEN at position 1: hash_mismatch")
