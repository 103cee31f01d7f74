"""Escalation along the configured chain, and signed webhooks to real local HTTP servers.

The worker is driven by hand (``AlertWorker.run_once``) with the test's clock, so
every deadline is exact; the HTTP servers are real (a thread each) and hang, fail
or succeed as scripted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from alertstest import Site, frame_item, ingest, make_frame, rows, sos_item

from cloud_api.alerts import service, webhooks
from cloud_api.alerts.settings import AlertSettings
from cloud_api.alerts.worker import AlertWorker
from cloud_api.crypto_store import SecretBox
from cloud_api.db import make_sessionmaker, session_scope
from cloud_api.models import Site as SiteRow
from cloud_api.provisioning import register_wearable
from patrol_protocol.frames import Sos

SECRET = b"webhook secret of sixteen+ bytes"
CHAIN = "site_supervisor:0,duty_manager:120,company_oncall:300"


def worker_for(site: Site, **overrides: Any) -> AlertWorker:
    values: dict[str, Any] = {
        "escalation_chain": CHAIN,
        "webhook_timeout_s": 1.0,
        "webhook_retry_initial_s": 10.0,
        "webhook_retry_max_s": 40.0,
        "run_worker": False,
    }
    values.update(overrides)
    return AlertWorker(
        make_sessionmaker(site.engine),
        box=SecretBox(site.settings.server_key_bytes()),
        settings=AlertSettings(**values),
        influx=False,
        clock=site.clock,
    )


def test_unacknowledged_alert_escalates_step_by_step(site: Site) -> None:
    ingest(site.client, site.api_key, sos_item(1))
    worker = worker_for(site)
    try:
        site.clock.advance(119)
        assert worker.run_once() == (0, 0)
        site.clock.advance(1)  # 120 s after creation: the duty manager
        assert worker.run_once() == (1, 0)
        assert worker.run_once() == (0, 0)  # once only
        site.clock.advance(180)  # 300 s: company on-call
        assert worker.run_once() == (1, 0)
        site.clock.advance(10_000)  # end of the chain: nothing more
        assert worker.run_once() == (0, 0)
    finally:
        worker.stop()
    assert rows(site.engine, "SELECT action, actor, note, level FROM alert_log ORDER BY id") == [
        ("created", None, None, 0),
        ("escalated", "duty_manager", "not acknowledged within 120 s", 1),
        ("escalated", "company_oncall", "not acknowledged within 300 s", 2),
    ]
    assert rows(site.engine, "SELECT level, next_escalation_at FROM alerts") == [(2, None)]


def test_acknowledged_alert_does_not_escalate(site: Site) -> None:
    ingest(site.client, site.api_key, sos_item(1))
    site.clock.advance(60)
    ack = site.client.post(
        "/api/v1/alerts/1/acknowledge", json={"note": "seen"}, headers=site.people.auth("sam")
    )
    assert ack.status_code == 200
    worker = worker_for(site)
    try:
        site.clock.advance(1000)
        assert worker.run_once() == (0, 0)
    finally:
        worker.stop()
    assert rows(site.engine, "SELECT level, state FROM alerts") == [(0, "acknowledged")]


# SKIP LOCKED between processes is a PostgreSQL property: PostgreSQL only.
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_never_escalate_one_alert_twice(site: Site) -> None:
    box = SecretBox(site.settings.server_key_bytes())
    with session_scope(site.engine) as session:
        site_a = session.get(SiteRow, site.people.site_a)
        for n in range(1, 5):  # four more wearables: five live alerts at once
            register_wearable(
                session, box=box, device_id=0xB000 + n, key=bytes([n]) * 32, site=site_a
            )
    items = [sos_item(1)] + [
        frame_item(n + 1, make_frame(Sos(1), seq=1, device_id=0xB000 + n, key=bytes([n]) * 32))
        for n in range(1, 5)
    ]
    ingest(site.client, site.api_key, *items)
    assert rows(site.engine, "SELECT count(*) FROM alerts WHERE state = 'open'") == [(5,)]
    site.clock.advance(120)
    chain = AlertSettings(escalation_chain=CHAIN).chain()
    barrier = threading.Barrier(2)
    sessions = make_sessionmaker(site.engine)

    def one() -> int:
        with sessions() as session, session.begin():
            barrier.wait()
            return len(service.escalate_due(session, now=site.clock(), chain=chain, influx=False))

    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda _: one(), range(2)))
    assert sum(counts) == 5
    assert rows(site.engine, "SELECT count(*) FROM alert_log WHERE action = 'escalated'") == [(5,)]


# ---------------------------------------------------------------- webhooks


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Target:
    """A real HTTP server whose answers follow ``script`` (hang / 500 / 200), then 200."""

    script: list[str]
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"


@pytest.fixture
def targets() -> Iterator[dict[str, Target]]:
    made = {
        "hangs": Target(["hang", "hang"]),
        "fails": Target(["500", "503"]),
        "works": Target([]),
    }
    release = threading.Event()
    for target in made.values():

        class Handler(BaseHTTPRequestHandler):
            owner = target

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                me = self.owner
                me.received.append(Received(dict(self.headers), body, time.time()))
                action = me.script.pop(0) if me.script else "200"
                if action == "hang":
                    release.wait(10)  # longer than the worker's 1 s timeout
                    return
                self.send_response(int(action))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        target.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        target.server.daemon_threads = True
        threading.Thread(target=target.server.serve_forever, daemon=True).start()
    yield made
    release.set()
    for target in made.values():
        assert target.server is not None
        target.server.shutdown()
        target.server.server_close()


def test_webhooks_signed_retried_logged_nothing_lost(
    site: Site, targets: dict[str, Target]
) -> None:
    box = SecretBox(site.settings.server_key_bytes())
    with session_scope(site.engine) as session:
        site_a = session.get(SiteRow, site.people.site_a)
        for name, target in targets.items():
            webhooks.add_target(
                session, box=box, name=name, url=target.url, secret=SECRET, site=site_a
            )
        # A duty manager's target: only once the alert reached level 1.
        webhooks.add_target(
            session, box=box, name="duty", url=targets["works"].url, secret=SECRET, min_level=1
        )
    ingest(site.client, site.api_key, sos_item(1))
    worker = worker_for(site)
    try:
        assert worker.run_once() == (0, 3)  # hangs: timeout, fails: 500, works: 200
        assert worker.run_once() == (0, 0)  # the failed two wait for their backoff (10 s)
        site.clock.advance(10)
        assert worker.run_once() == (0, 2)  # hangs: timeout again, fails: 503
        site.clock.advance(19)
        assert worker.run_once() == (0, 0)  # second backoff is 20 s
        site.clock.advance(1)
        assert worker.run_once() == (0, 2)  # both succeed now
        assert worker.run_once() == (0, 0)
    finally:
        worker.stop()
    attempts = rows(
        site.engine,
        "SELECT t.name, a.status, a.error FROM alert_webhook_attempts a "
        "JOIN alert_webhook_deliveries d ON d.id = a.delivery_id "
        "JOIN alert_webhook_targets t ON t.id = d.target_id ORDER BY t.name, a.id",
    )
    assert attempts == [
        ("fails", 500, "HTTP 500"),
        ("fails", 503, "HTTP 503"),
        ("fails", 200, None),
        ("hangs", None, "timeout"),
        ("hangs", None, "timeout"),
        ("hangs", 200, None),
        ("works", 200, None),
    ]
    assert rows(
        site.engine,
        "SELECT count(*), sum(attempts) FROM alert_webhook_deliveries "
        "WHERE delivered_at IS NOT NULL",
    ) == [(3, 7)]
    # Every request is signed over its timestamp and body; retries keep the delivery id.
    for name, target in targets.items():
        bodies = {r.body for r in target.received}
        assert len(bodies) == 1, name
        assert len({r.headers["X-Patrol-Delivery"] for r in target.received}) == 1
        for r in target.received:
            assert webhooks.verify_signature(
                SECRET,
                timestamp=r.headers["X-Patrol-Timestamp"],
                signature=r.headers["X-Patrol-Signature"],
                body=r.body,
                now_s=r.at,
            )
            assert not webhooks.verify_signature(
                b"another secret of 16 bytes",
                timestamp=r.headers["X-Patrol-Timestamp"],
                signature=r.headers["X-Patrol-Signature"],
                body=r.body,
                now_s=r.at,
            )
            assert not webhooks.verify_signature(  # replayed 10 minutes later
                SECRET,
                timestamp=r.headers["X-Patrol-Timestamp"],
                signature=r.headers["X-Patrol-Signature"],
                body=r.body,
                now_s=r.at + 600,
            )
        payload = json.loads(bodies.pop())
        assert (payload["id"], payload["action"], payload["device"]) == (1, "created", "0000a001")
        assert target.received[0].headers["X-Patrol-Event"] == "created"
    # The duty target heard nothing yet (level 0); escalation reaches it.
    assert len(targets["works"].received) == 1
    site.clock.advance(120)
    worker = worker_for(site, webhook_timeout_s=5.0)
    try:
        assert worker.run_once() == (1, 4)  # escalated: hangs, fails, works and duty
    finally:
        worker.stop()
    events = [json.loads(r.body)["action"] for r in targets["works"].received]
    assert events == ["created", "escalated", "escalated"]


@pytest.mark.mosquitto
def test_mqtt_target_on_the_real_broker(site: Site, mqtt_broker: Any) -> None:
    """An mqtt:// target (site siren topic): published QoS 1; a dead broker is retried."""
    import queue as queue_mod

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from ssetest import free_port

    user = mqtt_broker.gateway_user
    password = mqtt_broker.credentials[user].encode()
    topic = f"patrol/v1/site/{site.people.site_a}/alert"
    box = SecretBox(site.settings.server_key_bytes())
    with session_scope(site.engine) as session:
        webhooks.add_target(
            session,
            box=box,
            name="siren",
            url=f"mqtt://{user}@{mqtt_broker.host}:{mqtt_broker.port}/{topic}",
            secret=password,
        )
        webhooks.add_target(
            session,
            box=box,
            name="dead-broker",
            url=f"mqtt://{user}@127.0.0.1:{free_port()}/{topic}",
            secret=password,
        )
    heard: queue_mod.Queue[dict[str, Any]] = queue_mod.Queue()
    subscribed: queue_mod.Queue[int] = queue_mod.Queue()
    siren = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="siren-cloud-test")
    siren.username_pw_set(user, password.decode())
    siren.on_message = lambda _c, _u, msg: heard.put(json.loads(msg.payload))
    siren.on_subscribe = lambda *_a: subscribed.put(1)
    siren.connect(mqtt_broker.host, mqtt_broker.port)
    siren.loop_start()
    worker = worker_for(site, webhook_timeout_s=10.0)
    try:
        siren.subscribe(topic, qos=1)
        subscribed.get(timeout=30)
        ingest(site.client, site.api_key, sos_item(1, trigger=2))
        assert worker.run_once() == (0, 2)
        alert = heard.get(timeout=30)
        assert (alert["action"], alert["trigger"], alert["device"]) == (
            "created",
            "man_down",
            "0000a001",
        )
    finally:
        worker.stop()
        siren.disconnect()
        siren.loop_stop()
    attempts = rows(
        site.engine,
        "SELECT t.name, a.status, d.delivered_at IS NOT NULL FROM alert_webhook_attempts a "
        "JOIN alert_webhook_deliveries d ON d.id = a.delivery_id "
        "JOIN alert_webhook_targets t ON t.id = d.target_id ORDER BY t.name",
    )
    assert [(name, status, bool(done)) for name, status, done in attempts] == [
        ("dead-broker", None, False),
        ("siren", 200, True),
    ]
