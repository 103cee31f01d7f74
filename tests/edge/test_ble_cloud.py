"""End to end: bleak objects -> BleIngest -> durable queue -> Forwarder -> the REAL cloud app."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bletest import IBEACON_ADV, advert_vector, advertisement, device, make_settings
from cloudserver import GATEWAY_ID, SERVER_KEY, CloudServer, start_cloud
from edgetest import wait_until

from cloud_api.crypto_store import SecretBox
from cloud_api.db import session_scope
from cloud_api.provisioning import register_equipment_tag
from edge_agent.ble.scanner import BleIngest
from edge_agent.forwarder import Forwarder
from edge_agent.queue import EdgeQueue

EQUIP = advert_vector("equipment_dev_company")
PRESENCE = advert_vector("presence_dev_company")
"""Its signer (presence device 0000a001) is not provisioned: the cloud rejects it."""
TAG_ADDR = "C0:FF:EE:00:00:01"
PHONE_ADDR = "4A:11:22:33:44:55"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path)
    with session_scope(server.engine) as session:
        register_equipment_tag(
            session,
            box=SecretBox(SERVER_KEY),
            tag_id=EQUIP["fields"]["tag_id"],
            key=bytes.fromhex(EQUIP["key"]),
            key_id=EQUIP["fields"]["key_id"],
        )
    yield server
    server.stop()


def test_adverts_reach_the_cloud_verified(tmp_path: Path, cloud: CloudServer) -> None:
    settings = make_settings(
        tmp_path / "edge.sqlite3",
        cloud_url=cloud.url,
        gateway_id=GATEWAY_ID,
        gateway_api_key=cloud.api_key,
        forward_interval_ms=50,
        forward_backoff_min_ms=50,
    )
    now_ms = time.time_ns() // 1_000_000
    mono = [0.0]
    with EdgeQueue(settings.queue_path) as queue:
        forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
        ingest = BleIngest(
            settings,
            queue,
            on_committed=lambda _result: forwarder.wake(),
            monotonic=lambda: mono[0],
            wall_ms=lambda: now_ms + round(mono[0] * 1000),
        )
        forwarder.start()
        try:
            for _ in range(10):  # one second of a tag advertising 10 times a second
                ingest.callback(
                    device(TAG_ADDR), advertisement(bytes.fromhex(EQUIP["advertisement_hex"]), -61)
                )
                mono[0] += 0.1
            ingest.callback(
                device(PHONE_ADDR), advertisement(bytes.fromhex(PRESENCE["advertisement_hex"]), -70)
            )
            ingest.callback(device(PHONE_ADDR), advertisement(IBEACON_ADV, -75))
            ingest.process_pending()
            wait_until(lambda: queue.depth() == 0)
        finally:
            forwarder.stop()
        cloud_rejections = [(d.source, d.reason) for d in queue.dead_letters()]
    assert cloud_rejections == [("cloud", "unknown_device")]
    rows = cloud.rows(
        "SELECT key, company_id, payload, rssi_dbm, gw_seq, fields FROM advert_observations"
    )
    assert len(rows) == 1
    key, company_id, payload, rssi_dbm, gw_seq, fields = rows[0]
    counter = EQUIP["fields"]["counter"]
    assert (key, company_id, bytes(payload), rssi_dbm, gw_seq) == (
        f"equip:{EQUIP['fields']['tag_id']:08x}:{counter}",
        0xFFFF,
        bytes.fromhex(EQUIP["payload_hex"]),
        -61,
        1,
    )
    fields = json.loads(fields) if isinstance(fields, str) else fields
    assert fields["tag_id"] == EQUIP["fields"]["tag_id"] and fields["counter"] == counter
    observations = cloud.rows("SELECT kind, gw_seq, observation FROM gateway_observations")
    assert [(kind, seq) for kind, seq, _ in observations] == [("ble_tag_seen", 3)]
    body = observations[0][2]
    body = json.loads(body) if isinstance(body, str) else body
    assert body == {
        "kind": "ble_tag_seen",
        "source": "gateway",
        "tag": "ibeacon:b5b182c7-eab1-4988-aa99-b5c1517008d9:1:2",
        "format": "ibeacon",
        "address": PHONE_ADDR,
        "rssi_dbm": -75,
        "tx_power_dbm": -58,
        "heard": 1,
    }
