"""Two real ``patrol-cloud`` processes on one database ingest the same batches at once.

This is the deployment shape (stateless API processes behind a load balancer):
idempotency must come from the database's unique constraints, so each frame is
stored exactly once and every retry is answered ``duplicate``.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from threading import Barrier
from typing import IO, Any

import httpx
import pytest
from cloudtest import (
    AN12196_PICC_ENC,
    AN12196_SDMMAC,
    AN12196_UID,
    SERVER_KEY,
    frame_item,
    make_batch,
    make_frame,
    make_settings,
    provision,
)

from cloud_api.db import init_db, make_engine
from patrol_protocol.frames import TAG_NTAG424_SUN, NfcScan, Sos

# Generous: on a loaded 2-core CI machine importing the app alone has taken 19 s.
STARTUP_TIMEOUT_S = 120.0
BATCHES = 8
FRAMES_PER_BATCH = 25


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(db_url: str, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
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
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_healthy(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = log_path.read_text(errors="replace")
            pytest.fail(f"patrol-cloud exited with {proc.returncode}: {output[-2000:]}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"patrol-cloud did not become healthy at {base_url}")


@pytest.fixture
def two_servers(db_url: str, tmp_path: Path) -> Iterator[tuple[list[str], str]]:
    engine = make_engine(db_url)
    init_db(engine)
    api_key, _other, _ids = provision(engine, make_settings(db_url))
    engine.dispose()
    ports = [_free_port(), _free_port()]
    log_paths = [tmp_path / f"cloud-{port}.log" for port in ports]
    with ExitStack() as stack:
        logs = [stack.enter_context(path.open("wb")) for path in log_paths]
        procs = [_start(db_url, port, log) for port, log in zip(ports, logs, strict=True)]
        try:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for proc, url, path in zip(procs, urls, log_paths, strict=True):
                _wait_healthy(proc, url, path)
            yield urls, api_key
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)


def test_two_processes_store_each_frame_once(two_servers: tuple[list[str], str]) -> None:
    urls, api_key = two_servers
    sun = NfcScan(
        tag_type=TAG_NTAG424_SUN, uid=AN12196_UID, picc_enc=AN12196_PICC_ENC, sdmmac=AN12196_SDMMAC
    )
    batches: list[dict[str, Any]] = []
    for b in range(BATCHES):
        seqs = range(b * FRAMES_PER_BATCH + 1, (b + 1) * FRAMES_PER_BATCH + 1)
        batches.append(make_batch(*(frame_item(s, make_frame(Sos(1), seq=s)) for s in seqs)))
    # The same SUN in two different frames, one per process: exactly one may win.
    sun_a = make_batch(frame_item(1001, make_frame(sun, seq=1001)))
    sun_b = make_batch(frame_item(1002, make_frame(sun, seq=1002)))
    barrier = Barrier(2)
    headers = {"Authorization": f"Bearer {api_key}"}

    def worker(index: int) -> list[list[dict[str, Any]]]:
        out = []
        with httpx.Client(base_url=urls[index], headers=headers, timeout=60.0) as client:
            barrier.wait()
            for batch in [*batches, sun_a if index == 0 else sun_b]:
                response = client.post("/api/v1/ingest", json=batch)
                assert response.status_code == 200, response.text
                out.append(response.json()["results"])
        return out

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(worker, [0, 1])

    frames = BATCHES * FRAMES_PER_BATCH
    statuses = [r["status"] for results in first[:-1] + second[:-1] for r in results]
    assert statuses.count("accepted") == frames
    assert statuses.count("duplicate") == frames
    sun_results = sorted(
        (results[-1][0]["status"], results[-1][0]["reason"] or "") for results in (first, second)
    )
    assert sun_results == [("accepted", ""), ("rejected", "replayed_counter")]
