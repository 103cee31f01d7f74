"""The forwarder's HTTP layer: gzip bodies (and the cloud's inflation limits), Retry-After,
backoff with jitter, HTTPS with a private CA -- against the real cloud app."""

from __future__ import annotations

import datetime as dt
import gzip
import http.server
import threading
from pathlib import Path

import httpx
import pytest
from cloudserver import GATEWAY_ID, start_cloud
from edgetest import tls_files
from test_priorities import heartbeat

from edge_agent.forwarder import (
    MAX_RETRY_AFTER_S,
    Forwarder,
    ForwardOutcome,
    retry_after_s,
    retry_delay_s,
)
from edge_agent.queue import EdgeQueue
from edge_agent.settings import EdgeSettings

NOW = dt.datetime(2026, 11, 25, 4, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def cloud(tmp_path):
    server = start_cloud(tmp_path)
    yield server
    server.stop()


def settings_for(tmp_path: Path, url: str, api_key: str, **overrides) -> EdgeSettings:
    return EdgeSettings(
        cloud_url=url,
        gateway_id=GATEWAY_ID,
        gateway_api_key=api_key,
        queue_path=tmp_path / "edge.sqlite3",
        **overrides,
    )


def post(cloud, body: bytes, encoding: str) -> httpx.Response:
    return httpx.post(
        f"{cloud.url}/api/v1/ingest",
        content=body,
        headers={
            "Authorization": f"Bearer {cloud.api_key}",
            "Content-Type": "application/json",
            "Content-Encoding": encoding,
        },
    )


@pytest.mark.parametrize("gzip_on", [True, False])
def test_batches_reach_the_cloud_with_and_without_gzip(tmp_path, cloud, gzip_on):
    settings = settings_for(tmp_path, cloud.url, cloud.api_key, forward_gzip=gzip_on)
    with EdgeQueue(settings.queue_path) as queue:
        queue.append_many([heartbeat(seq) for seq in (1, 2, 3)])
        forwarder = Forwarder(settings, queue, clock_synced=lambda: True)
        try:
            assert forwarder.forward_once() == ForwardOutcome(3, 3, 0)
        finally:
            forwarder.stop()
    assert cloud.rows("SELECT seq FROM events ORDER BY seq") == [(1,), (2,), (3,)]


def test_cloud_refuses_a_gzip_bomb_bad_gzip_and_other_encodings(cloud):
    bomb = gzip.compress(b" " * (2 * 1_048_576))  # 2 MiB of spaces, ~2 KiB compressed
    assert len(bomb) < 10_000
    response = post(cloud, bomb, "gzip")
    assert response.status_code == 413
    assert response.json()["detail"] == "batch body inflates beyond 1048576 bytes"
    response = post(cloud, b"\x1f\x8b not gzip at all", "gzip")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body is not valid gzip")
    response = post(cloud, gzip.compress(b"{}")[:-4], "gzip")
    assert (response.status_code, response.json()["detail"]) == (
        400,
        "gzip body is truncated or has trailing data",
    )
    response = post(cloud, b"{}", "br")
    assert (response.status_code, response.json()["detail"]) == (
        415,
        "Content-Encoding 'br' is not supported (gzip or identity)",
    )
    # a gzip body that inflates to a malformed batch is the usual 422
    assert post(cloud, gzip.compress(b"{}"), "gzip").status_code == 422


def response_with(retry_after: str) -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": retry_after})


def test_retry_after_seconds_and_http_date():
    assert retry_after_s(response_with("7"), NOW) == 7.0
    assert retry_after_s(response_with("Wed, 25 Nov 2026 04:01:30 GMT"), NOW) == 90.0
    assert retry_after_s(response_with("Wed, 25 Nov 2026 03:59:00 GMT"), NOW) == 0.0  # past
    assert retry_after_s(response_with("86400"), NOW) == MAX_RETRY_AFTER_S
    assert retry_after_s(response_with("soon"), NOW) is None
    assert retry_after_s(httpx.Response(503), NOW) is None


def test_backoff_has_equal_jitter_and_never_undercuts_retry_after():
    assert retry_delay_s(1_000, None, rand=lambda: 0.0) == 0.5
    assert retry_delay_s(1_000, None, rand=lambda: 1.0) == 1.0
    assert retry_delay_s(1_000, 30.0, rand=lambda: 0.5) == 30.0
    assert retry_delay_s(80_000, 30.0, rand=lambda: 0.5) == 60.0


class _Busy(http.server.BaseHTTPRequestHandler):
    """The cloud app has no overload limiter yet that answers 503: a 20-line stand-in."""

    retry_after = "7"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"detail": "overloaded"}'
        self.send_response(503)
        self.send_header("Retry-After", self.retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("header", "expected_s"), [("7", 7.0), ("Wed, 25 Nov 2026 04:02:00 GMT", 120.0)]
)
def test_503_retry_after_is_honoured_and_the_queue_kept(tmp_path, header, expected_s):
    handler = type("Busy", (_Busy,), {"retry_after": header})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        settings = settings_for(tmp_path, url, "pk_x")
        with EdgeQueue(settings.queue_path) as queue:
            queue.append_many([heartbeat(1)])
            forwarder = Forwarder(settings, queue, clock_synced=lambda: True, now=lambda: NOW)
            try:
                outcome = forwarder.forward_once()
            finally:
                forwarder.stop()
            assert (outcome.sent, outcome.deleted, outcome.retry_after_s) == (1, 0, expected_s)
            assert outcome.error == 'HTTP 503: \'{"detail": "overloaded"}\''
            assert queue.depth() == 1
    finally:
        server.shutdown()
        server.server_close()


def test_https_verifies_the_cloud_against_the_configured_ca(tmp_path):
    ca_file, cert_file, key_file = tls_files(tmp_path)
    cloud = start_cloud(
        tmp_path,
        uvicorn_options={"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)},
    )
    try:
        assert cloud.url.startswith("https://127.0.0.1:")
        untrusted = settings_for(tmp_path, cloud.url, cloud.api_key)
        with EdgeQueue(untrusted.queue_path) as queue:
            queue.append_many([heartbeat(1)])
            forwarder = Forwarder(untrusted, queue, clock_synced=lambda: True)
            try:
                outcome = forwarder.forward_once()
            finally:
                forwarder.stop()
            assert outcome.error is not None and "CERTIFICATE_VERIFY_FAILED" in outcome.error
            assert queue.depth() == 1
            trusted = settings_for(tmp_path, cloud.url, cloud.api_key, cloud_ca_file=ca_file)
            forwarder = Forwarder(trusted, queue, clock_synced=lambda: True)
            try:
                assert forwarder.forward_once() == ForwardOutcome(1, 1, 0)
            finally:
                forwarder.stop()
        assert cloud.rows("SELECT seq FROM events") == [(1,)]
    finally:
        cloud.stop()
