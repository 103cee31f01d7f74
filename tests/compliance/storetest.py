"""A real cloud service with one scored post, fed through the ingest API.

Site "Harbour depot" (Europe/Berlin), post "Main gate" with three NTAG 424 DNA
checkpoints A, B, C. Frames are signed with the wearable's key and pass the
full verification (SUN with real keys), so the scores read exactly what
production stores. The night shift 2026-11-24 22:00 - 2026-11-25 01:00 Berlin
(21:00 - 00:00 UTC) has three hourly rounds at 22:00, 23:00 and 00:00 local.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud_api.app import create_app
from cloud_api.compliance.store import create_shift
from cloud_api.crypto_store import SecretBox
from cloud_api.db import make_engine, session_scope
from cloud_api.models import CompliancePlan, ComplianceTargets, Guard
from cloud_api.provisioning import (
    create_checkpoint,
    create_gateway,
    create_post,
    create_site,
    register_ntag424,
    register_wearable,
)
from cloud_api.settings import Settings
from patrol_protocol.frames import (
    HEARTBEAT_IN_ZONE,
    TAG_NTAG424_SUN,
    Heartbeat,
    NfcScan,
    encode_body,
    encode_frame,
    kind_of,
)
from patrol_protocol.sun import sdmmac

SERVER_KEY = bytes(range(100, 132))
ADMIN_TOKEN = "admin-token-for-compliance-tests"
GATEWAY_ID = "gw-compliance-1"
DEVICE = 0x0000A001
DEVICE_KEY = bytes(range(32))
SHIFT_START = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)  # 22:00 in Berlin
SHIFT_END = SHIFT_START + timedelta(hours=3)
UIDS = {name: bytes.fromhex(f"04aabbccdd00{i:02x}") for i, name in enumerate("ABC", 1)}
META_KEY = bytes(range(200, 216))
FILE_KEY = bytes(range(216, 232))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def sun(uid: bytes, counter: int) -> tuple[bytes, bytes]:
    picc = bytes((0xC7,)) + uid + counter.to_bytes(3, "little") + bytes(5)
    encryptor = Cipher(algorithms.AES(META_KEY), modes.CBC(bytes(16))).encryptor()
    return encryptor.update(picc) + encryptor.finalize(), sdmmac(FILE_KEY, uid, counter)


def settings_for(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "server_key": base64.b64encode(SERVER_KEY).decode(),
        "admin_token": ADMIN_TOKEN,
        "sink_run_worker": False,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Depot:
    client: TestClient
    engine: Engine
    api_key: str
    site_id: int
    post_id: int
    checkpoints: dict[str, int]
    plan_id: int
    guard_id: int
    seq: int = 0
    gw_seq: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    def _frame(self, body: Any, at: datetime) -> dict[str, Any]:
        self.seq += 1
        self.gw_seq += 1
        raw = encode_frame(
            kind=kind_of(body),
            key_id=1,
            flags=0,
            device_id=DEVICE,
            seq=self.seq,
            time_s=int(at.timestamp()),
            time_ms=0,
            body=encode_body(body),
            key=DEVICE_KEY,
        )
        return {
            "type": "device_frame",
            "gw_seq": self.gw_seq,
            "received_at": (at + timedelta(seconds=2)).isoformat(),
            "topic": f"patrol/v1/dev/{DEVICE:08x}/up",
            "frame_b64": b64(raw),
        }

    def tap(self, name: str, at: datetime) -> dict[str, Any]:
        self.counters[name] = self.counters.get(name, 0) + 1
        picc_enc, mac = sun(UIDS[name], self.counters[name])
        return self._frame(NfcScan(TAG_NTAG424_SUN, UIDS[name], picc_enc, mac), at)

    def heartbeat(self, at: datetime, *, in_zone: bool = True) -> dict[str, Any]:
        status = HEARTBEAT_IN_ZONE if in_zone else 0
        return self._frame(Heartbeat(80, 3900, status, 0, ()), at)

    def ingest(self, items: list[dict[str, Any]]) -> None:
        batch = {
            "v": 1,
            "gateway_id": GATEWAY_ID,
            "batch_id": str(uuid.uuid4()),
            "sent_at": datetime.now(UTC).isoformat(),
            "clock_synced": True,
            "items": items,
        }
        response = self.client.post(
            "/api/v1/ingest", json=batch, headers={"Authorization": f"Bearer {self.api_key}"}
        )
        assert response.status_code == 200, response.text
        statuses = {r["status"] for r in response.json()["results"]}
        assert statuses == {"accepted"}, response.json()["results"]

    def rounds(self, indexes: range) -> list[dict[str, Any]]:
        """Taps A, B, C at +2, +5, +8 min of each listed round."""
        return [
            self.tap(name, SHIFT_START + timedelta(hours=r, minutes=m))
            for r in indexes
            for name, m in (("A", 2), ("B", 5), ("C", 8))
        ]

    def heartbeats(self, start_min: int = 0, end_min: int = 180) -> list[dict[str, Any]]:
        """One heartbeat every 5 minutes (each vouches for the next 5)."""
        return [
            self.heartbeat(SHIFT_START + timedelta(minutes=m)) for m in range(start_min, end_min, 5)
        ]

    def shift(self, *, guard_id: int | None = None, post_id: int | None = None) -> int:
        with session_scope(self.engine) as s:
            row = create_shift(
                s,
                post_id=post_id or self.post_id,
                guard_id=guard_id or self.guard_id,
                device_id=DEVICE,
                start=SHIFT_START,
                end=SHIFT_END,
            )
            return row.id


def depot(db_url: str, **overrides: Any) -> Iterator[Depot]:
    settings = settings_for(db_url, **overrides)
    app = create_app(settings)
    engine = make_engine(db_url)
    box = SecretBox(settings.server_key_bytes())
    with TestClient(app) as client:
        with session_scope(engine) as s:
            site = create_site(s, name="Harbour depot", timezone="Europe/Berlin")
            post = create_post(s, site=site, name="Main gate")
            _gw, api_key = create_gateway(s, gateway_id=GATEWAY_ID, site=site)
            register_wearable(s, box=box, device_id=DEVICE, key=DEVICE_KEY, site=site)
            cps = {}
            for name, uid in UIDS.items():
                cp = create_checkpoint(s, post=post, name=f"Door {name}")
                register_ntag424(
                    s,
                    box=box,
                    uid=uid,
                    meta_read_key=META_KEY,
                    file_read_key=FILE_KEY,
                    checkpoint=cp,
                )
                cps[name] = cp.id
            s.add(ComplianceTargets(post_id=post.id, equipment=[]))
            plan = CompliancePlan(
                post_id=post.id,
                name="night",
                checkpoints=[cps["A"], cps["B"], cps["C"]],
                ordered=False,
                schedule_kind="interval",
                interval_s=3600,
                round_duration_s=1200,
                grace_s=300,
                windows=[{"weekdays": list(range(7)), "start": "00:00", "end": "00:00"}],
            )
            s.add(plan)
            guard = Guard(site_id=site.id, name="Night guard")
            s.add(guard)
            s.flush()
            ids = (site.id, post.id, plan.id, guard.id)
        yield Depot(client, engine, api_key, ids[0], ids[1], cps, ids[2], ids[3])
    engine.dispose()
