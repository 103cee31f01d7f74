"""Helpers and constants for the cloud tests; fixtures live in conftest.py.

Fixtures for the cloud service: the real app on a real database (SQLite and PostgreSQL).

Every store test runs twice, through the ``db_url`` fixture: on a fresh SQLite file
and on a fresh schema of the private PostgreSQL database of this test run
(``pg_url`` from tests/conftest.py). The ``world`` fixture provisions one site
with a gateway, a wearable, a beacon, an equipment tag and three NFC checkpoint
tags, and serves the app through FastAPI's TestClient (real routes, real DB).
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from cloud_api.crypto_store import SecretBox
from cloud_api.db import session_scope
from cloud_api.models import Event
from cloud_api.provisioning import (
    create_checkpoint,
    create_gateway,
    create_post,
    create_site,
    register_beacon,
    register_equipment_tag,
    register_ntag21x,
    register_ntag424,
    register_wearable,
)
from cloud_api.settings import Settings
from patrol_protocol.frames import Body, encode_body, encode_frame, kind_of
from patrol_protocol.sun import sdmmac

SERVER_KEY = bytes(range(100, 132))
ADMIN_TOKEN = "admin-token-for-tests"
GATEWAY_ID = "gw-test-1"
OTHER_GATEWAY_ID = "gw-test-2"

# Keys and ids match tests/vectors/generate.py, so invalid.json's frames verify.
DEVICE = 0x0000A001
DEVICE_KEY = bytes(range(32))
PRESENCE_KEY = bytes(range(32, 48))
BEACON_ID = 0x000005B7
BEACON_KEY = bytes(range(16))
EQUIPMENT_ID = 0x0000E001
EQUIPMENT_KEY = bytes(range(16, 32))
UNKNOWN_DEVICE = 0x0000A0FF
COMPANY_ID = 0xFFFF

# NXP AN12196 worked example: both SDM keys all-zero.
AN12196_UID = bytes.fromhex("04DE5F1EACC040")
AN12196_PICC_ENC = bytes.fromhex("EF963FF7828658A599F3041510671E88")
AN12196_SDMMAC = bytes.fromhex("94EED9EE65337086")
AN12196_COUNTER = 61
ZERO_KEY = bytes(16)

# A second NTAG 424 with non-trivial keys, for SUN messages we build ourselves.
TAG2_UID = bytes.fromhex("04112233445566")
TAG2_META_KEY = bytes(range(200, 216))
TAG2_FILE_KEY = bytes(range(216, 232))

NTAG21X_UID = bytes.fromhex("04a1b2c3d4e5f6")
UNKNOWN_UID = bytes.fromhex("04ffffffffff01")

T0 = 1_795_579_200  # 2026-11-25T04:00:00Z, the device time of test frames
RECEIVED_AT = datetime.fromtimestamp(T0 + 5, UTC)
SERVER_NOW = datetime.fromtimestamp(T0 + 60, UTC)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def make_frame(
    body: Body,
    *,
    seq: int,
    device_id: int = DEVICE,
    key: bytes = DEVICE_KEY,
    key_id: int = 1,
    flags: int = 0,
    time_s: int = T0,
    time_ms: int = 0,
) -> bytes:
    return encode_frame(
        kind=kind_of(body),
        key_id=key_id,
        flags=flags,
        device_id=device_id,
        seq=seq,
        time_s=time_s,
        time_ms=time_ms,
        body=encode_body(body),
        key=key,
    )


def make_sun(meta_key: bytes, file_key: bytes, uid: bytes, counter: int) -> tuple[bytes, bytes]:
    """A real SUN message (AN12196): encrypted PICCData and SDMMAC for ``counter``."""
    picc = bytes((0xC7,)) + uid + counter.to_bytes(3, "little") + bytes(5)
    encryptor = Cipher(algorithms.AES(meta_key), modes.CBC(bytes(16))).encryptor()
    picc_enc = encryptor.update(picc) + encryptor.finalize()
    return picc_enc, sdmmac(file_key, uid, counter)


def frame_item(
    gw_seq: int, raw: bytes, *, topic: str | None = None, received_at: datetime = RECEIVED_AT
) -> dict[str, Any]:
    return {
        "type": "device_frame",
        "gw_seq": gw_seq,
        "received_at": received_at.isoformat(),
        "topic": topic if topic is not None else f"patrol/v1/dev/{DEVICE:08x}/up",
        "frame_b64": b64(raw),
    }


def advert_item(
    gw_seq: int, payload: bytes, *, company_id: int = COMPANY_ID, rssi_dbm: int = -61
) -> dict[str, Any]:
    return {
        "type": "advert",
        "gw_seq": gw_seq,
        "received_at": RECEIVED_AT.isoformat(),
        "company_id": company_id,
        "payload_b64": b64(payload),
        "rssi_dbm": rssi_dbm,
    }


def observation_item(gw_seq: int, observation: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "observation",
        "gw_seq": gw_seq,
        "received_at": RECEIVED_AT.isoformat(),
        "observation": observation,
    }


def make_batch(
    *items: dict[str, Any], clock_synced: bool = True, gateway_id: str = GATEWAY_ID
) -> dict[str, Any]:
    return {
        "v": 1,
        "gateway_id": gateway_id,
        "batch_id": str(uuid.uuid4()),
        "sent_at": (RECEIVED_AT + timedelta(seconds=1)).isoformat(),
        "clock_synced": clock_synced,
        "items": list(items),
    }


@dataclass
class World:
    """The provisioned test site, the running app and handles to inspect the database."""

    client: TestClient
    engine: Engine
    settings: Settings
    api_key: str
    other_api_key: str
    checkpoint_ids: dict[str, int]

    def ingest(self, batch: dict[str, Any], *, api_key: str | None = None) -> Any:
        return self.client.post(
            "/api/v1/ingest",
            json=batch,
            headers={"Authorization": f"Bearer {api_key or self.api_key}"},
        )

    def results(self, *items: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
        response = self.ingest(make_batch(*items, **kwargs))
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def events(self) -> list[Event]:
        """Stored events through the ORM (JSON columns decoded), in seq order."""
        with Session(self.engine) as session:
            return list(session.scalars(select(Event).order_by(Event.device_id, Event.seq)))

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())


def make_settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "server_key": base64.b64encode(SERVER_KEY).decode(),
        "admin_token": ADMIN_TOKEN,
    }
    values.update(overrides)
    return Settings(**values)


def provision(engine: Engine, settings: Settings) -> tuple[str, str, dict[str, int]]:
    """Provision the test site through the public provisioning functions."""
    box = SecretBox(settings.server_key_bytes())
    with session_scope(engine) as s:
        site = create_site(s, name="Harbour depot", timezone="Europe/Berlin")
        other_site = create_site(s, name="Other site")
        post = create_post(s, site=site, name="Main gate")
        _gw, api_key = create_gateway(s, gateway_id=GATEWAY_ID, site=site)
        _gw2, other_api_key = create_gateway(s, gateway_id=OTHER_GATEWAY_ID, site=other_site)
        register_wearable(
            s, box=box, device_id=DEVICE, key=DEVICE_KEY, site=site, presence_key=PRESENCE_KEY
        )
        cp_sun = create_checkpoint(s, post=post, name="North door")
        cp_tag2 = create_checkpoint(s, post=post, name="Loading bay")
        cp_plain = create_checkpoint(s, post=post, name="Fence corner")
        cp_beacon = create_checkpoint(s, post=post, name="Yard")
        register_ntag424(
            s,
            box=box,
            uid=AN12196_UID,
            meta_read_key=ZERO_KEY,
            file_read_key=ZERO_KEY,
            checkpoint=cp_sun,
        )
        register_ntag424(
            s,
            box=box,
            uid=TAG2_UID,
            meta_read_key=TAG2_META_KEY,
            file_read_key=TAG2_FILE_KEY,
            checkpoint=cp_tag2,
        )
        register_ntag21x(s, uid=NTAG21X_UID, checkpoint=cp_plain)
        register_beacon(s, box=box, beacon_id=BEACON_ID, key=BEACON_KEY, checkpoint=cp_beacon)
        register_equipment_tag(s, box=box, tag_id=EQUIPMENT_ID, key=EQUIPMENT_KEY, label="Radio 1")
        ids = {
            "sun": cp_sun.id,
            "tag2": cp_tag2.id,
            "plain": cp_plain.id,
            "beacon": cp_beacon.id,
        }
    return api_key, other_api_key, ids


def load_vectors(name: str) -> dict[str, Any]:
    path = os.path.join(os.path.dirname(__file__), "..", "vectors", name)
    with open(path, encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data
