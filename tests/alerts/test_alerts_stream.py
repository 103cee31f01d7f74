"""The live stream: an SOS ingested over HTTP reaches a connected SSE client.

In one process (SQLite: after-commit publish; PostgreSQL: LISTEN/NOTIFY), and
across two real ``patrol-cloud`` processes on one PostgreSQL database: the alert
created through process A's ingest arrives on process B's stream.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alertstest import SERVER_KEY, make_batch, make_settings, people, provision, sos_item
from ssetest import SseClient, ThreadServer, free_port

from cloud_api.alerts import hub as alert_hub
from cloud_api.app import create_app
from cloud_api.db import init_db, make_engine


def test_stream_in_one_process(db_url: str) -> None:
    settings = make_settings(db_url)
    app = create_app(settings)
    engine = make_engine(db_url)
    api_key, _other, _ids = provision(engine, settings)
    staff = people(engine)
    gateway = {"Authorization": f"Bearer {api_key}"}
    with ThreadServer(app) as server:
        sam = SseClient(server.url, headers=staff.auth("sam"))
        # The console's way: the access token in the patrol_access cookie.
        cookie = SseClient(server.url, cookies={"patrol_access": staff.tokens["sam"]})
        olga = SseClient(server.url, headers=staff.auth("olga"), params={"max_s": 4})
        if engine.dialect.name == "postgresql":
            hub = alert_hub.hub_for(alert_hub.hub_key(engine.url))
            assert hub.listening.wait(30)
        r = httpx.post(f"{server.url}/api/v1/ingest", json=make_batch(sos_item(1)), headers=gateway)
        assert r.status_code == 200 and r.json()["results"][0]["status"] == "accepted"
        for client in (sam, cookie):
            event_id, alert = client.next()
            assert (event_id, alert["action"], alert["id"], alert["state"], alert["device"]) == (
                "1",
                "created",
                1,
                "open",
                "0000a001",
            )
        ack = httpx.post(
            f"{server.url}/api/v1/alerts/1/acknowledge",
            json={"note": "coming"},
            headers=staff.auth("sam"),
        )
        assert ack.status_code == 200, ack.text
        event_id, alert = sam.next()
        assert (event_id, alert["action"], alert["acknowledged_by"], alert["ack_note"]) == (
            "2",
            "acknowledged",
            "sam",
            "coming",
        )
        # Another site's supervisor hears nothing of site A.
        assert olga.closed.wait(30)
        assert olga.events.empty()
        # A reconnecting client replays what it missed after its Last-Event-ID.
        replay = SseClient(
            server.url,
            headers={**staff.auth("sam"), "Last-Event-ID": "1"},
            params={"max_s": 1},
        )
        assert replay.next()[0] == "2"
        assert replay.closed.wait(30)
        assert replay.events.empty()
        # Without the role or a credential: clear refusals, before any stream.
        tech = httpx.get(f"{server.url}/api/v1/alerts/stream", headers=staff.auth("tia"))
        assert tech.status_code == 403
        assert tech.headers["content-type"] == "application/problem+json"
        nobody = httpx.get(f"{server.url}/api/v1/alerts/stream")
        assert nobody.status_code == 401
        assert nobody.json()["detail"] == "missing bearer token or patrol_access cookie"
        for client in (sam, cookie, olga, replay):
            client.close()
    engine.dispose()


def _start(db_url: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        PATROL_CLOUD_DATABASE_URL=db_url,
        PATROL_CLOUD_SERVER_KEY=base64.b64encode(SERVER_KEY).decode(),
        PATROL_CLOUD_PORT=str(port),
        PATROL_CLOUD_HOST="127.0.0.1",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cloud_api"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def two_processes(db_url: str, tmp_path: Path) -> Iterator[tuple[str, str, str, str]]:
    engine = make_engine(db_url)
    init_db(engine)
    api_key, _other, _ids = provision(engine, make_settings(db_url))
    token = people(engine).tokens["sam"]
    engine.dispose()
    ports = [free_port(), free_port()]
    procs = [_start(db_url, port, tmp_path / f"cloud-{port}.log") for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for proc, url in zip(procs, urls, strict=True):
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (tmp_path / f"cloud-{url[-5:]}.log").read_text()
                try:
                    if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{url} did not start"
                time.sleep(0.2)
        yield urls[0], urls[1], api_key, token
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


# Fan-out across processes is PostgreSQL LISTEN/NOTIFY: PostgreSQL only.
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_alert_from_process_a_reaches_stream_of_process_b(
    two_processes: tuple[str, str, str, str],
) -> None:
    url_a, url_b, api_key, token = two_processes
    stream_b = SseClient(url_b, headers={"Authorization": f"Bearer {token}"})
    sent = time.monotonic()
    r = httpx.post(
        f"{url_a}/api/v1/ingest",
        json=make_batch(sos_item(7, trigger=2)),
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "accepted"
    event_id, alert = stream_b.next(timeout_s=60)
    elapsed_ms = (time.monotonic() - sent) * 1000
    assert (alert["action"], alert["trigger"], alert["seq"], alert["device"]) == (
        "created",
        "man_down",
        7,
        "0000a001",
    )
    print(f"ingest on A -> SSE on B: {elapsed_ms:.1f} ms (event {event_id})")
    # Acknowledged through B, seen on B too (and by anyone listening on A).
    ack = httpx.post(
        f"{url_b}/api/v1/alerts/{alert['id']}/acknowledge",
        json={"note": "radio contact"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert ack.status_code == 200, ack.text
    assert stream_b.next(timeout_s=60)[1]["action"] == "acknowledged"
    stream_b.close()
